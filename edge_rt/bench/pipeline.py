"""The whole runtime, measured at a real ZeroMQ subscriber in another process: per-stage latency,
capture -> subscriber latency, frames/s and skipped frames per source, and the bare engine at the
same batch and input in the same run, so pipeline / engine says what everything around it costs.

`--synthetic N` adds N sources of in-memory frames (`synthetic://WxH`), so with many cameras what is
measured is the pipeline, not video decoding. They are live: latest frame only, skips counted.
Without `--fps` they run at OFFERED times their share of the bare engine's rate, so the engine (and
whatever the pipeline adds to it), never the sources, is the limit.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .collector import Collector
from .engine import DEFAULT_FRAME_SIZE, bench_engine
from .hardware import describe_host, host_line
from .stats import Progress, pct

OFFERED = 1.5
MAX_SYNTHETIC_FPS = 10_000.0


@dataclass(frozen=True)
class PipelineResult:
    model: str
    sources: list[str]
    requested_fps: float | None
    duration_s: float
    frames: dict[str, int]
    fps: dict[str, float]
    skipped: dict[str, int]  # dropped by the pipeline to stay current (frame_index gaps)
    lost: int  # lost in transport (seq gaps)
    stages: dict[str, dict[str, float]]
    to_subscriber: dict[str, float]  # capture -> received by the subscriber, ms
    engine_alone_fps: float  # the bare engine at engine_batch on the pipeline's input, same run
    input_shape: tuple[int, int]  # the engine's image input (H, W): letterboxed, or camera frames
    latency_drift_ms: float  # p50 of the last third minus p50 of the first third
    timeline: list[tuple[float, str, float]] = field(repr=False)  # (seconds, source, capture->subscriber ms)
    engine_batch: int = 1  # the pipeline's batch size (fixed, --max-batch, or one per source)
    batch_mean: float = 0.0  # frames per engine call the pipeline actually made
    engine_input: str = "float"  # "frames": uint8 camera frames, letterboxed inside the model
    synthetic: int = 0  # how many of the sources are synthetic
    synthetic_fps: float | None = None  # the rate of each
    host: dict[str, Any] = field(default_factory=dict)

    @property
    def total_fps(self) -> float:
        return sum(self.fps.values())

    @property
    def ratio(self) -> float:
        """Pipeline frames/s over the bare engine's images/s at the same batch: the goal is >= 90%."""
        return self.total_fps / self.engine_alone_fps if self.engine_alone_fps else 0.0


def synthetic_uris(count: int, frame_size: tuple[int, int], fps: float | None) -> list[str]:
    w, h = frame_size
    rate = f"?fps={fps:g}" if fps is not None else ""
    return [f"syn{i}=synthetic://{w}x{h}{rate}" for i in range(count)]


def _frame_hw(source: str) -> tuple[int, int] | None:
    """The first frame's size, read through the runtime's own opener (files, cameras, synthetic)."""
    from ..camera.readers import open_capture
    from ..camera.reconnect import CaptureSettings
    from ..camera.sources import parse_source

    reader = open_capture(parse_source(source, 0), CaptureSettings())
    try:
        ok, frame = reader.read()
    finally:
        reader.release()
    return frame.shape[:2] if ok and frame is not None else None


