"""`edge-rt run`, `subscribe`, `schema` and `demo`: the runtime and its consumers."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError, EdgeRtError
from .common import (
    DEVICE_HELP,
    HINT_CHOICES,
    PRECISION_CHOICES,
    PRECISION_HELP,
    device_arg,
    on_signals,
    quiet_native_logs,
    setup_logging,
)


def add_run(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run a model on cameras, streams or files and publish detections over ZeroMQ",
        description="Capture -> batch -> preprocess -> infer -> postprocess -> publish. Every option can "
        "also live in --config FILE.yaml (same names, '-' or '_'); flags given here override the file.",
    )
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file with any of the options below, and 'sources'")
    p.add_argument("--model", "-m", help="detection model: Ultralytics-exported .onnx (or a TensorRT .engine)")
    p.add_argument(
        "--source",
        "-s",
        action="append",
        dest="sources",
        metavar="[NAME=]URI",
        help="camera index (0), device (/dev/video0), rtsp://... or http://... URL, video file, or GStreamer "
        "pipeline; repeat for several; NAME becomes the topic (default cam0, cam1, ...)",
    )
    p.add_argument(
        "--name",
        metavar="BOX",
        help="this box's name, in every message's 'box' field (default: the hostname); given, it also prefixes "
        "every topic (BOX/SOURCE), so two boxes' cam0 stay apart behind `edge-rt broker`. Letters, digits, '.', '_', '-'",
    )
    p.add_argument(
        "--publish",
        "-p",
        metavar="[connect:]ENDPOINT",
        help="ZeroMQ endpoint to bind (default tcp://127.0.0.1:5555, this machine only); an address other "
        "machines can reach (tcp://*:5555, tcp://0.0.0.0:5555, a LAN IP) needs CURVE or --insecure. "
        "connect:tcp://BROKER:5556 publishes to an `edge-rt broker`'s frontend instead (retried until it answers; "
        "messages are dropped and counted while it is away); a broker beyond this machine needs CURVE or --insecure",
    )
    p.add_argument(
        "--curve-secret-key",
        metavar="FILE",
        help="publish with CURVE encryption using this NAME.key_secret file (from `edge-rt keys`); needs --curve-allow, "
        "or with connect: --curve-server-key",
    )
    p.add_argument(
        "--curve-allow",
        metavar="DIR",
        help="with CURVE, admit only the clients whose public NAME.key files are in DIR (read at start); not with connect:",
    )
    p.add_argument(
        "--curve-server-key",
        metavar="FILE",
        help="with --publish connect:...: the broker's public NAME.key; this box connects as its CURVE client "
        "(its own NAME.key must be in the broker's --curve-allow-publishers DIR)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow publishing unencrypted on an address other machines can reach (logged as a warning)",
    )
    p.add_argument("--encoding", choices=("json", "msgpack"), help="payload encoding (default json)")
    p.add_argument("--device", type=device_arg, metavar="DEVICE", help=f"inference device: {DEVICE_HELP} (default auto)")
    p.add_argument(
        "--engine-hint",
        choices=HINT_CHOICES,
        help="OpenVINO: latency runs one request at a time, throughput keeps one per stream in flight "
        "(default auto: throughput when every source is a file read at full speed)",
    )
    p.add_argument("--engine-precision", choices=PRECISION_CHOICES, help=PRECISION_HELP)
    p.add_argument("--conf", type=float, help="confidence threshold (default 0.25)")
    p.add_argument("--iou", type=float, help="NMS IoU threshold (default 0.7)")
    p.add_argument("--max-det", type=int, help="max detections per frame (default 300)")
    p.add_argument("--classes", type=int, nargs="+", metavar="ID", help="keep only these class ids")
    p.add_argument("--agnostic-nms", action="store_true", default=None, help="NMS across classes")
    p.add_argument("--imgsz", type=int, help="input size for models exported with dynamic shapes (default: export size)")
    p.add_argument("--max-batch", type=int, help="frames per inference call for dynamic-batch models (default: sources)")
    p.add_argument("--max-wait-ms", type=float, help="how long a batch waits for more sources (default 10)")
    p.add_argument("--fps", type=float, help="pace every source to N frames/s like a camera")
    p.add_argument("--loop", action="store_true", default=None, help="restart file sources at their end")
    p.add_argument(
        "--await-subscribers",
        type=int,
        metavar="N",
        help="wait until N subscriptions arrived before sending (a subscriber to several topics counts once per topic; "
        "through a broker, connect:, what it forwards: each topic held there once, then every new subscription)",
    )
    p.add_argument("--await-timeout", type=float, metavar="SEC", help="how long to wait for them (default 30)")
    p.add_argument(
        "--stall-timeout", type=float, metavar="SEC", help="reopen a live source after this long without a frame (default 5)"
    )
    p.add_argument("--open-timeout", type=float, metavar="SEC", help="give up opening a stream after this long (default 5)")
    p.add_argument(
        "--reconnect-max",
        type=float,
        metavar="SEC",
        help="cap of the reconnect back-off after the first 10 s of an outage, which retry about once a second (default 30)",
    )
    p.add_argument("--threads", type=int, help="inference threads on CPU (default: all cores)")
    p.add_argument(
        "--stats-interval", type=float, metavar="SEC", help="log rates and drops every SEC seconds (default 60, 0: off)"
    )
    p.add_argument(
        "--engine-timeout",
        type=float,
        metavar="SEC",
        help="end the run (exit 8) when an inference call takes longer than this, so a service manager "
        "restarts it instead of it freezing (default 60; the first call gets 10x for engine builds)",
    )
    p.add_argument(
        "--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics on http://ADDR:PORT/metrics (0: any free port)"
    )
    p.add_argument("--metrics-addr", metavar="ADDR", help="address of the metrics endpoint (default 127.0.0.1)")
    p.add_argument(
        "--collect",
        metavar="DIR",
        help="save frames the model is unsure about (see --collect-conf) to DIR as a dataset to relabel and retrain: "
        "DIR/images/*.jpg, DIR/labels/*.txt (its predictions, YOLO format), DIR/data.yaml",
    )
    p.add_argument(
        "--collect-conf",
        metavar="LO,HI",
        help="with --collect: keep a frame when one of its detections has LO <= conf < HI; "
        "its label file holds every box with conf >= LO (e.g. 0.3,0.6)",
    )
    p.add_argument(
        "--collect-interval",
        type=float,
        metavar="SEC",
        help="with --collect: at most one frame per source every SEC seconds (default 5)",
    )
    p.add_argument(
        "--collect-max",
        type=int,
        metavar="N",
        help="with --collect: stop collecting once DIR holds N frames, earlier runs' included (default 1000)",
    )
    p.add_argument(
        "--track",
        action="store_true",
        default=None,
        help="track objects on every source (ByteTrack): each detection gets a track_id, kept while the object is "
        "seen and never reused in a session; start/end events on topic $events/SOURCE. Per source, zones and lines "
        "in --config (see the docs: Tracking, zones and events)",
    )
    p.add_argument(
        "--record",
        metavar="DIR",
        help="write an H.264 MP4 clip around each event to DIR/SOURCE/ (5 s before, 5 s after; turns tracking on), "
        "from the camera's own stream: files and rtsp/http sources. Times, triggers and retention in --config "
        "(record:); every event in a clip carries its path as 'clip'",
    )
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="default info")
    p.add_argument("--log-format", choices=("text", "json"), help="text (default) or json: one object per line for log shippers")
    p.set_defaults(handler=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from ..config import build_run_config, check_relative_paths, load_yaml
    from ..ops.redact import install_log_redaction, redact_url
    from ..runner import run

    try:
        file_values = load_yaml(args.config) if args.config else {}
        cli = {k: v for k, v in vars(args).items() if k not in ("handler", "command", "config")}
        if args.config:
            check_relative_paths({k: v for k, v in file_values.items() if cli.get(k) in (None, [])}, args.config)
        config = build_run_config(file_values, cli, origin=f"config {args.config!r}")
        setup_logging(config.log_level, config.log_format)
        quiet_native_logs(config.log_level)
        install_log_redaction()  # a camera password never reaches the log, whichever module logs the URL
        return run(config, install_signals=on_signals)
    except EdgeRtError as exc:
        clean = redact_url(str(exc))  # nor the error line
        if clean == str(exc):
            raise
        raise type(exc)(clean) from None


def add_subscribe(sub: Any) -> None:
    p = sub.add_parser(
        "subscribe",
        help="print every valid message from a publisher as one JSON line",
        description="Connects a SUB socket; malformed messages are counted and reported on stderr.",
    )
    p.add_argument("endpoint", help="e.g. tcp://127.0.0.1:5555 or ipc:///tmp/edge.sock")
    p.add_argument(
        "--topic",
        "-t",
        action="append",
        default=[],
        help="exact topic to receive: SOURCE, or BOX/SOURCE from a box run with --name (repeatable; default all)",
    )
    p.add_argument(
        "--box",
        metavar="NAME",
        help="only messages whose 'box' is NAME, e.g. one box behind `edge-rt broker` (subscribes to NAME/...; "
        "with --source also to the plain SOURCE topics of a box run without --name)",
    )
    p.add_argument(
        "--source",
        action="append",
        default=[],
        dest="sources",
        metavar="NAME",
        help="only messages of this source, from any box or only --box's (repeatable)",
    )
    p.add_argument("--count", "-n", type=int, help="exit after N messages")
    p.add_argument("--timeout", type=float, metavar="SEC", help="exit (code 1) when nothing arrives for this long")
    p.add_argument(
        "--until-eos",
        action="store_true",
        help="exit after every --topic sent end-of-stream (without --topic: every box's source seen so far)",
    )
    p.add_argument(
        "--health",
        action="store_true",
        help="also print topic $health: each source's state (online, stalled, reconnecting, offline, stopped...) "
        "on every change, every few seconds, and at once on joining; --topic '$health' prints only those",
    )
    p.add_argument(
        "--events",
        action="store_true",
        help="also print events of tracked sources (topics $events/SOURCE: start, end, enter, exit, cross, loiter); "
        "--topic '$events/SOURCE' prints only one source's events",
    )
    p.add_argument(
        "--event",
        action="append",
        default=[],
        dest="event_kinds",
        metavar="KIND",
        choices=("start", "end", "enter", "exit", "cross", "loiter"),
        help="print only events of this kind (repeatable; implies --events)",
    )
    p.add_argument(
        "--events-only",
        action="store_true",
        help="print events and nothing else (detections and end-of-stream still count for --until-eos); implies --events",
    )
    p.add_argument("--curve-server-key", metavar="FILE", help="the publisher's public NAME.key file: connect with CURVE")
    p.add_argument(
        "--curve-secret-key",
        metavar="FILE",
        help="this client's NAME.key_secret file (its NAME.key must be in the publisher's --curve-allow DIR)",
    )
    p.set_defaults(handler=_cmd_subscribe)


def _cmd_subscribe(args: argparse.Namespace) -> int:
    import zmq

    from ..client import EndOfStream, EventMessage, HealthMessage, Subscriber
    from ..wire.schema import BOX_NAME_MAX, is_box_name
    from ..wire.security import ClientKeys

    if args.count is not None and args.count < 1:
        raise ConfigError(f"--count must be >= 1, got {args.count}")
    if args.timeout is not None and args.timeout <= 0:
        raise ConfigError(f"--timeout must be > 0, got {args.timeout}")
    if "://" not in args.endpoint:
        raise ConfigError(f"endpoint {args.endpoint!r}: expected tcp://HOST:PORT or ipc://PATH")
    if args.box is not None and not is_box_name(args.box):
        raise ConfigError(f"--box {args.box[:40]!r}: a box name is 1 to {BOX_NAME_MAX} letters, digits, '.', '_' or '-'")
    if args.topic and (args.box is not None or args.sources):
        raise ConfigError("--topic names exact topics; --box and --source filter by the messages' fields: use one or the other")
    keys = ClientKeys.from_options(args.curve_server_key, args.curve_secret_key)
    stopping = []
    on_signals(lambda: stopping.append(True))
    try:
        sub = Subscriber(
            args.endpoint,
            topics=args.topic,
            curve=keys,
            health=args.health,
            box=args.box,
            sources=args.sources,
            events=args.events or args.events_only,
            event_kinds=args.event_kinds,
        )
    except zmq.ZMQError as exc:
        raise ConfigError(f"endpoint {args.endpoint!r}: {exc.strerror}") from None

    def report(error: str) -> None:
        print(f"edge-rt subscribe: malformed message #{sub.malformed}: {error}", file=sys.stderr, flush=True)

    sub.on_malformed = report
    ended: set[tuple[str | None, str]] = set()  # (box, source): two boxes' cam0 are two streams
    seen: set[tuple[str | None, str]] = set()
    count = 0
    last_rx = time.monotonic()
    code = 0
    try:
        while not stopping:
            msg = sub.receive(200)  # short waits, so a signal is honoured at once
            if msg is None:
                if args.timeout is not None and time.monotonic() - last_rx >= args.timeout:
                    print(f"edge-rt subscribe: nothing received for {args.timeout:g}s", file=sys.stderr)
                    code = 1
                    break
                continue
            last_rx = time.monotonic()
            shown = not args.events_only or isinstance(msg, EventMessage)
            if shown:
                sys.stdout.write(json.dumps(msg.raw, separators=(",", ":")) + "\n")
                sys.stdout.flush()
            where = msg.source if msg.box is None else f"{msg.box}/{msg.source}"
            if msg.gap:
                print(f"edge-rt subscribe: {where}: {msg.gap} message(s) lost before seq {msg.seq}", file=sys.stderr)
            if msg.restarted:
                print(f"edge-rt subscribe: {where}: publisher restarted (session {msg.session})", file=sys.stderr)
            count += shown
            if isinstance(msg, (HealthMessage, EventMessage)):
                if args.count and count >= args.count:
                    break
                continue  # --until-eos counts camera streams, not their health or events
            seen.add((msg.box, msg.source))
            if isinstance(msg, EndOfStream):
                ended.add((msg.box, msg.source))
            if args.count and count >= args.count:
                break
            if args.until_eos and ended and _all_ended(ended, seen, args.topic):
                break
    except BrokenPipeError:
        pass
    finally:
        sub.close()
        print(
            f"edge-rt subscribe: {sub.received} messages, {sub.tracker.missed} lost, "
            f"{sub.malformed} malformed, {sub.tracker.restarts} publisher restarts",
            file=sys.stderr,
        )
    return code


def _all_ended(ended: set[tuple[str | None, str]], seen: set[tuple[str | None, str]], topics: list[str]) -> bool:
    """Every --topic (SOURCE or BOX/SOURCE) has ended, or without --topic every stream seen so far."""
    if not topics:
        return ended >= seen
    names = {s for _, s in ended} | {f"{b}/{s}" for b, s in ended if b is not None}
    return all(t in names for t in topics if not t.startswith("$"))


def add_schema(sub: Any) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of published messages")
    p.add_argument("--events", action="store_true", help="the schema of events (edge_rt.event, topics $events/...) instead")
    p.set_defaults(
        handler=lambda args: print(
            json.dumps(__import__("edge_rt.wire.schema").wire.schema.json_schema("events" if args.events else "detections"), indent=2)
        )
        or 0
    )


def add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="offline demo: synthetic camera -> demo model -> ZeroMQ -> subscriber, then latencies")
    p.add_argument("--model", help="default models/demo/demo.onnx")
    p.add_argument("--frames", type=int, default=300, help="frames of the synthetic camera (default 300)")
    p.add_argument("--fps", type=float, default=30.0, help="the synthetic camera's frame rate (default 30)")
    p.set_defaults(handler=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import default_model, run_demo

    if args.frames < 1 or args.fps <= 0:
        raise ConfigError("--frames must be >= 1 and --fps > 0")
    setup_logging("warning")
    model = Path(args.model) if args.model else default_model()
    return run_demo(model, args.frames, args.fps, sys.stdout, install_signals=on_signals)
