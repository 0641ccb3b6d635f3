"""`edge-rt frigate`: serve Frigate's zmq detector protocol (see edge_rt/frigate/)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from .common import add_service_options, on_signals, setup_logging

log = logging.getLogger("edge_rt.frigate")


DEFAULT_ENDPOINT = "ipc:///tmp/cache/zmq_detector"  # Frigate's default (frigate.server.DEFAULT_ENDPOINT; not imported: --help stays light)


def add_frigate(sub: Any) -> None:
    p = sub.add_parser(
        "frigate",
        help="serve Frigate's zmq detector (Frigate 0.17+: detectors: {x: {type: zmq}}) with edge_rt's engines",
        description="Frigate connects (a REQ socket per detector), handshakes for its model, then sends one tensor "
        "per request and waits 200 ms for 20 rows [class, score, y_min, x_min, y_max, x_max]. This server binds the "
        "endpoint, batches what several detectors send at once, and answers with the boxes `edge-rt run` finds on the "
        "same pixels. A model Frigate names in its handshake is served from --model-dir, or received from Frigate and "
        "saved there. Exit 0 on SIGTERM/SIGINT. See docs/frigate.md.",
    )
    p.add_argument("--model", "-m", required=True, help="detection model served at start: Ultralytics-exported .onnx (or a TensorRT .engine)")
    p.add_argument(
        "--endpoint",
        "-e",
        default=DEFAULT_ENDPOINT,
        metavar="ENDPOINT",
        help=f"where Frigate connects: ipc:///PATH in a folder Frigate's container also sees, or tcp://127.0.0.1:PORT "
        f"(default {DEFAULT_ENDPOINT}, Frigate's own default); a tcp address other machines reach needs --insecure",
    )
    p.add_argument(
        "--model-dir",
        metavar="DIR",
        help="where a model Frigate names is looked up by file name, and where one Frigate sends is saved (default: the folder of --model)",
    )
    p.add_argument("--max-model-mb", type=float, default=256.0, metavar="MB", help="largest model file accepted from Frigate (default 256)")
    p.add_argument("--refuse-uploads", action="store_true", help="never save a model a client sends (the handshake answers model_saved: false)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "tensorrt"), default="auto", help="inference device (default auto)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="inference threads on CPU (default 1: ONNX Runtime's spinning pool threads take the CPU Frigate's own "
        "processes need, which doubles the p99 on a busy box, see docs/frigate.md; 0: all cores)",
    )
    p.add_argument("--conf", type=float, default=0.25, help="confidence threshold (default 0.25; Frigate applies its own above it)")
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    p.add_argument(
        "--max-batch", type=int, help="requests per inference call for dynamic-batch models (default 4; a fixed batch is the model's)"
    )
    p.add_argument(
        "--pixel-format",
        choices=("rgb", "bgr"),
        default="rgb",
        help="Frigate's model.input_pixel_format (default rgb, Frigate's default; its requests do not say)",
    )
    p.add_argument(
        "--request-timeout-ms",
        type=float,
        default=200.0,
        metavar="MS",
        help="Frigate's request_timeout_ms (default 200): a request that waited longer here is not run, its client has given up",
    )
    p.add_argument("--insecure", action="store_true", help="allow a tcp endpoint other machines can reach (no encryption in this protocol)")
    p.add_argument("--print-config", action="store_true", help="print the Frigate YAML (detectors: and model:) for --model and exit")
    p.add_argument(
        "--bench",
        action="store_true",
        help="measure round trips as Frigate's detector processes see them (a server on a temporary ipc endpoint, "
        "Frigate-like clients in their own processes) and exit",
    )
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4], metavar="N", help="with --bench: clients at once, one run each (default 1 4)")
    p.add_argument("--seconds", type=float, default=10.0, help="with --bench: length of each run (default 10)")
    p.add_argument("--rounds", type=int, default=2, help="with --bench: repeat the runs, interleaved, this many times (default 2)")
    p.add_argument("--input-tensor", choices=("nhwc", "nchw"), default="nhwc", help="with --bench: Frigate's model.input_tensor (default nhwc)")
    p.add_argument("--input-dtype", choices=("int", "float"), default="int", help="with --bench: Frigate's model.input_dtype (default int)")
    add_service_options(p, "counts and latency")
    p.set_defaults(handler=_cmd_frigate)


def _settings(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Every option checked before a model loads: a user mistake is one line, not a traceback."""
    from ..errors import ConfigError, ModelError
    from ..frigate import DetectSettings, ServerSettings, StoreSettings

    model = Path(args.model).expanduser()
    if not model.is_file():
        raise ModelError(f"model {args.model!r}: {'not a file' if model.exists() else 'no such file'}")
    if not 0 < args.conf <= 1:
        raise ConfigError(f"--conf {args.conf:g}: must be in (0, 1]")
    if not 0 < args.iou <= 1:
        raise ConfigError(f"--iou {args.iou:g}: must be in (0, 1]")
    if args.max_batch is not None and args.max_batch < 1:
        raise ConfigError(f"--max-batch must be >= 1, got {args.max_batch}")
    if args.threads is not None and args.threads < 0:
        raise ConfigError(f"--threads must be >= 0, got {args.threads}")
    if not 0 < args.max_model_mb <= 4096:
        raise ConfigError(f"--max-model-mb {args.max_model_mb:g}: must be in (0, 4096]")
    max_bytes = int(args.max_model_mb * 2**20)
    server = ServerSettings(
        endpoint=args.endpoint,
        pixel_format=args.pixel_format,
        request_timeout_ms=args.request_timeout_ms,
        stats_interval_s=args.stats_interval,
        max_model_bytes=max_bytes,
        insecure=args.insecure,
    )
    detect = DetectSettings(device=args.device, threads=args.threads, conf=args.conf, iou=args.iou, max_batch=args.max_batch)
    folder = Path(args.model_dir).expanduser() if args.model_dir else Path(args.model).expanduser().parent
    store = StoreSettings(folder=folder, max_bytes=max_bytes, uploads=not args.refuse_uploads)
    return server, detect, store


