"""Capture: one thread per source, an explicit state machine, the reopen schedule, the stall watch.

Live sources keep only their newest frame (a slow pipeline never works on stale frames, and every
frame it skips is counted); files hand over every frame, in order, unless paced like a camera.
A live source that fails or stalls is reopened on a `ReconnectSchedule`; its state is what
subscribers see on `$health`.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ConfigError, SourceError
from ..ops.memory import trim_heap
from ..ops.redact import redact_url
from .readers import VideoReader, gstreamer_supported, open_capture
from .reconnect import CaptureSettings
from .slot import FrameSlot
from .sources import Frame, SourceKind, SourceSpec

log = logging.getLogger("edge_rt.sources")


class CaptureState(enum.Enum):
    """A source's health, as subscribers see it on `$health` (ENDED goes out as `stopped`)."""

    STARTING = "starting"  # the first open
    ONLINE = "online"  # frames arrive
    STALLED = "stalled"  # no new frame for --stall-timeout: about to reopen
    RECONNECTING = "reconnecting"  # lost: reopening about once a second
    OFFLINE = "offline"  # lost for longer than the fast-retry window: exponential back-off
    ENDED = "ended"  # a file reached its end (no loop)
    STOPPED = "stopped"


_S = CaptureState
_ALLOWED = {
    _S.STARTING: {_S.ONLINE, _S.RECONNECTING, _S.OFFLINE, _S.ENDED, _S.STOPPED},
    _S.ONLINE: {_S.STALLED, _S.RECONNECTING, _S.ENDED, _S.STOPPED},
    _S.STALLED: {_S.ONLINE, _S.RECONNECTING, _S.ENDED, _S.STOPPED},
    _S.RECONNECTING: {_S.ONLINE, _S.OFFLINE, _S.ENDED, _S.STOPPED},
    _S.OFFLINE: {_S.ONLINE, _S.ENDED, _S.STOPPED},
    _S.ENDED: {_S.STOPPED},
    _S.STOPPED: set(),
}


@dataclass(frozen=True)
class HealthEvent:
    """A capture state change, for logs and metrics."""

    source: str
    previous: CaptureState
    state: CaptureState
    reason: str
    time_ns: int


Opener = Callable[[SourceSpec, CaptureSettings], VideoReader]


