"""When a frame passed each stage, and what a message says of it: `latency_ms` (per-stage durations that
add up to the total) and `timestamps` (wall clock). The stamps are time.perf_counter_ns(); one offset turns
them into wall-clock time."""

from __future__ import annotations

from dataclasses import dataclass


def _ms(a: int, b: int) -> float:
    return round((b - a) / 1e6, 3)


@dataclass(frozen=True)
class StageTimes:
    """When a frame passed each stage (time.perf_counter_ns()); track_end is None without tracking."""

    capture: int
    pre_start: int
    pre_end: int
    inf_start: int
    inf_end: int
    post_end: int
    track_end: int | None

    def latency_ms(self, now: int) -> dict[str, float]:
        """`latency_ms`: per-stage durations that add up to total (the JSON Schema says what each covers)."""
        return {
            "wait": _ms(self.capture, self.pre_start),
            "preprocess": _ms(self.pre_start, self.pre_end),
            "queue": _ms(self.pre_end, self.inf_start),
            "inference": _ms(self.inf_start, self.inf_end),
            "postprocess": _ms(self.inf_end, self.post_end),
            **({"track": _ms(self.post_end, self.track_end)} if self.track_end is not None else {}),
            "publish": _ms(self.track_end or self.post_end, now),
            "total": _ms(self.capture, now),
        }

    def timestamps(self, capture_ns: int, batch_ns: int, now: int, wall_offset: int) -> dict[str, int]:
        """`timestamps`: wall clock, the monotonic stamps shifted by one offset."""
        return {
            "capture_ns": capture_ns,
            "batch_ns": batch_ns,
            "inference_start_ns": self.inf_start + wall_offset,
            "inference_end_ns": self.inf_end + wall_offset,
            "publish_ns": now + wall_offset,
        }
