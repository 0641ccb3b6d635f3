"""Batching: the newest frame of each ready source, up to max_batch, waiting at most max_wait."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from ..camera.slot import FrameSlot
from ..camera.sources import Frame


@dataclass(frozen=True, eq=False)
class Batch:
    """Frames that go through the engine in one call, and when the batch was formed."""

    frames: tuple[Frame, ...]
    formed_ns: int  # wall clock
    formed_mono_ns: int  # perf_counter_ns

    def __post_init__(self) -> None:
        if not self.frames:
            raise ValueError("Batch: expected at least one frame, got none")


class Batcher:
    """Forms batches from slots that share one condition with their capture threads.

    Once one frame is ready, it waits up to `max_wait_s` for the other streaming sources, but never
    longer than it takes for all of them (or `max_batch`) to be ready, so one source costs no wait.
    Sources take turns when there are more ready sources than `max_batch`.
    """

    def __init__(self, slots: list[FrameSlot], cond: threading.Condition, max_batch: int, max_wait_s: float) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._slots = slots
        self._cond = cond
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._turn = 0

    def finished(self) -> bool:
        """Every source has ended and every frame was taken."""
        return all(s.exhausted for s in self._slots)

    def next_batch(self, timeout_s: float, stop: threading.Event | None = None) -> Batch | None:
        """A batch, or None after `timeout_s` without a frame, when stopping, or when all sources ended."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not any(s.ready() for s in self._slots):
                if self.finished() or (stop is not None and stop.is_set()):
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, 0.1))
            fill_deadline = time.monotonic() + self.max_wait_s
            while True:
                ready = sum(s.ready() for s in self._slots)
                expected = sum(s.ready() or s.active for s in self._slots)
                if ready >= min(self.max_batch, expected):
                    break
                remaining = fill_deadline - time.monotonic()
                if remaining <= 0 or (stop is not None and stop.is_set()):
                    break
                self._cond.wait(remaining)
            n = len(self._slots)
            order = [self._slots[(self._turn + i) % n] for i in range(n)]
            frames: list[Frame] = []
            for slot in order:
                if slot.ready() and len(frames) < self.max_batch:
                    frames.append(slot.take())
            self._turn = (self._turn + 1) % n
        return Batch(tuple(frames), time.time_ns(), time.perf_counter_ns())
