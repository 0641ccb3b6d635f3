"""Wires the stages: capture -> batch + preprocess -> engine -> postprocess + publish.

Three threads overlap the work: while batch k is in the engine, batch k+1 is being preprocessed
and batch k-1 post-processed and published. Queues between them hold one item, so memory and
latency stay bounded: when the engine is the bottleneck, live sources drop their stale frames
at capture (counted), files wait.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol, runtime_checkable

from .batching import Batcher
from .capture import CaptureState, SourceGroup
from .collect import CollectStage, NullCollector
from .engines.base import Engine
from .errors import EngineError
from .health import HealthBoard, wants_health
from .inference import InferenceStage, Inferred, Job, Started
from .messages import StageTimes, detection_items, detections_message, eos_message, event_message
from .metrics import Metrics, NullMetrics, StatsLine
from .postprocess import Postprocessor
from .preprocess import FramePacker, Preprocessor
from .recording.recorder import Recorder
from .schema import HEALTH_TOPIC, events_topic
from .security import redact_url
from .sources import Frame
from .tracking.events import Event
from .tracking.stage import Objects, ObjectStage

log = logging.getLogger("edge_rt.pipeline")

_DONE = object()  # end-of-stream marker between the pipeline's threads


class Sink(Protocol):
    """Where finished messages go (the ZeroMQ publisher, or a list in a test)."""

    def publish(self, topic: str, message: dict[str, Any]) -> bool: ...


@runtime_checkable
class Subscribable(Protocol):
    """A sink that tells who subscribed (the XPUB publisher): late `$health` subscribers get answered."""

    def take_new_subscriptions(self) -> list[bytes]: ...


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
        self.preprocessor = preprocessor
        self.postprocessor = postprocessor
        self.sink = sink
        self.metrics = metrics or NullMetrics()
        self.collector = collector or NullCollector()  # --collect: frames the model is unsure about, saved off-thread
        self.objects = objects or ObjectStage((), {}, 0.0)  # tracks, zones, events; without tracking: boxes pass through
        self.recorder = recorder or Recorder((), ())  # --record: clips around events, written off this thread
        self.model_name = model_name
        self.box = box  # in every message; with box_topics also the topic prefix: two boxes' cam0 stay apart
        self._topic_prefix = f"{box}/" if box_topics else ""
        self.session = uuid.uuid4().hex
        self.batcher = Batcher(sources.slots, sources.cond, max_batch, max_wait_s)
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._to_engine: queue.Queue[Any] = queue.Queue(maxsize=1)
        # One ticket: the next batch is formed only once the engine has taken the previous one, so it
        # is formed while the engine works (overlap) but never a whole inference ahead (stale frames).
        self._ticket = threading.Semaphore(1)
        self._to_publish: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._seq: dict[str, int] = {s.name: 0 for s in sources.specs}
        self._event_seq: dict[str, int] = {s.name: 0 for s in sources.specs}  # events count apart: a detections-only
        self.events_published = 0  # subscriber sees no gaps
        self.published: dict[str, int] = {s.name: 0 for s in sources.specs}
        self.sink_refused = 0
        self.stats = StatsLine(stats_interval_s)  # --stats-interval: a line of rates and drops for long runs
        # Wall-clock stamps of internal events derive from the monotonic clock with one offset.
        self._wall_offset = time.time_ns() - time.perf_counter_ns()
        self.health = HealthBoard([s.name for s in sources.specs], self.session, heartbeat_s, box)
        sources.listeners.append(self.health.on_event)
        # The engine watchdog: a call past its bound ends the run.
        self.engine_timeout_s = engine_timeout_s
        self.inference = InferenceStage(engine, engine_timeout_s)
        self.engine_hung = False  # a call never returned: its thread is stuck (the CLI exits hard)
        self.drain_timeout_s = 5.0  # after stop(), what is in flight gets this long, then we leave without it
        self._stop_deadline: float | None = None
        self._drained_early = False
        self.tickers: list[Callable[[], None]] = []  # called from the publishing thread's housekeeping (sd_notify)
        self._housekeeping_due = 0.0

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Stop capturing; what is already in flight is still published."""
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self.drain_timeout_s
        self._stop.set()
        self.sources.stop(timeout=0)

    def engine_busy_s(self) -> float:
        """How long the running engine call has taken so far (0 when none runs)."""
        return self.inference.busy_s()

    def run(self) -> None:
        threads = [
            threading.Thread(target=self._guard, args=(self._prepare_loop,), name="edge_rt-prepare", daemon=True),
            threading.Thread(target=self._guard, args=(self._infer_loop,), name="edge_rt-infer", daemon=True),
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
            self._last_health()
        if self._errors:
            raise self._errors[0]

    def _guard(self, loop: Any) -> None:
        """A stage that fails stops the whole pipeline and re-raises in run(), never dies silently."""
        try:
            loop()
        except BaseException as exc:  # noqa: BLE001 - re-raised from run()
            self._errors.append(exc)
            self._stop.set()
            self._drain_and_close(publishing=loop == self._publish_loop)

    def _drain_and_close(self, publishing: bool) -> None:
        """Unblock every stage; what was already inferred is still published unless publishing failed."""
        for q in (self._to_engine, self._to_publish) if publishing else (self._to_engine,):
            try:
                while True:
                    q.get_nowait()
            except queue.Empty:
                pass
            try:
                q.put_nowait(_DONE)
            except queue.Full:
                pass
        if not publishing:
            try:
                self._to_publish.put(_DONE, timeout=2.0)  # behind the batch in flight, if any
            except queue.Full:
                pass

    def _put(self, q: queue.Queue[Any], item: Any) -> None:
        while True:
            if self._errors:
                raise RuntimeError("pipeline stopped after an error in another stage")
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _prepare_loop(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._ticket.acquire(timeout=0.1):
                    continue
                batch = self.batcher.next_batch(timeout_s=0.1, stop=self._stop)
                if batch is None:
                    self._ticket.release()
                    if self.batcher.finished():
                        break
                    continue
                t0 = time.perf_counter_ns()
                prepared = self.preprocessor([f.image for f in batch.frames])
                self._put(self._to_engine, Job(batch, prepared, t0, time.perf_counter_ns()))
        finally:
            if not self._errors:
                self._put(self._to_engine, _DONE)

    def _infer_loop(self) -> None:
        if self.inference.depth > 1:
            self._overlapped_infer_loop()
            return
        while True:
            job = self._to_engine.get()
            self._ticket.release()
            if job is _DONE:
                self._put(self._to_publish, _DONE)
                return
            self._put(self._to_publish, self.inference.run(job))

    def _overlapped_infer_loop(self) -> None:
        """Several calls in flight (OpenVINO's streams): this thread starts them, a second collects them in order.
        A slot is taken before a job, so no batch waits here while the engine is full: it stays in the one-item
        queue, and the ticket keeps the batcher from forming another (no stale frames)."""
        running: queue.Queue[Started | object] = queue.Queue()  # holds at most depth items: the slots bound it
        slots = threading.Semaphore(self.inference.depth)
        threading.Thread(
            target=self._guard, args=(partial(self._collect_loop, running, slots),), name="edge_rt-collect", daemon=True
        ).start()
        try:
            while True:
                while not slots.acquire(timeout=0.1):
                    if self._errors:
                        return
                job = self._to_engine.get()
                self._ticket.release()
                if job is _DONE:
                    return
                running.put(self.inference.submit(job))
        finally:
            running.put(_DONE)  # after the calls in flight: the collector ends once they are out

    def _collect_loop(self, running: queue.Queue[Started | object], slots: threading.Semaphore) -> None:
        while True:
            started = running.get()
            if not isinstance(started, Started):
                self._put(self._to_publish, _DONE)
                return
            inferred = self.inference.collect(started)
            slots.release()
            self._put(self._to_publish, inferred)

    def _publish_loop(self) -> None:
        while True:
            self._housekeeping()
            try:
                item = self._to_publish.get(timeout=0.1)  # wake for health and the watchdog when no frame comes
            except queue.Empty:
                if self._drain_overdue():
                    break
                continue
            if item is _DONE:
                break
            self.metrics.record_batch(len(item.job.batch.frames), (item.inf_end_ns - item.inf_start_ns) / 1e6)
            dets = self.postprocessor(item.output, item.job.prepared.letterboxes)
            post_end = time.perf_counter_ns()
            frames = item.job.batch.frames
            objects = [self.objects(frame, frame_dets) for frame, frame_dets in zip(frames, dets)]
            track_end = time.perf_counter_ns() if self.objects.enabled else None
            for frame, frame_dets, obj in zip(frames, dets, objects):
                self._emit(item, frame, obj, post_end, track_end)
                # After its message left; a copy per --collect-interval at most, of the boxes at --conf.
                self.collector.offer(frame, self.objects.confident(frame_dets))
            if self.stats.due():
                log.info("stats: %s", self.stats.line(self.counters(), self.metrics))
        if not self._errors:
            self._end_of_streams()

    def _housekeeping(self) -> None:
        """On the publishing thread, about every 50 ms: health messages and the engine watchdog."""
        now = time.monotonic()
        if now < self._housekeeping_due:
            return
        self._housekeeping_due = now + 0.05
        overdue = self.inference.overdue(now)
        if overdue is not None:
            self.engine_hung = True
            raise EngineError(
                f"engine ({self.engine.device}) call has not returned after {overdue:.0f}s (--engine-timeout {self.engine_timeout_s:g}s): ending the run so it can be restarted"
            )
        snapshot = isinstance(self.sink, Subscribable) and any(wants_health(t) for t in self.sink.take_new_subscriptions())
        for message in self.health.messages(self.counters(), snapshot=snapshot):
            self.sink.publish(HEALTH_TOPIC, message)
        for tick in self.tickers:
            tick()

    def _drain_overdue(self) -> bool:
        """After stop(), a stage that does not finish (an engine call that hangs) must not hold the exit
        up past the drain timeout: systemd and Kubernetes kill a service that ignores SIGTERM."""
        if self._stop_deadline is None or time.monotonic() < self._stop_deadline:
            return False
        self.engine_hung = self.inference.since is not None
        log.warning(
            "stopping without what is still in flight: %s",
            f"the engine call has run {self.engine_busy_s():.0f}s" if self.engine_hung else "a stage did not finish",
        )
        self._drained_early = True
        return True

    def _last_health(self) -> None:
        """Every source's last health message says `stopped` (on the socket's own thread: this one)."""
        if self.health.final:
            return
        error = self._errors[0] if self._errors else None
        reasons = {}
        for spec, thread in zip(self.sources.specs, self.sources.threads):
            ended = any(e.state is CaptureState.ENDED for e in list(thread.events))  # a late capture thread may still append
            reasons[spec.name] = (
                f"error: {redact_url(str(error))}" if error is not None else ("end of file" if ended else "shutdown")
            )
        try:
            for message in self.health.stopped(reasons, self.counters()):
                self.sink.publish(HEALTH_TOPIC, message)
        except Exception:  # noqa: BLE001 - a broken sink must not hide the error that ended the run
            log.exception("could not publish the final health messages")

    def _emit(self, item: Inferred, frame: Frame, obj: Objects, post_end: int, track_end: int | None) -> None:
        job = item.job
        seq = self._seq[frame.source]
        self._seq[frame.source] = seq + 1
        times = StageTimes(
            frame.capture_mono_ns, job.pre_start_ns, job.pre_end_ns, item.inf_start_ns, item.inf_end_ns, post_end, track_end
        )
        now_mono = time.perf_counter_ns()
        latency = times.latency_ms(now_mono)
        header, names = {"box": self.box, "session": self.session}, self.engine.info.names
        extra = {
            "model": self.model_name,
            "batch_size": len(job.batch.frames),
            "timestamps": times.timestamps(frame.capture_ns, job.batch.formed_ns, now_mono, self._wall_offset),
            "latency_ms": latency,
        }
        topic = self._topic_prefix + frame.source
        if self.sink.publish(topic, detections_message(header, frame, seq, detection_items(obj, names), extra)):
            self.published[frame.source] += 1
        else:
            self.sink_refused += 1
        self.metrics.record_frame(frame.source, latency)
        self.recorder.on_frame(frame)
        self._publish_events(frame, obj.events)

    def _publish_events(self, frame: Frame, events: Sequence[Event]) -> None:
        """On `$events/` + the source's topic, with their own seq: a subscriber to detections sees no gaps."""
        header, names = {"box": self.box, "session": self.session}, self.engine.info.names
        topic = events_topic(self._topic_prefix + frame.source)
        for event in events:
            seq = self._event_seq[frame.source]
            self._event_seq[frame.source] = seq + 1
            clip = self.recorder.on_event(frame, event)
            if self.sink.publish(topic, event_message(event, header, seq, frame, names, time.time_ns(), clip)):
                self.events_published += 1
            else:
                self.sink_refused += 1

    def _end_of_streams(self) -> None:
        """An explicit last message per source, so subscribers know the stream ended on purpose; first the
        end of the objects still tracked, so every `start` a subscriber saw has its `end`."""
        header = {"box": self.box, "session": self.session}
        for spec, thread in zip(self.sources.specs, self.sources.threads):
            last_frame, events = self.objects.finish(spec.name)
            if last_frame is not None:
                self._publish_events(last_frame, events)
            self.recorder.finish(spec.name)
            ended = any(e.state is CaptureState.ENDED for e in list(thread.events))
            seq = self._seq[spec.name]
            self._seq[spec.name] = seq + 1
            message = eos_message(header, spec.name, seq, self.published[spec.name], ended, time.time_ns())
            self.sink.publish(self._topic_prefix + spec.name, message)

    def counters(self) -> dict[str, dict[str, int]]:
        """Per-source counts for metrics and the end-of-run summary."""
        out = {}
        for slot in self.sources.slots:
            c = slot.counters
            out[slot.name] = {
                "read": c.read,
                "published": self.published[slot.name],
                "skipped": c.skipped,
                "paced_out": c.paced_out,
                "read_failures": c.read_failures,
                "reconnects": c.reconnects,
                "stalls": c.stalls,
                **self.collector.counters(slot.name),
                **self.recorder.source_counters(slot.name),
            }
        return out
