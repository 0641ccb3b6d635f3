"""The one-slot "latest frame" box between a capture thread and the batcher, and the counts it keeps.

Live sources keep only their newest frame (skips counted), so a slow consumer never sees stale frames;
files hand over every frame, in order.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from .sources import Frame


@dataclass
class SourceCounters:
    """Per-source counts; written by the capture thread, read by metrics (ints are atomic enough)."""

    read: int = 0  # frames read from the device or file
    delivered: int = 0  # frames taken by the batcher
    skipped: int = 0  # frames replaced in the slot before the pipeline took them
    paced_out: int = 0  # frames read but not offered because of --fps
    read_failures: int = 0
    reconnects: int = 0
    stalls: int = 0


class FrameSlot:
    """Hand-off from one capture thread to the batcher, under the batcher's condition.

    `latest` keeps one frame and overwrites it (counted as skipped); `queue` keeps up to
    `capacity` frames and makes the producer wait, so a file loses nothing.
    """

    def __init__(self, name: str, cond: threading.Condition, latest: bool, capacity: int = 2) -> None:
        self.name = name
        self._cond = cond
        self._latest = latest
        self._capacity = 1 if latest else capacity
        self._frames: deque[Frame] = deque()
        self.closed = False  # no more frames will come
        self.active = False  # the source is streaming; the batcher may wait for it
        self.counters = SourceCounters()

    def put(self, frame: Frame, stop: threading.Event) -> bool:
        """Offer a frame; False when stopping. Only the queue policy ever waits."""
        with self._cond:
            if self._latest:
                if self._frames:
                    self._frames.popleft()
                    self.counters.skipped += 1
            else:
                while len(self._frames) >= self._capacity and not stop.is_set():
                    self._cond.wait(0.1)
                if stop.is_set():
                    return False
            self._frames.append(frame)
            self._cond.notify_all()
        return True

    def ready(self) -> bool:
        return bool(self._frames)

    def take(self) -> Frame:
        """Caller holds the condition."""
        frame = self._frames.popleft()
        self.counters.delivered += 1
        self._cond.notify_all()
        return frame

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self.active = False
            self._cond.notify_all()

    def set_active(self, active: bool) -> None:
        with self._cond:
            self.active = active
            self._cond.notify_all()

    @property
    def exhausted(self) -> bool:
        return self.closed and not self._frames
