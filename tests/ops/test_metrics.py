"""The run's latency window: the last N samples per stage, in memory fixed from the first sample."""

from __future__ import annotations

import tracemalloc

from edge_rt.ops.metrics import Metrics


def test_percentiles_cover_only_the_last_window_of_samples() -> None:
    m = Metrics(window=100)
    for i in range(250):
        m.record_frame("cam0", {"total": float(i)})
    p = m.percentiles("total")
    assert p["max"] == 249 and p["mean"] == sum(range(150, 250)) / 100  # 150..249: the oldest fell out
    assert m.frames() == {"cam0": 250}


def test_memory_does_not_grow_once_the_first_samples_arrived() -> None:
    m = Metrics(window=20000)
    for _ in range(10):
        m.record_frame("cam0", {"inference": 1.0, "total": 2.0})
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(30000):  # past the window: a deque of floats would have grown by ~1.5 MB here
        m.record_frame("cam0", {"inference": float(i), "total": float(i)})
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown} bytes allocated and kept by 60000 samples"