class CaptureThread(threading.Thread):
    """Reads one source into its slot; an explicit state machine decides when to reopen."""

    def __init__(
        self,
        spec: SourceSpec,
        slot: FrameSlot,
        settings: CaptureSettings = CaptureSettings(),
        opener: Opener = open_capture,
        on_event: Callable[[HealthEvent], None] | None = None,
    ) -> None:
        super().__init__(name=f"edge_rt-capture-{spec.name}", daemon=True)
        self.spec = spec
        self.slot = slot
        self.settings = settings
        self._opener = opener
        self._on_event = on_event
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self.state = CaptureState.STARTING
        self.events: deque[HealthEvent] = deque(maxlen=100)
        self._frame_index = 0
        self._cap: VideoReader | None = None
        self._streamed = False  # the current connection delivered frames
        self._last_frame = 0.0  # time.monotonic() of the last new frame: liveness, immune to clock steps
        self._stalled = threading.Event()  # set by the stall watch while a read is still blocked

    def stop(self) -> None:
        self._stop_event.set()

    def _transition(self, new: CaptureState, reason: str, only_from: frozenset[CaptureState] | None = None) -> bool:
        """Change state (atomically checked against `only_from` when given); False when nothing changed."""
        reason = redact_url(reason)
        # One lock across the change and its report: the stall watch and the capture thread both
        # transition, and listeners ($health, metrics) must hear the changes in the order they happened.
        with self._lock:
            old = self.state
            if new is old or (only_from is not None and old not in only_from):
                return False
            if new not in _ALLOWED[old]:
                raise RuntimeError(f"capture {self.spec.name}: illegal transition {old.value} -> {new.value}")
            self.state = new
            event = HealthEvent(self.spec.name, old, new, reason, time.time_ns())
            self.events.append(event)
            level = (
                logging.WARNING
                if new in (CaptureState.RECONNECTING, CaptureState.STALLED, CaptureState.OFFLINE)
                else logging.INFO
            )
            log.log(level, "source %s: %s -> %s (%s)", self.spec.name, old.value, new.value, reason)
            self.slot.set_active(new is CaptureState.ONLINE)
            if self._on_event is not None:
                self._on_event(event)
        return True

    def check_stall(self, now: float) -> bool:
        """Called by the group's watch: declare a stall even while a read is blocked in OpenCV, which
        can wait out its read timeout and still return stale frames (a frozen camera)."""
        if not self.spec.kind.can_stall or self.state is not CaptureState.ONLINE:
            return False
        quiet = now - self._last_frame
        if quiet <= self.settings.stall_timeout_s:
            return False
        if self._transition(CaptureState.STALLED, f"no new frame for {quiet:.1f}s", only_from=frozenset({CaptureState.ONLINE})):
            self.slot.counters.stalls += 1
            self._stalled.set()
            return True
        return False

    def run(self) -> None:
        """Open, stream, and on failure reopen on the `ReconnectSchedule`. Retries happen inside
        RECONNECTING / OFFLINE, so an outage logs a line when it starts, one when it goes long and one
        when it heals, never one per try."""
        schedule = self.settings.schedule()
        outage_start: float | None = None  # time.monotonic() when the current outage began
        try:
            while not self._stop_event.is_set():
                try:
                    cap = self._opener(self.spec, self.settings)
                except SourceError as exc:
                    if not self.spec.kind.live:
                        # A file that opened at start-up and now fails will not heal by waiting.
                        self._transition(CaptureState.ENDED, str(exc))
                        return
                    self.slot.counters.read_failures += 1
                    why = str(exc).split(": ", 1)[-1]  # without the "source 'name'" the log line already has
                    outcome = f"open failed: {why}"
                else:
                    self._streamed = False
                    self._stalled.clear()
                    try:
                        outcome = self._stream(cap)
                    except Exception as exc:  # noqa: BLE001 - cv2.error, an odd frame format: one bad read must not kill the camera
                        outcome = self._failure(exc)
                    if outcome == "ended":
                        self._transition(CaptureState.ENDED, "end of file")
                        return
                    if outcome == "stopped":
                        break
                    if self._streamed:
                        schedule.reset()  # it worked for a while: a new outage starts now
                        outage_start = None
                    self.slot.counters.reconnects += 1
                now = time.monotonic()
                if outage_start is None:
                    outage_start = now
                outage = now - outage_start
                if outage >= self.settings.fast_retry_window_s:
                    self._transition(
                        CaptureState.OFFLINE,
                        f"{outcome}; down {outage:.0f}s, retrying with back-off up to {self.settings.backoff_max_s:g}s",
                    )
                else:
                    self._transition(
                        CaptureState.RECONNECTING, f"{outcome}; reopening about every {self.settings.fast_retry_s:g}s"
                    )
                delay = schedule.delay(outage)
                log.debug("source %s: %s, next try in %.1fs", self.spec.name, outcome, delay)
                if self._stop_event.wait(delay):
                    break
        finally:
            if self.state is not CaptureState.STOPPED:
                self._transition(CaptureState.STOPPED, "shutdown")
            self.slot.close()

    def _stream(self, cap: VideoReader) -> str:
        """Read until the source ends, fails or stalls; returns why it stopped. Releases `cap`."""
        try:
            return self._read_loop(cap)
        finally:
            if self._cap is not None:
                self._cap.release()
                self._cap = None
                trim_heap()  # the decoder's buffers were freed: give their pages back (see ops/memory.py)

    def _failure(self, exc: BaseException) -> str:
        self.slot.counters.read_failures += 1
        log.warning(
            "source %s: %s: %s", self.spec.name, type(exc).__name__, redact_url(str(exc).splitlines()[0]) if str(exc) else ""
        )
        return "error" if self.spec.kind.live else "ended"

    def _rewind(self, cap: VideoReader) -> VideoReader:
        """Seek to the first frame; reopen only if the container cannot seek. Reopening goes through
        FFmpeg's open, which OpenCV serialises across the process: a camera stuck opening would hold
        every looping file up."""
        import cv2

        if hasattr(cap, "set") and cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            return cap
        cap.release()
        return self._opener(self.spec, self.settings)

    def _file_rate(self, cap: VideoReader) -> float | None:
        """A file's frame rate, for its frames' own clock (Frame.media_s): tracking steps by it, since a
        file is read faster or slower than it plays. None for live sources and containers without one."""
        if self.spec.kind is not SourceKind.FILE or not hasattr(cap, "get"):
            return None
        import cv2

        fps = float(cap.get(cv2.CAP_PROP_FPS))
        return fps if 0 < fps < 10_000 else None

    def _read_loop(self, cap: VideoReader) -> str:
        self._cap = cap
        spec, counters = self.spec, self.slot.counters
        period_ns = int(1e9 / spec.fps) if spec.fps else 0
        next_due = time.perf_counter_ns()
        last_frame = time.monotonic()
        got_any = False
        rate, first_index = self._file_rate(cap), self._frame_index  # media_s restarts with each pass of a --loop
        while not self._stop_event.is_set():
            if period_ns and spec.kind.waits_for_ticks:
                # Pace a file like a camera: wait for the next tick instead of bursting.
                delay = next_due - time.perf_counter_ns()
                if delay > 0 and self._stop_event.wait(delay / 1e9):
                    return "stopped"
            asked = time.monotonic()
            ok, image = cap.read()
            now = time.monotonic()
            # A read that waited out OpenCV's read timeout (half the stall timeout) and still returned a
            # frame is a frozen stream's leftover, not a new frame: it does not count as liveness.
            late = spec.kind.can_stall and now - asked >= 0.45 * self.settings.stall_timeout_s
            if not ok or image is None:
                if not spec.kind.live:
                    if spec.loop and got_any:
                        cap = self._cap = self._rewind(cap)  # --loop: from the top
                        first_index = self._frame_index
                        continue
                    return "ended"
                counters.read_failures += 1
                quiet = time.monotonic() - last_frame
                if got_any and spec.kind.can_stall and quiet >= self.settings.stall_timeout_s / 2:
                    # The read waited out its timeout: the server is there but sends nothing (frozen).
                    if self._transition(
                        CaptureState.STALLED, f"no new frame for {quiet:.1f}s", only_from=frozenset({CaptureState.ONLINE})
                    ):
                        counters.stalls += 1
                    return f"stalled: no new frame for {quiet:.1f}s"
                return "read failed" if got_any else "no frames"
            if self._stalled.is_set():  # the watch declared it while this read was blocked
                return f"stalled: no new frame for {self.settings.stall_timeout_s:g}s"
            stalled = spec.kind.can_stall and got_any and now - last_frame > self.settings.stall_timeout_s
            if not late:
                last_frame = now
            if stalled:
                if self._transition(CaptureState.STALLED, "late frames only", only_from=frozenset({CaptureState.ONLINE})):
                    counters.stalls += 1
                return f"stalled: no new frame for {self.settings.stall_timeout_s:g}s"
            if not late or not got_any:
                self._last_frame = last_frame = now
            if not got_any:
                got_any = self._streamed = True
                self._transition(CaptureState.ONLINE, "first frame")
            index = self._frame_index
            self._frame_index += 1
            counters.read += 1
            mono = time.perf_counter_ns()
            if period_ns:
                if mono < next_due:
                    counters.paced_out += 1
                    continue
                # Keep to the schedule; after falling behind, restart it rather than burst.
                next_due = max(next_due + period_ns, mono)
            if image.ndim == 2 or image.shape[2] != 3:
                import cv2

                image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_BGRA2BGR)
            media_s = (index - first_index) / rate if rate else None
            frame = Frame(spec.name, index, image, time.time_ns(), mono, media_s)
            if not self.slot.put(frame, self._stop_event):
                return "stopped"
        return "stopped"