def _cmd_frigate(args: argparse.Namespace) -> int:
    from ..frigate import FrigateServer, ModelHost, ModelRunner

    setup_logging(args.log_level, args.log_format)
    server_settings, detect, store = _settings(args)
    if args.print_config:
        print(frigate_yaml(Path(args.model), server_settings.endpoint, server_settings.pixel_format, detect))
        return 0
    if args.bench:
        return _bench(args, detect)
    server_settings = server_settings.check()  # the endpoint before the model: a mistake there costs no load
    runner = ModelRunner.load(Path(args.model).expanduser(), detect)
    host = ModelHost(store, partial(ModelRunner.load, settings=detect), runner, Path(args.model).name)
    try:
        store.check()
        with FrigateServer(host, server_settings) as server:
            server.bind()
            on_signals(server.stop)
            _log_start(host, server_settings, store)
            stats = server.serve(_notify_ready(f"serving {host.name} on {server_settings.endpoint}"))
            log.info("stopped: %s", stats.totals())
    finally:
        host.close()
    return 0


def _log_start(host: Any, server: Any, store: Any) -> None:
    uploads = f"models Frigate sends are saved in {store.folder} (up to {store.max_bytes / 2**20:g} MiB)" if store.uploads else "uploads refused"
    log.info("serving Frigate's zmq detector on %s: model %s (%s); %s", server.endpoint, host.name, host.served.describe(), uploads)
    call_ms = host.served.call_ms
    if call_ms > server.request_timeout_ms / 2:
        log.warning(
            "one engine call takes %.0f ms here and Frigate gives up after %g ms: requests will time out, more so with "
            "several detectors; use --threads 0 (all cores), a smaller input (Frigate's width/height 320), a GPU "
            "(--device cuda or tensorrt), or raise Frigate's request_timeout_ms and --request-timeout-ms together",
            call_ms,
            server.request_timeout_ms,
        )
    info = host.served.engine.info
    log.info(
        "Frigate's model section: width %d, height %d, input_pixel_format %s, labelmap %s (edge-rt frigate --print-config prints it)",
        info.imgsz[1],
        info.imgsz[0],
        server.pixel_format,
        dict(info.names),
    )


def _notify_ready(status: str) -> Callable[[], None] | None:
    """systemd Type=notify: READY once bound and loaded, WATCHDOG=1 from the loop while it turns."""
    from ..ops.systemd import Notifier

    notifier = Notifier.from_env()
    if notifier is None:
        return None
    notifier.send(ready="1", status=status)
    return notifier.pinger()


def frigate_yaml(model: Path, endpoint: str, pixel_format: str, detect: Any) -> str:
    """The detectors: and model: sections Frigate needs for this model, from the model's own metadata."""
    import json

    from ..engines import load_engine

    # reads the model's facts only (names, size): the detector loads it again for what it sends
    engine = load_engine(model.expanduser(), "cpu" if detect.device == "auto" else detect.device, detect.threads, max_batch=1)
    info = engine.info
    engine.close()
    labels = "\n".join(f"    {k}: {json.dumps(v)}" for k, v in sorted(info.names.items()))
    track = ", ".join(json.dumps(v) for _, v in sorted(info.names.items()))
    return f"""\
# Frigate config for `edge-rt frigate --model {model} --endpoint {endpoint}` (Frigate 0.17+)
detectors:
  edge_rt:
    type: zmq
    endpoint: {endpoint}  # as Frigate reaches it: the same ipc folder mounted in its container, or a tcp host:port
model:
  path: /config/model_cache/{model.name}  # its file name is what Frigate asks for; the file need not exist in Frigate
  model_type: yolo-generic
  width: {info.imgsz[1]}
  height: {info.imgsz[0]}
  input_tensor: nhwc
  input_pixel_format: {pixel_format}
  input_dtype: int
  labelmap:
{labels}
objects:
  track: [{track}]"""


def _bench(args: argparse.Namespace, detect: Any) -> int:
    from ..bench.frigate import BenchSettings, format_runs, run_bench
    from ..errors import ConfigError

    if any(n < 1 for n in args.clients) or args.seconds <= 0 or args.rounds < 1:
        raise ConfigError("--clients, --seconds and --rounds must be positive")
    settings = BenchSettings(
        clients=tuple(args.clients),
        seconds=args.seconds,
        rounds=args.rounds,
        input_tensor=args.input_tensor,
        input_dtype=args.input_dtype,
        pixel_format=args.pixel_format,
    )
    runs = run_bench(Path(args.model).expanduser(), detect, settings)
    print(format_runs(runs, settings))
    return 0
