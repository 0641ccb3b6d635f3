"""When to give up on a source's read and when to reopen it: the timeouts and the back-off schedule."""

from __future__ import annotations

from dataclasses import dataclass


class ReconnectSchedule:
    """When to reopen a lost source: about once a second for the first `fast_window_s` of an outage
    (a camera that blinks is back within seconds), then exponential back-off to `max_s` with +-20%
    jitter, so a site whose cameras all drop at once does not reopen them in lock-step."""

    def __init__(
        self,
        fast_window_s: float = 10.0,
        fast_interval_s: float = 1.0,
        max_s: float = 30.0,
        jitter: float = 0.2,
        seed: int | None = None,
    ) -> None:
        import random

        self.fast_window_s = fast_window_s
        self.fast_interval_s = fast_interval_s
        self.max_s = max_s
        self.jitter = jitter
        self._rng = random.Random(seed)
        self._slow_step = 0

    def reset(self) -> None:
        self._slow_step = 0

    def delay(self, outage_s: float) -> float:
        """Seconds to wait before the next try, `outage_s` into the outage."""
        if outage_s < self.fast_window_s:
            base = self.fast_interval_s
        else:
            base = min(self.fast_interval_s * 2 ** (self._slow_step + 1), self.max_s)
            self._slow_step += 1
        return float(min(base * (1 + self._rng.uniform(-self.jitter, self.jitter)), self.max_s * (1 + self.jitter)))


@dataclass(frozen=True)
class CaptureSettings:
    """Timeouts that keep OpenCV from blocking forever, and the reconnect back-off."""

    open_timeout_s: float = 5.0
    stall_timeout_s: float = 5.0  # no new frame for this long: reopen (OpenCV's read timeout is half of it)
    fast_retry_window_s: float = 10.0  # reopen about once a second for this long into an outage
    fast_retry_s: float = 1.0
    backoff_max_s: float = 30.0  # then exponential back-off up to this

    def schedule(self) -> ReconnectSchedule:
        return ReconnectSchedule(self.fast_retry_window_s, self.fast_retry_s, self.backoff_max_s)
