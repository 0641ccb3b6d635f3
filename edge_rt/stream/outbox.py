"""Message assembly: what the publishing thread hands the sink for each frame, its events and each stream's end.

Sequence numbers live here, per source, detections and events apart (a subscriber to detections alone
sees no gaps), with the topics (the box's prefix with `box_topics`) and the count of what the sink took
or refused. The dicts themselves come from messages.py.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from ..camera.capture import CaptureState, SourceGroup
from ..camera.sources import Frame
from ..recording.recorder import Recorder
from ..tracking.events import Event
from ..tracking.stage import Objects, ObjectStage
from ..wire.schema import events_topic
from .inference import Inferred
from .messages import detection_items, detections_message, eos_message, event_message
from .timing import StageTimes


class Sink(Protocol):
    """Where finished messages go (the ZeroMQ publisher, or a list in a test)."""

    def publish(self, topic: str, message: dict[str, Any]) -> bool: ...


@runtime_checkable
class Subscribable(Protocol):
    """A sink that tells who subscribed (the XPUB publisher): late `$health` subscribers get answered."""

    def take_new_subscriptions(self) -> list[bytes]: ...


class Outbox:
    """One run's messages to the sink, numbered; `header` (box, session) opens every message."""

    def __init__(
        self,
        sink: Sink,
        sources: Sequence[str],
        header: Mapping[str, str],
        topic_prefix: str,
        model_name: str,
        names: Mapping[int, str],
        recorder: Recorder,
    ) -> None:
        self.sink = sink
        self.header = dict(header)
        self.topic_prefix = topic_prefix
        self.model_name = model_name
        self.names = names
        self.recorder = recorder
        self._seq: dict[str, int] = {s: 0 for s in sources}
        self._event_seq: dict[str, int] = {s: 0 for s in sources}
        self.published: dict[str, int] = {s: 0 for s in sources}
        self.events_published = 0
        self.sink_refused = 0
        # Wall-clock stamps of internal events derive from the monotonic clock with one offset.
        self._wall_offset = time.time_ns() - time.perf_counter_ns()

    def _next(self, seqs: dict[str, int], source: str) -> int:
        seq = seqs[source]
        seqs[source] = seq + 1
        return seq

    def _publish(self, topic: str, message: dict[str, Any]) -> bool:
        if self.sink.publish(topic, message):
            return True
        self.sink_refused += 1
        return False

    def detections(self, item: Inferred, frame: Frame, obj: Objects, post_end: int, track_end: int | None) -> dict[str, float]:
        """A frame's detections message; returns its per-stage latency for the metrics."""
        job = item.job
        seq = self._next(self._seq, frame.source)
        times = StageTimes(
            frame.capture_mono_ns, job.pre_start_ns, job.pre_end_ns, item.inf_start_ns, item.inf_end_ns, post_end, track_end
        )
        now_mono = time.perf_counter_ns()
        latency = times.latency_ms(now_mono)
        extra = {
            "model": self.model_name,
            "batch_size": len(job.batch.frames),
            "timestamps": times.timestamps(frame.capture_ns, job.batch.formed_ns, now_mono, self._wall_offset),
            "latency_ms": latency,
        }
        message = detections_message(self.header, frame, seq, detection_items(obj, self.names), extra)
        if self._publish(self.topic_prefix + frame.source, message):
            self.published[frame.source] += 1
        return latency

    def events(self, frame: Frame, events: Sequence[Event]) -> None:
        """On `$events/` + the source's topic, with their own seq: a subscriber to detections sees no gaps."""
        topic = events_topic(self.topic_prefix + frame.source)
        for event in events:
            seq = self._next(self._event_seq, frame.source)
            clip = self.recorder.on_event(frame, event)
            if self._publish(topic, event_message(event, self.header, seq, frame, self.names, time.time_ns(), clip)):
                self.events_published += 1

    def end_of_streams(self, sources: SourceGroup, objects: ObjectStage) -> None:
        """An explicit last message per source, so subscribers know the stream ended on purpose; first the
        end of the objects still tracked, so every `start` a subscriber saw has its `end`."""
        for spec, thread in zip(sources.specs, sources.threads):
            last_frame, events = objects.finish(spec.name)
            if last_frame is not None:
                self.events(last_frame, events)
            self.recorder.finish(spec.name)
            ended = any(e.state is CaptureState.ENDED for e in list(thread.events))
            seq = self._next(self._seq, spec.name)
            message = eos_message(self.header, spec.name, seq, self.published[spec.name], ended, time.time_ns())
            self.sink.publish(self.topic_prefix + spec.name, message)
