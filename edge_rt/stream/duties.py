"""What the publishing thread does between frames: `$health` changes and heartbeats (answers to new
subscribers too), the engine watchdog, the drain deadline after a stop, and every source's last word.

On that thread because it owns the ZeroMQ socket; about every 50 ms, so a run with no frames (every camera
down) still reports and still notices a hung engine call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from ..camera.capture import CaptureState, SourceGroup
from ..errors import EngineError
from ..ops.health import HealthBoard, wants_health
from ..ops.redact import redact_url
from ..wire.schema import HEALTH_TOPIC
from .inference import InferenceStage
from .outbox import Sink, Subscribable

log = logging.getLogger("edge_rt.pipeline")

Counters = Callable[[], Mapping[str, Mapping[str, int]]]


class Duties:
    """The housekeeping of one run; `counters` reads the pipeline's per-source counts when a message needs them."""

    def __init__(
        self,
        health: HealthBoard,
        sink: Sink,
        inference: InferenceStage,
        device: str,
        counters: Counters,
        drain_timeout_s: float = 5.0,
    ) -> None:
        self.health = health
        self.sink = sink
        self.inference = inference
        self.device = device
        self.counters = counters
        self.drain_timeout_s = drain_timeout_s  # after stop(), what is in flight gets this long, then we leave without it
        self.tickers: list[Callable[[], None]] = []  # called from here too (sd_notify)
        self.engine_hung = False  # a call never returned: its thread is stuck (the CLI exits hard)
        self.drained_early = False
        self._stop_deadline: float | None = None
        self._due = 0.0

    def stopping(self) -> None:
        """stop() was called: the drain deadline starts now (once)."""
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self.drain_timeout_s

    def housekeeping(self) -> None:
        """Health messages, the engine watchdog and the tickers, at most every 50 ms."""
        now = time.monotonic()
        if now < self._due:
            return
        self._due = now + 0.05
        overdue = self.inference.overdue(now)
        if overdue is not None:
            self.engine_hung = True
            raise EngineError(
                f"engine ({self.device}) call has not returned after {overdue:.0f}s (--engine-timeout {self.inference.timeout_s:g}s): ending the run so it can be restarted"
            )
        snapshot = isinstance(self.sink, Subscribable) and any(wants_health(t) for t in self.sink.take_new_subscriptions())
        for message in self.health.messages(self.counters(), snapshot=snapshot):
            self.sink.publish(HEALTH_TOPIC, message)
        for tick in self.tickers:
            tick()

    def drain_overdue(self) -> bool:
        """After stop(), a stage that does not finish (an engine call that hangs) must not hold the exit
        up past the drain timeout: systemd and Kubernetes kill a service that ignores SIGTERM."""
        if self._stop_deadline is None or time.monotonic() < self._stop_deadline:
            return False
        self.engine_hung = self.inference.since is not None
        log.warning(
            "stopping without what is still in flight: %s",
            f"the engine call has run {self.inference.busy_s():.0f}s" if self.engine_hung else "a stage did not finish",
        )
        self.drained_early = True
        return True

    def last_health(self, sources: SourceGroup, error: BaseException | None) -> None:
        """Every source's last health message says `stopped` (on the socket's own thread: this one)."""
        if self.health.final:
            return
        reasons = {}
        for spec, thread in zip(sources.specs, sources.threads):
            ended = any(e.state is CaptureState.ENDED for e in list(thread.events))  # a late capture thread may still append
            reasons[spec.name] = (
                f"error: {redact_url(str(error))}" if error is not None else ("end of file" if ended else "shutdown")
            )
        try:
            for message in self.health.stopped(reasons, self.counters()):
                self.sink.publish(HEALTH_TOPIC, message)
        except Exception:  # noqa: BLE001 - a broken sink must not hide the error that ended the run
            log.exception("could not publish the final health messages")
