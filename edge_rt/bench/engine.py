"""The engine alone, like trtexec: a fixed input, warm-up, then many timed calls per batch size.

Our engines return host arrays (ONNX Runtime's outputs, or TensorRT's after a stream synchronise),
so a call has finished on the device when `infer` returns and timing around it is honest; the first
call checks that, so a backend that returned device memory could not report only its launch time.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..detect.model_info import ModelInfo
from ..engines.base import Engine
from ..errors import ConfigError, ModelError
from ..stream.inference import in_flight
from .hardware import describe_host, host_line
from .stats import Progress, pct

DEFAULT_FRAME_SIZE = (1280, 720)  # width, height: what graph-preprocess models are fed


@dataclass(frozen=True)
class EngineResult:
    model: str
    device: str
    batch: int
    height: int  # of the image input: the letterboxed tensor, or the camera frames (input "frames")
    width: int
    iters: int
    call_ms: dict[str, float]
    image_ms: float  # p50 per call / batch
    images_per_s: float  # batch * calls / total time
    image_p99_ms: float = 0.0  # p99 per call / batch
    input: str = "float"  # "float": letterboxed [B,3,H,W]; "frames": uint8 [B,H,W,3] + letterbox plan, resized in the graph
    host: dict[str, Any] = field(default_factory=dict)


def engine_input(
    info: ModelInfo, batch: int, shape: tuple[int, int] | None, frame_size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """What one call takes: random float input of the model's shape, or, for a model that letterboxes
    in its graph, `batch` synthetic camera frames of `frame_size` (W, H) and their letterbox plan."""
    if info.graph_preprocess:
        from ..camera.synthetic import render_synthetic
        from ..detect.preprocess import make_preprocessor

        w, h = frame_size or DEFAULT_FRAME_SIZE
        rendered = render_synthetic(w, h, 4)
        target = shape if shape is not None and info.dynamic_shape else info.imgsz
        prepared = make_preprocessor(info, target)(
            [rendered[i % len(rendered)] for i in range(batch)]
        )  # as the pipeline packs them
        return prepared.tensor, prepared.plan
    h, w = (shape or info.imgsz) if info.dynamic_shape else info.imgsz
    rng = np.random.default_rng(0)
    if info.input_layout == "nhwc":  # letterboxed uint8 frames; the engine converts them (OpenVINO's pre-processing)
        return rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8), None
    return rng.random((batch, 3, h, w), dtype=np.float32).astype(info.input_dtype), None


def infer(engine: Engine, x: np.ndarray, plan: np.ndarray | None) -> np.ndarray:
    """The plan only for models that take one (an engine without graph preprocessing need not accept it)."""
    return engine.infer(x) if plan is None else engine.infer(x, plan)


def _timed_calls(
    engine: Engine, x: np.ndarray, plan: np.ndarray | None, iters: int, deadline: float | None, label: str
) -> list[float]:
    """Per call, ms from start to output. An engine that overlaps calls (OpenVINO's THROUGHPUT streams) keeps
    its `in_flight` running, as the pipeline does: the img/s is then what its streams give together."""
    depth = in_flight(engine)
    times: list[float] = []
    running: deque[tuple[int, Any]] = deque()
    progress = Progress(iters, label)
    for i in range(iters):
        if depth > 1:
            if len(running) == depth:
                t0, pending = running.popleft()
                pending.result()
                times.append((time.perf_counter_ns() - t0) / 1e6)
            running.append((time.perf_counter_ns(), engine.submit(x, plan)))  # type: ignore[attr-defined]
        else:
            t0 = time.perf_counter_ns()
            infer(engine, x, plan)
            times.append((time.perf_counter_ns() - t0) / 1e6)
        progress.update(i + 1)
        if deadline is not None and i >= 9 and time.perf_counter() > deadline:
            break
    for t0, pending in running:
        pending.result()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    progress.close()
    return times


def bench_engine(
    model: Path,
    device: str,
    batches: Sequence[int],
    iters: int,
    warmup: int,
    shape: tuple[int, int] | None = None,
    threads: int | None = None,
    frame_size: tuple[int, int] | None = None,
    budget_s: float | None = None,
    hint: str = "latency",
    precision: str | None = None,
) -> list[EngineResult]:
    """Per batch size: one checked call, `warmup` calls, then `iters` timed calls on the same input.

    `budget_s` bounds each batch size's time on a slow box (a YOLOv8s on a small CPU): the warm-up
    stops after a quarter of it (at least 3 calls), the timed calls after all of it (at least 10), and
    the result's `iters` says how many were timed."""
    from ..engines import load_engine

    if iters < 1 or warmup < 0:
        raise ConfigError("--iters must be >= 1 and --warmup >= 0")
    # the engine is built for what this bench sends: its largest batch and, for a dynamic model, --shape
    engine = load_engine(model, device, threads, max_batch=max(batches, default=1), imgsz=shape, hint=hint, precision=precision)
    info = engine.info
    results = []
    try:
        for batch in batches:
            if (info.batch is not None and batch != info.batch) or (info.max_batch is not None and batch > info.max_batch):
                continue  # a fixed-batch model runs only its own batch; an in-graph NMS only up to its exported batch
            x, plan = engine_input(info, batch, shape, frame_size)
            out = infer(engine, x, plan)
            if not isinstance(out, np.ndarray):
                raise ModelError(
                    f"{model.name}: the engine returned {type(out).__name__}, not a host array; its timings would miss the device work"
                )
            t_warm = time.perf_counter()
            for i in range(warmup):
                infer(engine, x, plan)
                if budget_s is not None and i >= 2 and time.perf_counter() - t_warm > budget_s / 4:
                    break
            t_start = time.perf_counter()
            times = _timed_calls(engine, x, plan, iters, None if budget_s is None else t_start + budget_s, f"{model.name} b{batch}")
            total = time.perf_counter() - t_start
            ms = pct(times)
            h, w = (x.shape[1], x.shape[2]) if plan is not None or info.input_layout == "nhwc" else (x.shape[2], x.shape[3])
            results.append(
                EngineResult(
                    model=model.name,
                    device=engine.device,
                    batch=batch,
                    height=h,
                    width=w,
                    iters=len(times),
                    call_ms=ms,
                    image_ms=ms["p50"] / batch,
                    images_per_s=batch * len(times) / total,
                    image_p99_ms=ms["p99"] / batch,
                    input="frames" if plan is not None else "float",
                    host=describe_host(engine.device),  # clocks right after the run
                )
            )
    finally:
        engine.close()
    if not results:
        limit = f"fixed batch {info.batch}" if info.batch is not None else f"batches up to {info.max_batch} (NMS in the graph)"
        raise ConfigError(f"{model.name}: {limit}; none of --batch {','.join(map(str, batches))} fits it")
    return results


def engine_table(results: Sequence[EngineResult]) -> str:
    hosts = list(dict.fromkeys(host_line(r.host) for r in results))
    head = (
        f"{'model':<22} {'device':<8} {'batch':>5} {'input':>10} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8} "
        f"{'img-p50':>8} {'img-p99':>8} {'img/s':>8}"
    )
    lines = [*hosts, head, "-" * len(head)]
    for r in results:
        c = r.call_ms
        size = f"{r.height}x{r.width}" + ("*" if r.input == "frames" else "")
        lines.append(
            f"{r.model:<22} {r.device:<8} {r.batch:>5} {size:>10} {c['p50']:>8.2f} {c['p90']:>8.2f} "
            f"{c['p99']:>8.2f} {c['max']:>8.2f} {r.image_ms:>8.2f} {r.image_p99_ms:>8.2f} {r.images_per_s:>8.1f}"
        )
    lines.append("latency per call in ms; img-p50/img-p99 = per call / batch; img/s = images over the whole timed run")
    if any(r.input == "frames" for r in results):
        lines.append("* uint8 camera frames (synthetic, --frame-size) and a letterbox plan: the model resizes them in its graph")
    return "\n".join(lines)
