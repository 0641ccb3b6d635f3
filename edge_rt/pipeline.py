"""Wires the stages: capture -> batch + preprocess -> engine -> postprocess + publish.

Three threads overlap the work: while batch k is in the engine, batch k+1 is being preprocessed
and batch k-1 post-processed and published. Queues between them hold one item, so memory and
latency stay bounded: when the engine is the bottleneck, live sources drop their stale frames
at capture (counted), files wait.

The parts live in stream/: the prepare and infer threads (loops.py), the publishing thread's
housekeeping (duties.py) and the messages it sends (outbox.py). This module owns the run: it starts
the threads, publishes each batch and stops everything on the first error.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable

from .camera.capture import SourceGroup
from .detect.batching import Batcher
from .detect.collect import CollectStage, NullCollector
from .detect.postprocess import Postprocessor
from .detect.preprocess import FramePacker, Preprocessor
from .engines.base import Engine
from .ops.health import HealthBoard
from .ops.metrics import Metrics, NullMetrics, StatsLine
from .recording.recorder import Recorder
from .stream.duties import Duties
from .stream.inference import InferenceStage, Inferred
from .stream.loops import DONE, StageLoops
from .stream.outbox import Outbox, Sink, Subscribable
from .tracking.stage import ObjectStage

log = logging.getLogger("edge_rt.pipeline")

__all__ = ["Pipeline", "Sink", "Subscribable"]


class Pipeline:
    """Runs until every source has ended (files without --loop) or `stop()` is called."""

    def __init__(
        self,
        sources: SourceGroup,
        engine: Engine,
        preprocessor: Preprocessor | FramePacker,
        postprocessor: Postprocessor,
        sink: Sink,
        max_batch: int,
        max_wait_s: float,
        model_name: str,
        metrics: Metrics | None = None,
        stats_interval_s: float = 0.0,
        engine_timeout_s: float = 60.0,
        heartbeat_s: float = 2.0,
        collector: CollectStage | None = None,
        box: str = "edge-rt",
        box_topics: bool = False,
        objects: ObjectStage | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.sources = sources
        self.engine = engine
        self.postprocessor = postprocessor
        self.metrics = metrics or NullMetrics()
        self.collector = collector or NullCollector()  # --collect: frames the model is unsure about, saved off-thread
        self.objects = objects or ObjectStage((), {}, 0.0)  # tracks, zones, events; without tracking: boxes pass through
        self.recorder = recorder or Recorder((), ())  # --record: clips around events, written off this thread
        self.box = box  # in every message; with box_topics also the topic prefix: two boxes' cam0 stay apart
        self.session = uuid.uuid4().hex
        self.batcher = Batcher(sources.slots, sources.cond, max_batch, max_wait_s)
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self.stats = StatsLine(stats_interval_s)  # --stats-interval: a line of rates and drops for long runs
        names = [s.name for s in sources.specs]
        self.health = HealthBoard(names, self.session, heartbeat_s, box)
        sources.listeners.append(self.health.on_event)
        # The engine watchdog: a call past its bound ends the run.
        self.inference = InferenceStage(engine, engine_timeout_s)
        self.loops = StageLoops(self.batcher, preprocessor, self.inference, self._stop, self._errors, self._guard)
        header = {"box": box, "session": self.session}
        prefix = f"{box}/" if box_topics else ""
        self.outbox = Outbox(sink, names, header, prefix, model_name, engine.info.names, self.recorder)
        self.duties = Duties(self.health, sink, self.inference, engine.device, self.counters)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def engine_hung(self) -> bool:
        """An engine call never returned: its thread is stuck (the CLI exits hard)."""
        return self.duties.engine_hung

    @property
    def tickers(self) -> list[Callable[[], None]]:
        """Called from the publishing thread's housekeeping (sd_notify)."""
        return self.duties.tickers

    @property
    def published(self) -> dict[str, int]:
        return self.outbox.published

    @property
    def sink_refused(self) -> int:
        return self.outbox.sink_refused

    @property
    def events_published(self) -> int:
        return self.outbox.events_published

    def stop(self) -> None:
        """Stop capturing; what is already in flight is still published."""
        self.duties.stopping()
        self._stop.set()
        self.sources.stop(timeout=0)

    def engine_busy_s(self) -> float:
        """How long the running engine call has taken so far (0 when none runs)."""
        return self.inference.busy_s()

    def run(self) -> None:
        threads = [
            threading.Thread(target=self._guard, args=(self.loops.prepare_loop,), name="edge_rt-prepare", daemon=True),
            threading.Thread(target=self._guard, args=(self.loops.infer_loop,), name="edge_rt-infer", daemon=True),
        ]
        self.sources.start()
        for t in threads:
            t.start()
        try:
            self._guard(self._publish_loop)
        finally:
            self._stop.set()
            # Daemon threads: one stuck in a camera's open or read must not hold up the exit.
            self.sources.stop(timeout=0.3)
            for t in threads:
                t.join(0.1 if self.engine_hung else 2.0)
            self.duties.last_health(self.sources, self._errors[0] if self._errors else None)
        if self._errors:
            raise self._errors[0]

    def _guard(self, loop: Callable[[], None]) -> None:
        """A stage that fails stops the whole pipeline and re-raises in run(), never dies silently."""
        try:
            loop()
        except BaseException as exc:  # noqa: BLE001 - re-raised from run()
            self._errors.append(exc)
            self._stop.set()
            self.loops.drain_and_close(publishing=loop == self._publish_loop)

    def _publish_loop(self) -> None:
        while True:
            self.duties.housekeeping()
            try:
                item = self.loops.to_publish.get(timeout=0.1)  # wake for health and the watchdog when no frame comes
            except queue.Empty:
                if self.duties.drain_overdue():
                    break
                continue
            if item is DONE:
                break
            self._publish(item)
            if self.stats.due():
                log.info("stats: %s", self.stats.line(self.counters(), self.metrics))
        if not self._errors:
            self.outbox.end_of_streams(self.sources, self.objects)

    def _publish(self, item: Inferred) -> None:
        """Postprocess and track one batch, then each frame's message, metrics, recording and events."""
        self.metrics.record_batch(len(item.job.batch.frames), (item.inf_end_ns - item.inf_start_ns) / 1e6)
        dets = self.postprocessor(item.output, item.job.prepared.letterboxes)
        post_end = time.perf_counter_ns()
        frames = item.job.batch.frames
        objects = [self.objects(frame, frame_dets) for frame, frame_dets in zip(frames, dets)]
        track_end = time.perf_counter_ns() if self.objects.enabled else None
        for frame, frame_dets, obj in zip(frames, dets, objects):
            latency = self.outbox.detections(item, frame, obj, post_end, track_end)
            self.metrics.record_frame(frame.source, latency)
            self.recorder.on_frame(frame)
            self.outbox.events(frame, obj.events)
            # After its message left; a copy per --collect-interval at most, of the boxes at --conf.
            self.collector.offer(frame, self.objects.confident(frame_dets))

    def counters(self) -> dict[str, dict[str, int]]:
        """Per-source counts for metrics and the end-of-run summary."""
        out = {}
        for slot in self.sources.slots:
            c = slot.counters
            out[slot.name] = {
                "read": c.read,
                "published": self.outbox.published[slot.name],
                "skipped": c.skipped,
                "paced_out": c.paced_out,
                "read_failures": c.read_failures,
                "reconnects": c.reconnects,
                "stalls": c.stalls,
                **self.collector.counters(slot.name),
                **self.recorder.source_counters(slot.name),
            }
        return out