@dataclass
class SourceGroup:
    """The capture threads of one run and the condition their slots share with the batcher."""

    specs: list[SourceSpec]
    settings: CaptureSettings = field(default_factory=CaptureSettings)
    opener: Opener = open_capture
    listeners: list[Callable[[HealthEvent], None]] = field(
        default_factory=list
    )  # told every state change, from the capture threads
    cond: threading.Condition = field(default_factory=threading.Condition)
    slots: list[FrameSlot] = field(init=False)
    threads: list[CaptureThread] = field(init=False)

    def __post_init__(self) -> None:
        names = [s.name for s in self.specs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"source names must be unique; repeated: {', '.join(dupes)}")
        for spec in self.specs:
            if spec.kind is SourceKind.GSTREAMER and not gstreamer_supported():
                raise SourceError(
                    f"source {spec.name!r}: this OpenCV build has no GStreamer support; "
                    "use the system OpenCV (e.g. JetPack's) or an RTSP/file source"
                )
        self._stopping = threading.Event()
        self.slots = [FrameSlot(s.name, self.cond, latest=s.keeps_latest_only) for s in self.specs]
        self.threads = [
            CaptureThread(s, slot, self.settings, self.opener, self._notify) for s, slot in zip(self.specs, self.slots)
        ]

    def _notify(self, event: HealthEvent) -> None:
        for listener in self.listeners:
            listener(event)

    def start(self) -> None:
        self.preflight()
        for t in self.threads:
            t.start()
        self._watch = threading.Thread(target=self._watch_stalls, name="edge_rt-stall-watch", daemon=True)
        self._watch.start()

    def preflight(self) -> None:
        """A file that cannot be opened, or holds no readable frame, is the user's mistake: say so now
        (one line, exit 3) instead of ending the run quietly. Live sources are retried instead."""
        for spec in self.specs:
            if spec.kind is not SourceKind.FILE:
                continue
            cap = self.opener(spec, self.settings)  # raises SourceError: cannot open
            try:
                ok, image = cap.read()
            finally:
                cap.release()
            if not ok or image is None:
                raise SourceError(f"source {spec.name!r}: {spec.uri!r} has no readable video frame (truncated, or not a video?)")

    def _watch_stalls(self) -> None:
        stop = self._stopping
        while not stop.wait(0.2):
            now = time.monotonic()
            for t in self.threads:
                t.check_stall(now)

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        for t in self.threads:
            t.stop()
        with self.cond:
            self.cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            if t.ident is not None:  # a stop can come (from a signal) before the threads started
                t.join(max(0.0, deadline - time.monotonic()))
