"""What tracking costs per frame: the objects stage alone (tracker, one zone, one line, events) on
boxes that move like a crowd, at a given number of objects. The stage runs on the publishing thread,
so its time adds to every frame's latency; `bench pipeline --track` shows it inside the runtime."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..camera.sources import Frame
from ..detect.postprocess import Detections
from ..errors import ConfigError
from ..tracking.settings import SourceTracking, TrackConfig
from ..tracking.stage import ObjectStage
from ..tracking.zones import parse_regions
from .stats import pct


@dataclass(frozen=True)
class ObjectsResult:
    objects: int
    frames: int
    ms: dict[str, float]  # p50, p95, p99, mean, max of one frame
    events: int


def bench_objects(
    counts: Sequence[int], frames: int = 600, warmup: int = 60, size: tuple[int, int] = (1920, 1080), seed: int = 0
) -> list[ObjectsResult]:
    """Each object walks on a straight line at its own speed, its box jittering by a pixel or two; a zone
    covers the left half and a line runs down the middle, so crossings and zone changes happen."""
    if not counts or any(n < 1 for n in counts):
        raise ConfigError(f"--objects {','.join(map(str, counts))}: give positive numbers, e.g. 20,200")
    if frames < 1 or warmup < 0:
        raise ConfigError("--frames must be >= 1 and --warmup >= 0")
    w, h = size
    zones, lines = parse_regions("cam", {"left": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}, {"middle": [[0.5, 0], [0.5, 1]]})
    image = np.zeros((h, w, 3), np.uint8)
    out = []
    for n in counts:
        rng = np.random.default_rng(seed)
        side = max(int(np.sqrt(w * h / n) / 3), 8)  # boxes a third of the spacing: a crowd, not a pile
        start = rng.uniform((0, 0), (w - side, h - side), (n, 2))
        speed = rng.uniform(-4, 4, (n, 2))
        stage = ObjectStage([SourceTracking("cam", TrackConfig(), zones, lines)], {0: "object"}, 0.25)
        times, events = [], 0
        for f in range(warmup + frames):
            pos = np.abs((start + speed * f) % (2 * np.array([w - side, h - side])) - np.array([w - side, h - side]))
            xy = np.concatenate([pos, pos + side], axis=1) + rng.normal(0, 1, (n, 4))
            dets = Detections(xy.astype(np.float32), rng.uniform(0.3, 0.95, n).astype(np.float32), np.zeros(n, np.int64))
            frame = Frame("cam", f, image, 0, 0, f / 30)
            t0 = time.perf_counter_ns()
            events += len(stage(frame, dets).events)
            if f >= warmup:
                times.append((time.perf_counter_ns() - t0) / 1e6)
        out.append(ObjectsResult(n, frames, pct(times), events))
    return out


def objects_table(results: Sequence[ObjectsResult]) -> str:
    lines = [f"{'objects':>8} {'frames':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'events':>7}"]
    for r in results:
        lines.append(f"{r.objects:>8} {r.frames:>7} {r.ms['p50']:>8.3f} {r.ms['p95']:>8.3f} {r.ms['p99']:>8.3f} {r.events:>7}")
    lines.append("tracker + 1 zone + 1 line + events, one 1920x1080 source, per frame")
    return "\n".join(lines)