def bench_pipeline(
    model: Path,
    sources: Sequence[str],
    fps: float | None,
    duration: float,
    device: str = "auto",
    max_batch: int | None = None,
    warmup_s: float = 2.0,
    synthetic: int = 0,
    frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE,
    track: bool = False,
    record: str | None = None,
    engine_budget_s: float | None = None,
    hint: str = "auto",
    precision: str | None = None,
) -> PipelineResult:
    """Run the real runtime for `duration` s (files loop) and measure at a real ZeroMQ subscriber.
    `engine_budget_s` bounds the bare-engine measurement on a slow box (bench_engine's `budget_s`)."""
    from ..camera.sources import parse_source
    from ..config import build_run_config
    from ..detect.letterbox import plan_letterbox
    from ..engines import load_engine
    from ..runner import planned_batch, resolve_batch, run

    if duration <= 0:
        raise ConfigError("--duration must be > 0")
    if synthetic < 0:
        raise ConfigError(f"--synthetic {synthetic}: must be >= 0")
    if not sources and not synthetic:
        raise ConfigError("no source: pass --source (repeatable) or --synthetic N")
    for i, source in enumerate(sources):
        parse_source(source, i, fps=fps)  # a bad source fails before a minute of measuring
    n_sources = len(sources) + synthetic
    # OpenVINO's hint as `run` picks it: files at full speed overlap requests, cameras (synthetic ones too) do not
    engine_hint = hint if hint != "auto" else ("throughput" if fps is None and not synthetic else "latency")
    probe = load_engine(model, device, max_batch=planned_batch(max_batch, n_sources), hint=engine_hint, precision=precision)  # as `run` will load it
    try:
        info = probe.info
        batch = resolve_batch(probe, max_batch, n_sources)  # the batch the pipeline will run
    finally:
        probe.close()
    frame_hw = (_frame_hw(sources[0]) if sources else None) or (frame_size[1], frame_size[0])
    if info.graph_preprocess:
        shape = frame_hw  # the model takes the frames themselves
    else:
        shape = plan_letterbox(frame_hw, info.imgsz, info.stride, auto=True)[1] if info.dynamic_shape else info.imgsz
    alone = bench_engine(
        model,
        device,
        [batch],
        iters=60,
        warmup=10,
        shape=None if info.graph_preprocess else shape,
        frame_size=(frame_hw[1], frame_hw[0]),
        budget_s=engine_budget_s,
        hint=engine_hint,
        precision=precision,
    )[0]
    synthetic_fps = fps
    if synthetic and fps is None:
        synthetic_fps = min(max(round(OFFERED * alone.images_per_s / n_sources, 1), 1.0), MAX_SYNTHETIC_FPS)
    all_sources = [*sources, *synthetic_uris(synthetic, frame_size, synthetic_fps if fps is None else None)]

    with tempfile.TemporaryDirectory(prefix="edge-rt-bench-") as tmp:
        endpoint = f"ipc://{tmp}/bench.sock"
        config = build_run_config(
            {},
            {
                "model": str(model),
                "sources": all_sources,
                "fps": fps,
                "loop": True,
                "publish": endpoint,
                "device": device,
                "engine_hint": engine_hint,
                "engine_precision": precision or "auto",
                "max_batch": max_batch,
                "await_subscribers": 1,
                "await_timeout": 10.0,
                "stats_interval": 0.0,
                "log_level": "warning",
                "track": track or None,  # --track: the tracker is its own stage (latency_ms.track)
                "record": record,  # --record DIR: clips around events, written beside the run (files only)
            },
        )
        with Collector(endpoint, tmp) as collector:
            progress = Progress(duration + warmup_s, "pipeline")

            def arm(stop: Any) -> None:
                def stopper() -> None:
                    t0 = time.monotonic()
                    while time.monotonic() - t0 < duration + warmup_s:
                        progress.update(time.monotonic() - t0)
                        time.sleep(0.2)
                    stop()

                threading.Thread(target=stopper, daemon=True).start()

            run(config, install_signals=arm)
            progress.close()
            collector.finish()
    host = describe_host(alone.device)  # clocks right after the load

    t_first = collector.messages[0].recv_ns if collector.messages else 0
    measured = [(m.recv_ns, m) for m in collector.messages if (m.recv_ns - t_first) / 1e9 >= warmup_s]
    if not measured:
        raise ConfigError("no frames reached the subscriber; is the source readable?")
    span = max((measured[-1][0] - measured[0][0]) / 1e9, 1e-9)
    counts = Counter(m.source for _, m in measured)
    frames = {s.name: counts[s.name] for s in config.sources if counts[s.name]}  # in the order given
    skipped: dict[str, int] = {}
    last: dict[str, int] = {}
    for _, m in measured:
        if m.source in last:
            gap = m.frame_index - last[m.source] - 1
            skipped[m.source] = skipped.get(m.source, 0) + max(gap, 0)
        last[m.source] = m.frame_index
    stages = {s: pct([m.latency_ms[s] for _, m in measured]) for s in measured[0][1].latency_ms}
    e2e = [(t - m.capture_ns) / 1e6 for t, m in measured]
    third = max(len(e2e) // 3, 1)
    drift = float(np.median(e2e[-third:]) - np.median(e2e[:third]))
    timeline = [((t - measured[0][0]) / 1e9, m.source, v) for (t, m), v in zip(measured, e2e)]
    calls = sum(1 / m.batch_size for _, m in measured)  # each call's frames add up to one
    return PipelineResult(
        model=model.name,
        sources=list(frames),
        requested_fps=fps,
        duration_s=span,
        frames=frames,
        fps={s: n / span for s, n in frames.items()},
        skipped={s: skipped.get(s, 0) for s in frames},
        lost=collector.missed,
        stages=stages,
        to_subscriber=pct(e2e),
        engine_alone_fps=alone.images_per_s,
        input_shape=(int(shape[0]), int(shape[1])),
        latency_drift_ms=drift,
        timeline=timeline,
        engine_batch=batch,
        batch_mean=len(measured) / calls,
        engine_input=alone.input,
        synthetic=synthetic,
        synthetic_fps=synthetic_fps if synthetic else None,
        host=host,
    )


def pipeline_table(r: PipelineResult) -> str:
    lines = [host_line(r.host), f"{'stage (ms)':<16} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}"]
    for stage, p in [*r.stages.items(), ("capture->sub", r.to_subscriber)]:
        lines.append(f"{stage:<16} {p['p50']:>8.2f} {p['p95']:>8.2f} {p['p99']:>8.2f} {p['max']:>8.2f}")
    for s in r.sources:
        lines.append(f"{s}: {r.frames[s]} frames in {r.duration_s:.1f}s = {r.fps[s]:.1f} frames/s, {r.skipped[s]} skipped")
    if r.synthetic:
        why = (
            ""
            if r.requested_fps is not None
            else f" ({OFFERED:g}x their share of the bare engine: the sources are not the limit)"
        )
        lines.append(f"synthetic sources: {r.synthetic} at {r.synthetic_fps:g} frames/s each{why}")
    what = "frames" if r.engine_input == "frames" else "input"
    paced = (
        f" (paced at {r.requested_fps:g} frames/s per source: the share of the engine's capacity in use)"
        if r.requested_fps
        else ""
    )
    lines.append(
        f"pipeline {r.total_fps:.1f} frames/s (engine calls of {r.batch_mean:.1f} frames on average) vs engine alone "
        f"{r.engine_alone_fps:.1f} img/s at batch {r.engine_batch} on {what} {r.input_shape[0]}x{r.input_shape[1]} = {r.ratio:.1%}{paced}"
    )
    lines.append(f"lost in transport {r.lost}; latency drift (last third - first third, p50) {r.latency_drift_ms:+.2f} ms")
    return "\n".join(lines)
