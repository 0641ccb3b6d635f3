"""edge_rt side by side with Ultralytics' own streaming predict, on the same clip and device kind:
on a GPU, edge_rt's CUDA (or TensorRT) path against PyTorch on the GPU (`device=0`)."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .collector import Collector
from .hardware import describe_host, host_line
from .stats import pct


@dataclass(frozen=True)
class CompareResult:
    source: str
    frames: int
    edge_model: str
    edge_fps: float
    edge_latency_ms: dict[str, float]  # capture -> subscriber
    reference_model: str
    ultralytics_fps: float
    ultralytics_latency_ms: dict[str, float]  # per frame: preprocess + inference + postprocess
    edge_device: str = "cpu"  # what ran edge_rt's engine: cpu, cuda, tensorrt
    ultralytics_device: str = "cpu"  # what Ultralytics was given: cpu, or 0 (the first GPU)
    host: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.edge_fps / self.ultralytics_fps if self.ultralytics_fps else float("inf")


def _edge_over_file(model: Path, source: str, device: str) -> tuple[int, float, list[float]]:
    """The clip once through `edge-rt run` (every frame), timed at a real subscriber."""
    from ..config import build_run_config
    from ..runner import run

    with tempfile.TemporaryDirectory(prefix="edge-rt-cmp-") as tmp:
        endpoint = f"ipc://{tmp}/cmp.sock"
        config = build_run_config(
            {}, {"model": str(model), "sources": [source], "publish": endpoint, "device": device, "await_subscribers": 1,
                 "await_timeout": 10.0, "stats_interval": 0.0},
        )
        with Collector(endpoint, tmp) as collector:
            run(config)
            collector.finish()
    msgs = collector.messages
    span = (msgs[-1].recv_ns - msgs[0].recv_ns) / 1e9 if len(msgs) > 1 else 1e-9
    return len(msgs), (len(msgs) - 1) / span, [(m.recv_ns - m.capture_ns) / 1e6 for m in msgs]


def ultralytics_device(engine_device: str) -> str:
    """Ultralytics runs where edge_rt's engine runs: the CPU, or the first GPU (PyTorch there)."""
    return "cpu" if engine_device == "cpu" else "0"


def _ultralytics_over_file(model: Path, source: str, imgsz: int, device: str) -> tuple[int, float, list[float]]:
    """The same clip through Ultralytics' own streaming predict, timed the same way (first to last frame)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import torch
    from ultralytics import YOLO

    if device != "cpu" and not torch.cuda.is_available():
        raise ConfigError(f"--device: edge_rt runs on the GPU but this PyTorch ({torch.__version__}) has no CUDA; install a CUDA build of torch")
    yolo: Any = YOLO(str(model), task="detect")
    stamps: list[float] = []
    per_frame: list[float] = []
    for r in yolo.predict(source=source, stream=True, imgsz=imgsz, verbose=False, device=device):
        stamps.append(time.perf_counter())  # results come back as CPU tensors' owners: the frame is done
        per_frame.append(sum(r.speed.values()))
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 1e-9
    return len(stamps), (len(stamps) - 1) / span, per_frame


def bench_compare(model: Path, source: str, reference: Path | None = None, device: str = "cpu", imgsz: int | None = None) -> CompareResult:
    from ..engines import load_engine
    from ..sources import SourceKind, parse_source

    if parse_source(source, 0).kind is not SourceKind.FILE:  # before Ultralytics, which would raise its own way
        raise ConfigError(f"--source {source!r}: compare runs a video file through both, once")
    probe = load_engine(model, device)  # a GPU device on a CPU-only box fails here, in one line
    size = imgsz or probe.info.imgsz[0]
    engine_device = probe.device
    probe.close()
    ref = reference or model
    u_device = ultralytics_device(engine_device)
    n_u, fps_u, lat_u = _ultralytics_over_file(ref, source, size, u_device)
    n_e, fps_e, lat_e = _edge_over_file(model, source, device)
    return CompareResult(
        source, n_e, model.name, fps_e, pct(lat_e), ref.name, fps_u, pct(lat_u), edge_device=engine_device, ultralytics_device=u_device,
        host=describe_host(engine_device),
    )


def compare_table(r: CompareResult) -> str:
    u_where = "cpu" if r.ultralytics_device == "cpu" else f"cuda:{r.ultralytics_device}"
    return "\n".join(
        [
            host_line(r.host),
            f"{'':<34} {'device':<9} {'frames/s':>9} {'latency p50':>12} {'p99':>9}",
            f"{'edge_rt ' + r.edge_model:<34} {r.edge_device:<9} {r.edge_fps:>9.1f} {r.edge_latency_ms['p50']:>12.2f} "
            f"{r.edge_latency_ms['p99']:>9.2f}",
            f"{'ultralytics ' + r.reference_model:<34} {u_where:<9} {r.ultralytics_fps:>9.1f} {r.ultralytics_latency_ms['p50']:>12.2f} "
            f"{r.ultralytics_latency_ms['p99']:>9.2f}",
            f"edge_rt / ultralytics = {r.ratio:.2f}x on {r.frames} frames of {r.source}",
            "edge_rt latency: capture -> subscriber; Ultralytics: its own preprocess + inference + postprocess per frame",
        ]
    )
