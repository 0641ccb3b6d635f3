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

from ..detect.postprocess import Detections
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
    # edge_rt's published boxes against Ultralytics' on the same frames (same class, IoU >= 0.5):
    # reference_boxes, edge_boxes, matched; found = matched / reference, extra = unmatched edge boxes / reference
    boxes: dict[str, float] = field(default_factory=dict)
    # with rounds > 1: each round's frames/s, Ultralytics and edge_rt alternating; the fps above are their medians
    edge_fps_rounds: list[float] = field(default_factory=list)
    ultralytics_fps_rounds: list[float] = field(default_factory=list)
    # --reference-export: Ultralytics' own export of the reference (its OpenVINO INT8 folder, say), timed the same
    # way: the fair anchor on a CPU. Its boxes are scored against the reference's, as edge_rt's are.
    export_model: str = ""
    export_fps: float = 0.0
    export_latency_ms: dict[str, float] = field(default_factory=dict)
    export_fps_rounds: list[float] = field(default_factory=list)
    export_boxes: dict[str, float] = field(default_factory=dict)

    @property
    def anchor_fps(self) -> float:
        """What edge_rt is measured against: Ultralytics' export where one was given, else its predict on the reference."""
        return self.export_fps if self.export_model else self.ultralytics_fps

    @property
    def ratio(self) -> float:
        return self.edge_fps / self.anchor_fps if self.anchor_fps else float("inf")


def _edge_over_file(
    model: Path, source: str, device: str, hint: str = "auto", precision: str | None = None
) -> tuple[int, float, list[float], dict[int, Detections]]:
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
                "engine_hint": hint,
                "engine_precision": precision or "auto",
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
    """Ultralytics runs where edge_rt's engine runs: the first NVIDIA GPU (PyTorch there), else the CPU (an OpenVINO
    device included: its own OpenVINO export, `--reference-export`, is the anchor there)."""
    return "0" if engine_device.startswith(("cuda", "tensorrt")) else "cpu"


def _ultralytics_over_file(
    model: Path, source: str, imgsz: int | list[int], device: str
) -> tuple[int, float, list[float], list[Detections]]:
    """The same clip through Ultralytics' own streaming predict, timed the same way (first to last frame)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")  # its `Loading ...` lines would land in the table's stdout
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
    model: Path,
    source: str,
    reference: Path | None = None,
    device: str = "cpu",
    imgsz: int | None = None,
    rounds: int = 1,
    reference_export: Path | None = None,
    hint: str = "auto",
    precision: str | None = None,
) -> CompareResult:
    """Ultralytics (on the reference, then on its own export when given) and edge_rt over the whole clip, `rounds`
    times alternating (a neighbour's load then hits all alike); frames/s are the medians over rounds, latencies
    and boxes those of the last round. Boxes are scored against Ultralytics' predict on the reference."""
    from ..camera.sources import SourceKind, parse_source
    from ..engines import load_engine

    if parse_source(source, 0).kind is not SourceKind.FILE:  # before Ultralytics, which would raise its own way
        raise ConfigError(f"--source {source!r}: compare runs a video file through both, once")
    if reference_export is not None and not reference_export.exists():
        raise ConfigError(f"--reference-export {str(reference_export)!r}: no such file or folder")
    probe = load_engine(model, device)  # a GPU device on a CPU-only box fails here, in one line
    # Ultralytics takes [h, w]: a .pt letterboxes a 16:9 frame to the same 384x640 a static 384x640 export uses
    size: int | list[int] = imgsz or [int(v) for v in probe.info.imgsz]
    engine_device = probe.device
    probe.close()
    ref = reference or model
    u_device = ultralytics_device(engine_device)
    if rounds < 1:
        raise ConfigError(f"--rounds {rounds}: must be >= 1")
    fps_us: list[float] = []
    fps_xs: list[float] = []
    fps_es: list[float] = []
    lat_x: list[float] = []
    boxes_x: list[Detections] = []
    for _ in range(rounds):
        n_u, fps_u, lat_u, boxes_u = _ultralytics_over_file(ref, source, size, u_device)
        fps_us.append(fps_u)
        if reference_export is not None:  # an OpenVINO or ONNX export runs on the CPU in Ultralytics
            _, fps_x, lat_x, boxes_x = _ultralytics_over_file(reference_export, source, size, "cpu")
            fps_xs.append(fps_x)
        n_e, fps_e, lat_e, boxes_e = _edge_over_file(model, source, device, hint, precision)
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
        export_model=reference_export.name if reference_export is not None else "",
        export_fps=float(np.median(fps_xs)) if fps_xs else 0.0,
        export_latency_ms=pct(lat_x) if lat_x else {},
        export_fps_rounds=fps_xs if rounds > 1 else [],
        export_boxes=box_agreement(boxes_u, dict(enumerate(boxes_x))) if boxes_x else {},
    )


def _boxes_line(who: str, boxes: dict[str, float], reference: str) -> str:
    return (
        f"boxes: {who} found {boxes['found']:.1%} of {reference}'s {int(boxes['reference_boxes'])} (same class, IoU >= 0.5), "
        f"{boxes['extra']:.1%} extra ({int(boxes['edge_boxes'])} boxes)"
    )


def compare_table(r: CompareResult) -> str:
    u_where = "cpu" if r.ultralytics_device == "cpu" else f"cuda:{r.ultralytics_device}"

    names = ["edge_rt " + r.edge_model, "ultralytics " + r.reference_model, "ultralytics " + r.export_model]
    width = max(34, *map(len, names))

    def row(name: str, where: str, fps: float, lat: dict[str, float]) -> str:
        return f"{name:<{width}} {where:<13} {fps:>9.1f} {lat['p50']:>12.2f} {lat['p99']:>9.2f}"

    anchor = f"ultralytics {r.export_model}" if r.export_model else "ultralytics"
    rounds = []
    if r.edge_fps_rounds:
        anchors = r.export_fps_rounds or r.ultralytics_fps_rounds
        rounds.append(
            f"{len(r.edge_fps_rounds)} rounds, alternating (medians above): edge_rt {' / '.join(f'{v:.1f}' for v in r.edge_fps_rounds)}, "
            f"ultralytics {' / '.join(f'{v:.1f}' for v in r.ultralytics_fps_rounds)}"
            + (f", {r.export_model} {' / '.join(f'{v:.1f}' for v in r.export_fps_rounds)}" if r.export_fps_rounds else "")
            + f"; edge_rt / {anchor} per round {' / '.join(f'{e / a:.2f}x' for e, a in zip(r.edge_fps_rounds, anchors))}"
        )
    return "\n".join(
        [
            host_line(r.host),
            f"{'':<{width}} {'device':<13} {'frames/s':>9} {'latency p50':>12} {'p99':>9}",
            row("edge_rt " + r.edge_model, r.edge_device, r.edge_fps, r.edge_latency_ms),
            row("ultralytics " + r.reference_model, u_where, r.ultralytics_fps, r.ultralytics_latency_ms),
            *([row("ultralytics " + r.export_model, "cpu", r.export_fps, r.export_latency_ms)] if r.export_model else []),
            f"edge_rt / {anchor} = {r.ratio:.2f}x on {r.frames} frames of {r.source}",
            *rounds,
            "edge_rt latency: capture -> subscriber; Ultralytics: its own preprocess + inference + postprocess per frame",
            *([_boxes_line("edge_rt", r.boxes, r.reference_model)] if r.boxes else []),
            *([_boxes_line(r.export_model, r.export_boxes, r.reference_model)] if r.export_boxes else []),
        ]
    )
