"""`edge-rt <command>`: parse, call the library, print the cause of a failure in one line, exit.

Commands import what they need inside their handler, so `edge-rt run` never loads torch or
Ultralytics and `edge-rt --help` starts fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ConfigError, EdgeRtError

log = logging.getLogger("edge_rt")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit code 2, not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_run(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run a model on cameras, streams or files and publish detections over ZeroMQ",
        description="Capture -> batch -> preprocess -> infer -> postprocess -> publish. Every option can "
        "also live in --config FILE.yaml (same names, '-' or '_'); flags given here override the file.",
    )
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file with any of the options below, and 'sources'")
    p.add_argument("--model", "-m", help="detection model: Ultralytics-exported .onnx (or a TensorRT .engine)")
    p.add_argument(
        "--source", "-s", action="append", dest="sources", metavar="[NAME=]URI",
        help="camera index (0), device (/dev/video0), rtsp://... or http://... URL, video file, or GStreamer "
        "pipeline; repeat for several; NAME becomes the topic (default cam0, cam1, ...)",
    )
    p.add_argument("--publish", "-p", metavar="ENDPOINT", help="ZeroMQ endpoint to bind (default tcp://*:5555)")
    p.add_argument("--encoding", choices=("json", "msgpack"), help="payload encoding (default json)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "tensorrt"), help="inference device (default auto)")
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
        "--await-subscribers", type=int, metavar="N",
        help="wait until N subscriptions arrived before sending (a subscriber to several topics counts once per topic)",
    )
    p.add_argument("--await-timeout", type=float, metavar="SEC", help="how long to wait for them (default 30)")
    p.add_argument("--stall-timeout", type=float, metavar="SEC", help="reopen a live source after this long without a frame (default 5)")
    p.add_argument("--open-timeout", type=float, metavar="SEC", help="give up opening a stream after this long (default 5)")
    p.add_argument("--reconnect-max", type=float, metavar="SEC", help="cap of the reconnect back-off (default 10)")
    p.add_argument("--threads", type=int, help="inference threads on CPU (default: all cores)")
    p.add_argument("--stats-interval", type=float, metavar="SEC", help="log rates and drops every SEC seconds (default 60, 0: off)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="default info")
    p.set_defaults(handler=_cmd_run)


def _add_subscribe(sub: Any) -> None:
    p = sub.add_parser(
        "subscribe",
        help="print every valid message from a publisher as one JSON line",
        description="Connects a SUB socket; malformed messages are counted and reported on stderr.",
    )
    p.add_argument("endpoint", help="e.g. tcp://127.0.0.1:5555 or ipc:///tmp/edge.sock")
    p.add_argument("--topic", "-t", action="append", default=[], help="source name to receive (repeatable; default all)")
    p.add_argument("--count", "-n", type=int, help="exit after N messages")
    p.add_argument("--timeout", type=float, metavar="SEC", help="exit (code 1) when nothing arrives for this long")
    p.add_argument(
        "--until-eos", action="store_true",
        help="exit after every --topic sent end-of-stream (without --topic: every source seen so far)",
    )
    p.set_defaults(handler=_cmd_subscribe)


def _add_schema(sub: Any) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of published messages")
    p.set_defaults(handler=lambda args: print(json.dumps(__import__("edge_rt.schema").schema.json_schema(), indent=2)) or 0)


def _add_export(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export .pt weights to ONNX (fp32/fp16/int8) or a TensorRT engine, and prove parity",
        description="Defaults <- --target profile (export/NAME.yaml) <- flags. With --verify the export and the "
        "original weights run on the same frames; a box match rate below --min-match fails the export.",
    )
    p.add_argument("--weights", "-w", required=True, help="Ultralytics .pt checkpoint")
    p.add_argument("--format", "-f", choices=("onnx", "engine"), help="default onnx (or the profile's)")
    p.add_argument("--output", "-o", help="output file (default: next to the weights)")
    p.add_argument("--target", "-t", metavar="PROFILE", help="cpu-fp32, cpu-int8, cuda-fp16, trt-fp16, trt-int8, jetson-orin-fp16, or a YAML path")
    p.add_argument("--imgsz", type=int, help="input size, a multiple of 32 (default 640)")
    p.add_argument("--half", action="store_const", const="fp16", dest="precision", help="FP16")
    p.add_argument("--int8", action="store_const", const="int8", dest="precision", help="INT8 (needs --calibration)")
    p.add_argument("--calibration", metavar="DIR|VIDEO", help="images or a video to calibrate INT8 on")
    p.add_argument("--calibration-frames", type=int, help="frames taken from it (default 64)")
    p.add_argument("--dynamic", action="store_true", default=None, help="dynamic batch and input size")
    p.add_argument("--max-batch", type=int, help="largest batch (fixed batch for static ONNX)")
    p.add_argument("--workspace-gb", type=float, help="TensorRT builder workspace (default 4)")
    p.add_argument("--timing-cache", help="TensorRT timing cache file, reused across builds")
    p.add_argument("--verify", action="store_true", help="compare the export with the weights on held-out frames")
    p.add_argument("--verify-source", metavar="DIR|VIDEO", help="frames for --verify (default: the calibration source)")
    p.add_argument("--min-match", type=float, default=0.95, help="box match rate --verify requires (default 0.95)")
    p.set_defaults(handler=_cmd_export)


def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="fine-tune a YOLO detector with Ultralytics, then export it to ONNX")
    p.add_argument("--data", required=True, help="dataset YAML (Ultralytics format)")
    p.add_argument("--model", default="yolo11n.yaml", help="a .pt checkpoint to fine-tune or a model YAML (default yolo11n.yaml)")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cpu", help="cpu, 0, 0,1 ... (default cpu)")
    p.add_argument("--project", default="runs/train")
    p.add_argument("--name", default="exp")
    p.set_defaults(handler=_cmd_train)


def _add_dataset(sub: Any) -> None:
    p = sub.add_parser("dataset", help="make a synthetic dataset, or check one")
    dsub = p.add_subparsers(dest="action", metavar="<action>", parser_class=_Parser, required=True)
    s = dsub.add_parser("synth", help="write a synthetic shapes dataset (Ultralytics format) to OUT")
    s.add_argument("out")
    s.add_argument("--images", type=int, default=400)
    s.add_argument("--imgsz", type=int, default=320)
    s.add_argument("--seed", type=int, default=0)
    c = dsub.add_parser("check", help="check a dataset YAML, its folders and labels")
    c.add_argument("data")
    v = dsub.add_parser("clip", help="write a moving-shapes video (mp4) for demos and benchmarks")
    v.add_argument("out")
    v.add_argument("--frames", type=int, default=300)
    v.add_argument("--size", default="640x360", metavar="WxH")
    v.add_argument("--fps", type=int, default=30)
    v.add_argument("--seed", type=int, default=7)
    p.set_defaults(handler=_cmd_dataset)


def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="offline demo: synthetic camera -> demo model -> ZeroMQ -> subscriber, then latencies")
    p.add_argument("--model", help="default models/demo/demo.onnx")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--fps", type=float, default=30.0)
    p.set_defaults(handler=_cmd_demo)


def _add_bench(sub: Any) -> None:
    p = sub.add_parser("bench", help="measure: the engine alone, the whole pipeline, edge_rt vs Ultralytics, the publisher")
    bsub = p.add_subparsers(dest="what", metavar="<what>", parser_class=_Parser, required=True)
    e = bsub.add_parser("engine", help="the engine alone, like trtexec: latency per call and per image, throughput")
    e.add_argument("--model", "-m", action="append", required=True, help="repeat to compare models side by side")
    e.add_argument("--batch", default="1", help="comma-separated batch sizes (default 1)")
    e.add_argument("--device", action="append", choices=("auto", "cpu", "cuda", "tensorrt"), help="repeat to compare devices (default cpu)")
    e.add_argument("--shape", metavar="HxW", help="input size for dynamic-shape models, e.g. 384x640 (default: export size; fixed-shape models keep theirs)")
    e.add_argument("--iters", type=int, default=200)
    e.add_argument("--warmup", type=int, default=20)
    e.add_argument("--threads", type=int, help="CPU threads for ONNX Runtime (default: all cores)")
    e.add_argument("--json", metavar="FILE")
    pp = bsub.add_parser("pipeline", help="the whole runtime, measured at a real ZeroMQ subscriber")
    pp.add_argument("--model", "-m", required=True)
    pp.add_argument("--source", "-s", action="append", required=True, help="files loop; repeat for several")
    pp.add_argument("--fps", type=float, help="pace sources like cameras (default: as fast as the pipeline goes)")
    pp.add_argument("--duration", type=float, default=20.0, help="seconds measured, after a 2 s warm-up")
    pp.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda", "tensorrt"))
    pp.add_argument("--max-batch", type=int)
    pp.add_argument("--json", metavar="FILE")
    pp.add_argument("--plot", metavar="FILE.png")
    c = bsub.add_parser("compare", help="the same clip through edge_rt and through Ultralytics' streaming predict")
    c.add_argument("--model", "-m", required=True, help="the model edge_rt runs")
    c.add_argument("--source", "-s", required=True, help="a video file")
    c.add_argument("--reference", help="what Ultralytics runs (default: the same model), e.g. the original .pt")
    c.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda", "tensorrt"))
    c.add_argument("--imgsz", type=int)
    c.add_argument("--json", metavar="FILE")
    pub = bsub.add_parser("publish", help="publisher throughput and publish-to-subscriber latency over tcp loopback")
    pub.add_argument("--count", type=int, default=100_000)
    pub.add_argument("--rate", type=float, default=2000.0, help="paced rate for the latency part (messages/s)")
    pub.add_argument("--json", metavar="FILE")
    p.set_defaults(handler=_cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edge-rt", description="Real-time YOLO detection for edge boxes, published over ZeroMQ.")
    parser.add_argument("--version", action="version", version=f"edge-rt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=_Parser)
    _add_run(sub)
    _add_subscribe(sub)
    _add_schema(sub)
    _add_export(sub)
    _add_train(sub)
    _add_dataset(sub)
    _add_demo(sub)
    _add_bench(sub)
    return parser


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _on_signals(handler: Callable[[], None]) -> None:
    def _handle(signum: int, _frame: Any) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        handler()

    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)


def _cmd_run(args: argparse.Namespace) -> int:
    from .config import build_run_config, load_yaml
    from .runner import run

    file_values = load_yaml(args.config) if args.config else {}
    cli = {k: v for k, v in vars(args).items() if k not in ("handler", "command", "config")}
    config = build_run_config(file_values, cli, origin=f"config {args.config!r}")
    _setup_logging(config.log_level)
    return run(config, install_signals=_on_signals)


def _cmd_subscribe(args: argparse.Namespace) -> int:
    import zmq

    from .client import EndOfStream, Subscriber

    if args.count is not None and args.count < 1:
        raise ConfigError(f"--count must be >= 1, got {args.count}")
    if args.timeout is not None and args.timeout <= 0:
        raise ConfigError(f"--timeout must be > 0, got {args.timeout}")
    if "://" not in args.endpoint:
        raise ConfigError(f"endpoint {args.endpoint!r}: expected tcp://HOST:PORT or ipc://PATH")
    stopping = []
    _on_signals(lambda: stopping.append(True))
    try:
        sub = Subscriber(args.endpoint, topics=args.topic)
    except zmq.ZMQError as exc:
        raise ConfigError(f"endpoint {args.endpoint!r}: {exc.strerror}") from None

    def report(error: str) -> None:
        print(f"edge-rt subscribe: malformed message #{sub.malformed}: {error}", file=sys.stderr, flush=True)

    sub.on_malformed = report
    ended: set[str] = set()
    seen: set[str] = set()
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
            sys.stdout.write(json.dumps(msg.raw, separators=(",", ":")) + "\n")
            sys.stdout.flush()
            if msg.gap:
                print(f"edge-rt subscribe: {msg.source}: {msg.gap} message(s) lost before seq {msg.seq}", file=sys.stderr)
            if msg.restarted:
                print(f"edge-rt subscribe: {msg.source}: publisher restarted (session {msg.session})", file=sys.stderr)
            count += 1
            seen.add(msg.source)
            if isinstance(msg, EndOfStream):
                ended.add(msg.source)
            if args.count and count >= args.count:
                break
            if args.until_eos and ended and ended >= (set(args.topic) or seen):
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


def _cmd_export(args: argparse.Namespace) -> int:
    from .exporters import export, resolve_options

    _setup_logging("info")
    options = resolve_options(
        args.target,
        {"format": args.format, "precision": args.precision, "imgsz": args.imgsz, "dynamic": args.dynamic,
         "max_batch": args.max_batch, "workspace_gb": args.workspace_gb, "calibration_frames": args.calibration_frames},
    )
    weights = Path(args.weights)
    suffix = ".engine" if options.format == "engine" else (f"_{options.precision}.onnx" if options.precision != "fp32" else ".onnx")
    output = Path(args.output) if args.output else weights.with_name(weights.stem + suffix)
    verify_frames = None
    if args.verify:
        from .exporters.calibration import load_frames

        source = args.verify_source or args.calibration
        if source is None:
            raise ConfigError("--verify needs frames: --verify-source DIR|VIDEO (or --calibration)")
        verify_frames = load_frames(source, 64)
    result = export(
        weights, output, options,
        calibration=Path(args.calibration) if args.calibration else None,
        verify_frames=verify_frames, min_match=args.min_match,
        timing_cache=Path(args.timing_cache) if args.timing_cache else None,
    )
    print(f"exported {result.path} ({options.format}, {options.precision}, imgsz {options.imgsz})")
    if result.parity is not None:
        print(f"parity: {result.parity.summary()}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import format_metrics, train

    _setup_logging("info")
    for flag in ("epochs", "imgsz", "batch"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    model = args.model
    if model.endswith(".pt") and not Path(model).is_file():
        import os

        if os.environ.get("YOLO_OFFLINE"):
            raise ConfigError(f"--model {model}: no such file, and YOLO_OFFLINE is set so Ultralytics cannot fetch it")
    try:
        result = train(Path(args.data), model, args.epochs, args.imgsz, args.batch, args.device, Path(args.project), args.name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print(f"best weights: {result.best_weights}")
    print(f"onnx:         {result.onnx}")
    print(format_metrics(result.metrics))
    return 0


def _cmd_dataset(args: argparse.Namespace) -> int:
    from .dataset import check_dataset, synth_clip, synth_dataset

    if args.action == "clip":
        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--size {args.size!r}: expected WIDTHxHEIGHT, e.g. 640x360") from None
        if args.frames < 1 or args.fps < 1 or w < 32 or h < 32:
            raise ConfigError("--frames and --fps must be >= 1, the size at least 32x32")
        print(synth_clip(Path(args.out), frames=args.frames, size=(w, h), fps=args.fps, seed=args.seed))
        return 0
    if args.action == "synth":
        if args.images < 2 or args.imgsz < 32:
            raise ConfigError("--images must be >= 2 and --imgsz >= 32")
        print(synth_dataset(Path(args.out), images=args.images, imgsz=args.imgsz, seed=args.seed))
        return 0
    problems = check_dataset(Path(args.data))
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        raise ConfigError(f"dataset {args.data!r}: {len(problems)} problem(s), listed above")
    print(f"dataset {args.data}: OK")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import default_model, run_demo

    if args.frames < 1 or args.fps <= 0:
        raise ConfigError("--frames must be >= 1 and --fps > 0")
    _setup_logging("warning")
    model = Path(args.model) if args.model else default_model()
    return run_demo(model, args.frames, args.fps, sys.stdout, install_signals=_on_signals)


def _cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    _setup_logging("warning")
    if args.what == "engine":
        try:
            batches = [int(b) for b in args.batch.split(",")]
        except ValueError:
            raise ConfigError(f"--batch {args.batch!r}: expected comma-separated integers, e.g. 1,2,4,8") from None
        if any(b < 1 for b in batches):
            raise ConfigError("--batch sizes must be >= 1")
        results = []
        for model in args.model:
            for device in args.device or ["cpu"]:
                results += bench.bench_engine(Path(model), device, batches, args.iters, args.warmup, bench.parse_shape(args.shape), args.threads)
        print(bench.engine_table(results))
        out: Any = results
    elif args.what == "pipeline":
        out = bench.bench_pipeline(Path(args.model), args.source, args.fps, args.duration, args.device, args.max_batch)
        print(bench.pipeline_table(out))
        if args.plot:
            print(f"plot: {bench.plot_pipeline(out, Path(args.plot))}")
    elif args.what == "compare":
        out = bench.bench_compare(Path(args.model), args.source, Path(args.reference) if args.reference else None, args.device, args.imgsz)
        print(bench.compare_table(out))
    else:
        if args.count < 1000 or args.rate <= 0:
            raise ConfigError("--count must be >= 1000 and --rate > 0")
        out = bench.bench_publish(args.count, args.rate)
        print(bench.publish_table(out))
    if getattr(args, "json", None):
        bench.write_json(out, Path(args.json))
        print(f"json: {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except EdgeRtError as exc:
        print(f"edge-rt {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
