"""Event clips: which stretch of a source to keep, decided on the publishing thread, written off it.

A clip opens at an event of `record.events` (pre-roll before it), stays open while an object that
raised one is tracked, and closes `post_s` after the last such event or object end. A clip reaching
`max_clip_s` is cut there and goes on in a new one only while events go on (a parked car gives one
clip, not a day of them). Every event published while a clip is open carries its path; an object's
end carries the last clip it was in. One writer thread per source
copies the packets; the pipeline only hands it times, so recording never holds a frame up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..camera.sources import Frame, SourceKind, SourceSpec
from ..errors import ConfigError
from ..tracking.events import Event
from ..tracking.stage import frame_time
from .clip import ClipWriter
from .packets import FilePackets, LivePackets, Packet
from .retention import sweep
from .settings import RecordConfig, SourceRecord

log = logging.getLogger("edge_rt.record")
_NO_FRAMES_S = 5.0  # a live clip whose deadline passed this long ago on the wall clock, with no frame since, ends


@dataclass(eq=False)
class Clip:
    """One clip being decided; the writer reads `deadline_s` and `final` under the source's lock."""

    path: Path
    start_s: float  # pre-roll included
    opened_s: float  # its first event
    deadline_s: float
    tracks: set[int] = field(default_factory=set)  # objects that keep it open until they end
    events_until: float = float("-inf")  # post-roll after its last event (what a cut continues for)
    final: bool = False


@dataclass
class RecordCounters:
    clips: int = 0
    failed: int = 0


class SourceRecorder:
    """One source: its clip state (publishing thread) and its writer thread."""

    def __init__(self, spec: SourceSpec, config: RecordConfig) -> None:
        self.spec = spec
        self.config = config
        self.folder = Path(config.dir)
        self.packets: FilePackets | LivePackets = (
            FilePackets(spec) if spec.kind is SourceKind.FILE else LivePackets(spec, config.pre_s + 1.0)
        )
        self.counters = RecordCounters()
        self._cond = threading.Condition()
        self._queue: deque[Clip] = deque()
        self.current: Clip | None = None
        self._track_clip: dict[int, str] = {}  # an object's latest clip, for its end after a cut
        self.progress = float("-inf")
        self.ended = False
        self._names: set[str] = set()
        self._thread = threading.Thread(target=self._write_loop, name=f"edge_rt-record-{spec.name}", daemon=True)
        self._thread.start()

    # -- the publishing thread --------------------------------------------------------------------
    def on_frame(self, frame: Frame) -> None:
        t = frame_time(frame)  # packets.py places packets on the same clock
        with self._cond:
            clip = self.current
            if clip is not None and clip.final:  # its writer finished it: no frame came while its objects lived
                self.current = clip = None
            if clip is not None and t < self.progress - 1.0:  # a --loop file started over: its clock too
                self._close(clip)
            elif clip is not None:
                if clip.tracks:
                    clip.deadline_s = max(clip.deadline_s, t + self.config.post_s)
                if t >= clip.deadline_s:
                    self._close(clip)
                elif t - clip.opened_s >= self.config.max_clip_s:
                    cut = clip.opened_s + self.config.max_clip_s
                    clip.deadline_s = cut
                    self._close(clip)
                    if clip.events_until > cut:  # events go on: so does the recording; objects alone do not
                        self._open(frame, cut, cut).deadline_s = clip.events_until
            self.progress = t
            self._cond.notify_all()

    def on_event(self, frame: Frame, event: Event) -> str | None:
        t = frame_time(frame)  # packets.py places packets on the same clock
        with self._cond:
            clip = self.current
            if clip is not None and clip.final:
                self.current = clip = None
            if event.kind in self.config.events:
                if clip is None:
                    clip = self._open(frame, t, t - self.config.pre_s, name_id=event.track_id)
                clip.deadline_s = max(clip.deadline_s, t + self.config.post_s)
                clip.events_until = max(clip.events_until, t + self.config.post_s)
                if event.kind != "end":
                    clip.tracks.add(event.track_id)
            if event.kind == "end":
                path = str(clip.path) if clip is not None else self._track_clip.get(event.track_id)
                self._track_clip.pop(event.track_id, None)
                if clip is not None and event.track_id in clip.tracks:
                    clip.tracks.discard(event.track_id)
                    clip.deadline_s = max(clip.deadline_s, t + self.config.post_s)
                self._cond.notify_all()
                return path
            if clip is None:
                return None
            self._track_clip[event.track_id] = str(clip.path)
            self._cond.notify_all()
            return str(clip.path)

    def finish(self) -> None:
        """The source ended (or the run stops): the open clip ends with what the source gave."""
        with self._cond:
            if self.current is not None:
                self._close(self.current)
            self.ended = True
            self._cond.notify_all()

    def _open(self, frame: Frame, opened_s: float, start_s: float, name_id: int | None = None) -> Clip:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(frame.capture_ns / 1e9))
        base = f"{stamp}-{name_id}" if name_id is not None else f"{stamp}-cont"
        name, n = base, 1
        while name in self._names or (self.folder / self.spec.name / f"{name}.mp4").exists():
            n += 1
            name = f"{base}-{n}"
        self._names.add(name)
        clip = Clip(self.folder / self.spec.name / f"{name}.mp4", start_s, opened_s, opened_s + self.config.post_s)
        self.current = clip
        self._queue.append(clip)
        return clip

    def _close(self, clip: Clip) -> None:
        clip.final = True
        if self.current is clip:
            self.current = None

    # -- the writer thread ------------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self.ended:
                    self._cond.wait(0.5)
                if not self._queue:
                    return
                clip = self._queue[0]
            try:
                self._write(clip)
            except Exception as exc:  # noqa: BLE001 - a clip that fails must not end the recording
                self.counters.failed += 1
                log.warning("record %s: clip %s failed: %s: %s", self.spec.name, clip.path.name, type(exc).__name__, exc)
            with self._cond:
                self._queue.popleft()
            self._sweep()

    def _may_write(self, clip: Clip, item: Packet) -> bool:
        """Wait while `item` lies past a deadline that may still move; False once the clip is complete."""
        with self._cond:
            while item.t > clip.deadline_s and not clip.final and not self.ended:
                if self.packets.live and time.perf_counter() > clip.deadline_s + _NO_FRAMES_S:
                    clip.final = True  # the camera streams but the detector gets no frames: the clip ends here
                    break
                self._cond.wait(0.1)
            if self.ended and self.packets.live and item.t > self.progress + 0.5:
                return False  # stopping: not past the last frame the run saw
            return item.t <= clip.deadline_s

    def _write(self, clip: Clip) -> None:
        writer: ClipWriter | None = None
        idle_since = time.monotonic()
        stop = threading.Event()
        try:
            for item in self.packets.iter_from(clip.start_s, stop):
                if item is None:  # a live stream with nothing new yet
                    with self._cond:
                        done = (clip.final or self.ended) and time.monotonic() - idle_since > (0.5 if self.ended else 2.0)
                    if done:
                        break
                    continue
                idle_since = time.monotonic()
                if item.t < clip.start_s and not item.key and writer is None:
                    continue
                if not self._may_write(clip, item):
                    break
                if writer is None:
                    if not item.key:
                        continue
                    writer = ClipWriter(clip.path, item.packet.stream, self.packets.codec or "")
                writer.write(item)
        finally:
            stop.set()
        if writer is not None and writer.close():
            self.counters.clips += 1
            log.info(
                "record %s: clip %s (%.1f s, %d packets%s)",
                self.spec.name,
                clip.path,
                (writer.last_t or 0) - (writer.first_t or 0),
                writer.packets,
                "" if writer.copy else f", {self.packets.codec} re-encoded to H.264",
            )
        else:
            log.warning("record %s: clip %s: no video between its times; nothing written", self.spec.name, clip.path.name)

    def _sweep(self) -> None:
        sweep(self.folder, self.config.keep_days, self.config.keep_mb)

    def close(self, timeout_s: float) -> bool:
        """Finish what is open; True when every clip was written within `timeout_s`."""
        self.finish()
        self._thread.join(timeout_s)
        self.packets.close()
        return not self._thread.is_alive()


