"""edge_rt side by side with Ultralytics' own streaming predict, on the same clip and device kind:
on a GPU, edge_rt's CUDA (or TensorRT) path against PyTorch on the GPU (`device=0`)."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..postprocess import Detections
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
    # edge_rt's published boxes against Ultralytics' on the same frames (same class, IoU >= 0.5):
    # reference_boxes, edge_boxes, matched; found = matched / reference, extra = unmatched edge boxes / reference
    boxes: dict[str, float] = field(default_factory=dict)
    # with rounds > 1: each round's frames/s, Ultralytics and edge_rt alternating; the fps above are their medians
    edge_fps_rounds: list[float] = field(default_factory=list)
    ultralytics_fps_rounds: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.edge_fps / self.ultralytics_fps if self.ultralytics_fps else float("inf")


def _edge_over_file(model: Path, source: str, device: str) -> tuple[int, float, list[float], dict[int, Detections]]:
    """The clip once through `edge-rt run` (every frame), timed at a real subscriber."""
    from ..config import build_run_config
    from ..runner import run

    with tempfile.TemporaryDirectory(prefix="edge-rt-cmp-") as tmp:
        endpoint = f"ipc://{tmp}/cmp.sock"
        config = build_run_config(
            {},
            {
                "model": str(model),
                "sources": [source],
                "publish": endpoint,
                "device": device,
                "await_subscribers": 1,
                "await_timeout": 10.0,
                "stats_interval": 0.0,
            },
        )
        with Collector(endpoint, tmp, keep_boxes=True) as collector:
            run(config)
            collector.finish()
    msgs = collector.messages
    span = (msgs[-1].recv_ns - msgs[0].recv_ns) / 1e9 if len(msgs) > 1 else 1e-9
    boxes = {m.frame_index: _detections(m.detections) for m in msgs}
    return len(msgs), (len(msgs) - 1) / span, [(m.recv_ns - m.capture_ns) / 1e6 for m in msgs], boxes


def _detections(rows: list[list[float]]) -> Detections:
    a = np.asarray(rows, np.float64).reshape(-1, 6)
    return Detections(a[:, 2:6].astype(np.float32), a[:, 1].astype(np.float32), a[:, 0].astype(np.int64))


def ultralytics_device(engine_device: str) -> str:
    """Ultralytics runs where edge_rt's engine runs: the CPU, or the first GPU (PyTorch there)."""
    return "cpu" if engine_device == "cpu" else "0"


def _ultralytics_over_file(
    model: Path, source: str, imgsz: int | list[int], device: str
) -> tuple[int, float, list[float], list[Detections]]:
    """The same clip through Ultralytics' own streaming predict, timed the same way (first to last frame)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import torch
    from ultralytics import YOLO

    if device != "cpu" and not torch.cuda.is_available():
        raise ConfigError(
            f"--device: edge_rt runs on the GPU but this PyTorch ({torch.__version__}) has no CUDA; install a CUDA build of torch"
        )
    yolo: Any = YOLO(str(model), task="detect")
    stamps: list[float] = []
    per_frame: list[float] = []
    found: list[Detections] = []
    for r in yolo.predict(source=source, stream=True, imgsz=imgsz, verbose=False, device=device):
        stamps.append(time.perf_counter())  # results come back as CPU tensors' owners: the frame is done
        per_frame.append(sum(r.speed.values()))
        b = r.boxes.cpu()
        found.append(
            Detections(b.xyxy.numpy().astype(np.float32), b.conf.numpy().astype(np.float32), b.cls.numpy().astype(np.int64))
        )
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 1e-9
    return len(stamps), (len(stamps) - 1) / span, per_frame, found


def box_agreement(reference: list[Detections], edge: dict[int, Detections]) -> dict[str, float]:
    """Ultralytics' boxes (frame i) against edge_rt's published boxes (frame_index i) on the frames both have."""
    from ..exporters.verify import match

    ref_n = edge_n = matched = 0
    for i, ref in enumerate(reference):
        if i not in edge:
            continue
        ref_n += len(ref)
        edge_n += len(edge[i])
        matched += len(match(ref, edge[i], 0.5))
    denom = max(ref_n, 1)
    return {
        "reference_boxes": ref_n,
        "edge_boxes": edge_n,
        "matched": matched,
        "found": matched / denom,
        "extra": (edge_n - matched) / denom,
    }


def bench_compare(
    model: Path, source: str, reference: Path | None = None, device: str = "cpu", imgsz: int | None = None, rounds: int = 1
) -> CompareResult:
    """Ultralytics then edge_rt over the whole clip, `rounds` times alternating (a neighbour's load then
    hits both alike); frames/s are the medians over rounds, latencies and boxes those of the last round."""
    from ..engines import load_engine
    from ..sources import SourceKind, parse_source

    if parse_source(source, 0).kind is not SourceKind.FILE:  # before Ultralytics, which would raise its own way
        raise ConfigError(f"--source {source!r}: compare runs a video file through both, once")
    probe = load_engine(model, device, max_batch=1)  # a GPU device on a CPU-only box fails here, in one line
    # Ultralytics takes [h, w]: a .pt letterboxes a 16:9 frame to the same 384x640 a static 384x640 export uses
    size: int | list[int] = imgsz or [int(v) for v in probe.info.imgsz]
    engine_device = probe.device
    probe.close()
    ref = reference or model
    u_device = ultralytics_device(engine_device)
    if rounds < 1:
        raise ConfigError(f"--rounds {rounds}: must be >= 1")
    fps_us: list[float] = []
    fps_es: list[float] = []
    for _ in range(rounds):
        n_u, fps_u, lat_u, boxes_u = _ultralytics_over_file(ref, source, size, u_device)
        n_e, fps_e, lat_e, boxes_e = _edge_over_file(model, source, device)
        fps_us.append(fps_u)
        fps_es.append(fps_e)
    return CompareResult(
        source,
        n_e,
        model.name,
        float(np.median(fps_es)),
        pct(lat_e),
        ref.name,
        float(np.median(fps_us)),
        pct(lat_u),
        edge_device=engine_device,
        ultralytics_device=u_device,
        host=describe_host(engine_device),
        boxes=box_agreement(boxes_u, boxes_e),
        edge_fps_rounds=fps_es if rounds > 1 else [],
        ultralytics_fps_rounds=fps_us if rounds > 1 else [],
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
            *(
                [
                    f"{len(r.edge_fps_rounds)} rounds, alternating (medians above): edge_rt "
                    f"{' / '.join(f'{v:.1f}' for v in r.edge_fps_rounds)}, ultralytics {' / '.join(f'{v:.1f}' for v in r.ultralytics_fps_rounds)}; "
                    f"ratio per round {' / '.join(f'{e / u:.2f}x' for e, u in zip(r.edge_fps_rounds, r.ultralytics_fps_rounds))}"
                ]
                if r.edge_fps_rounds
                else []
            ),
            "edge_rt latency: capture -> subscriber; Ultralytics: its own preprocess + inference + postprocess per frame",
            *(
                [
                    f"boxes: edge_rt found {r.boxes['found']:.1%} of Ultralytics' {int(r.boxes['reference_boxes'])} (same class, IoU >= 0.5), "
                    f"{r.boxes['extra']:.1%} extra ({int(r.boxes['edge_boxes'])} boxes)"
                ]
                if r.boxes
                else []
            ),
        ]
    )
