"""Latency and counters of one run, summarised as percentiles; NullMetrics when nobody asks."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Mapping

import numpy as np

STAGES = ("wait", "preprocess", "queue", "inference", "postprocess", "track", "publish", "total")  # track: only with tracking


class _Ring:
    """The last `size` values in one preallocated float64 array: memory is fixed from the first sample
    (a deque of floats grows for minutes, which a soak reads as a leak)."""

    def __init__(self, size: int) -> None:
        self._data = np.full(size, np.nan)  # written now: np.empty's pages would become resident as it fills
        self._n = 0  # values ever appended

    def append(self, value: float) -> None:
        self._data[self._n % self._data.size] = value
        self._n += 1

    def values(self) -> np.ndarray:
        return self._data[: min(self._n, self._data.size)].copy()


class Metrics:
    """Keeps the last `window` samples per stage (bounded memory on a run of weeks)."""

    def __init__(self, window: int = 20000) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, _Ring] = defaultdict(lambda: _Ring(window))
        self._frames: dict[str, int] = defaultdict(int)
        self.started: float | None = None  # first frame: model loading and waiting do not count

    def record_frame(self, source: str, latency_ms: Mapping[str, float]) -> None:
        with self._lock:
            if self.started is None:
                self.started = time.monotonic()
            self._frames[source] += 1
            for stage, value in latency_ms.items():
                self._samples[stage].append(value)

    def record(self, stage: str, value_ms: float) -> None:
        with self._lock:
            self._samples[stage].append(value_ms)

    def record_batch(self, size: int, engine_ms: float) -> None:
        """One inference call: exporters (Prometheus) keep batch sizes and engine time per call."""

    def frames(self) -> dict[str, int]:
        with self._lock:
            return dict(self._frames)

    def percentiles(self, stage: str, qs: tuple[float, ...] = (50, 95, 99)) -> dict[str, float]:
        with self._lock:
            ring = self._samples.get(stage)
            data = ring.values() if ring is not None else np.empty(0)
        if data.size == 0:
            return {}
        values = np.percentile(data, qs)
        out = {f"p{q:g}": float(v) for q, v in zip(qs, values)}
        out["mean"] = float(data.mean())
        out["max"] = float(data.max())
        return out

    def summary(self, counters: Mapping[str, Mapping[str, int]] | None = None) -> str:
        """A short table: per-stage p50/p95/p99, then frames/s and counters per source."""
        elapsed = max(time.monotonic() - (self.started or time.monotonic()), 1e-9)
        rows = [(stage, p) for stage in STAGES if (p := self.percentiles(stage))]
        lines = [f"{'stage (ms)':<12} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}"] if rows else ["no frames processed: no latencies"]
        lines += [f"{stage:<12} {p['p50']:>8.2f} {p['p95']:>8.2f} {p['p99']:>8.2f} {p['max']:>8.2f}" for stage, p in rows]
        frames = self.frames()
        for source in sorted(set(frames) | set(counters or {})):
            n = frames.get(source, 0)
            extra = ", ".join(f"{k} {v}" for k, v in (counters or {}).get(source, {}).items())
            lines.append(f"{source}: {n} frames, {n / elapsed:.1f} frames/s" + (f", {extra}" if extra else ""))
        return "\n".join(lines)


class NullMetrics(Metrics):
    """Records nothing: for callers that measure elsewhere."""

    def record_frame(self, source: str, latency_ms: Mapping[str, float]) -> None:
        pass

    def record(self, stage: str, value_ms: float) -> None:
        pass

    def record_batch(self, size: int, engine_ms: float) -> None:
        pass


class StatsLine:
    """One log line per interval for long runs: rates and what was dropped since the last line."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._due = time.monotonic() + interval_s
        self._last: dict[str, int] = {}

    def due(self) -> bool:
        return bool(self.interval_s) and time.monotonic() >= self._due

    def line(self, counters: Mapping[str, Mapping[str, int]], metrics: Metrics) -> str:
        interval = self.interval_s + (time.monotonic() - self._due)
        self._due = time.monotonic() + self.interval_s
        parts = []
        for name, c in counters.items():
            last = self._last
            fps = (c["published"] - last.get(f"{name}.published", 0)) / interval
            skipped = c["skipped"] - last.get(f"{name}.skipped", 0)
            parts.append(f"{name} {fps:.1f} fps, skipped {skipped}, reconnects {c['reconnects']}")
            last.update({f"{name}.{k}": v for k, v in c.items()})
        total = metrics.percentiles("total")
        p50 = f"; total latency p50 {total['p50']:.1f} ms p99 {total['p99']:.1f} ms" if total else ""
        return "; ".join(parts) + p50