class Recorder:
    """Every recorded source; the others pass through."""

    def __init__(self, specs: Sequence[SourceSpec], records: Sequence[SourceRecord]) -> None:
        by_name = {s.name: s for s in specs}
        if records:
            try:
                import av  # noqa: F401 - checked before any camera opens
            except ImportError:
                raise ConfigError("record: needs PyAV, which is not installed: pip install 'edge_rt[record]'") from None
        for r in records:
            _check_folder(Path(r.record.dir))
        self.sources: dict[str, SourceRecorder] = {}
        try:
            for r in records:
                self.sources[r.source] = SourceRecorder(by_name[r.source], r.record)
        except Exception:
            self.close(0.5)
            raise
        for rec in {rec.folder: rec for rec in self.sources.values()}.values():  # once per folder, not per source
            rec._sweep()

    @property
    def enabled(self) -> bool:
        return bool(self.sources)

    def on_frame(self, frame: Frame) -> None:
        rec = self.sources.get(frame.source)
        if rec is not None:
            rec.on_frame(frame)

    def on_event(self, frame: Frame, event: Event) -> str | None:
        rec = self.sources.get(frame.source)
        return rec.on_event(frame, event) if rec is not None else None

    def finish(self, source: str) -> None:
        rec = self.sources.get(source)
        if rec is not None:
            rec.finish()

    def close(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        for name, rec in self.sources.items():
            if not rec.close(max(0.1, deadline - time.monotonic())):
                log.warning("record %s: a clip was still being written at exit; its .part file stays", name)

    def source_counters(self, source: str) -> Mapping[str, int]:
        """For the run's summary and Prometheus; nothing for a source that is not recorded."""
        rec = self.sources.get(source)
        if rec is None:
            return {}
        return {"clips": rec.counters.clips, "clip_failures": rec.counters.failed, "record_dropped": rec.packets.dropped}


def _check_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".edge_rt-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"record: cannot write clips to {str(folder)!r}: {exc.strerror or exc}") from None
