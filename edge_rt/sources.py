"""Capture: one thread per source, each feeding a slot the batcher takes frames from.

Live sources keep only their newest frame (a slow pipeline never works on stale frames, and every
frame it skips is counted); files hand over every frame, in order, unless paced like a camera.
A live source that fails or stalls is reopened with capped exponential back-off.
`synthetic://WIDTHxHEIGHT` is a camera stand-in for benchmarks: pre-rendered frames in memory, so
what is measured is the pipeline, not video decoding.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import ConfigError, SourceError
from .security import redact_url

log = logging.getLogger("edge_rt.sources")

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
SYNTHETIC_SCHEME = "synthetic://"
SYNTHETIC_DEFAULT_FPS = 30.0


class SourceKind(enum.Enum):
    CAMERA = "camera"  # a camera index, e.g. 0
    DEVICE = "device"  # a device path, e.g. /dev/video0
    STREAM = "stream"  # a network URL: RTSP, HTTP, RTMP, UDP
    FILE = "file"  # a video file
    GSTREAMER = "gstreamer"  # a GStreamer pipeline ending in appsink
    SYNTHETIC = "synthetic"  # in-memory frames for benchmarks: synthetic://1280x720?fps=30

    @property
    def live(self) -> bool:
        """Never ends and keeps only its newest frame."""
        return self is not SourceKind.FILE

    @property
    def waits_for_ticks(self) -> bool:
        """Paced by waiting for the next tick before reading (files, synthetic frames), rather than by
        dropping what a camera delivers early."""
        return self in (SourceKind.FILE, SourceKind.SYNTHETIC)

    @property
    def can_stall(self) -> bool:
        """A device or a network peer can freeze; frames in memory cannot."""
        return self.live and self is not SourceKind.SYNTHETIC


@dataclass(frozen=True)
class SourceSpec:
    """What the user asked for; parsed once, validated before any thread starts."""

    name: str
    uri: str
    kind: SourceKind
    fps: float | None = None  # pace to this rate, like a camera
    loop: bool = False  # restart a file at its end

    @property
    def keeps_latest_only(self) -> bool:
        """Live and paced sources drop what the pipeline cannot keep up with; files do not."""
        return self.kind.live or self.fps is not None


def classify(uri: str) -> SourceKind:
    if uri.lower().startswith(SYNTHETIC_SCHEME):
        return SourceKind.SYNTHETIC
    if uri.isdigit():
        return SourceKind.CAMERA
    if uri.startswith("/dev/"):
        return SourceKind.DEVICE
    if uri.lower().startswith(_STREAM_SCHEMES):
        return SourceKind.STREAM
    if " ! " in uri or uri.rstrip().endswith("appsink"):
        return SourceKind.GSTREAMER
    return SourceKind.FILE


def split_name(text: str) -> tuple[str | None, str]:
    """`NAME=URI` names a source; an `=` inside a URL or a GStreamer pipeline does not."""
    head, sep, tail = text.partition("=")
    if sep and _NAME_RE.match(head) and tail:
        return head, tail
    return None, text


def parse_source(
    text: str, index: int, *, fps: float | None = None, loop: bool = False, name: str | None = None
) -> SourceSpec:
    """Turn one `--source` value into a spec; names default to cam0, cam1, ..."""
    if not text or not text.strip():
        raise SourceError("--source: empty value; give a camera index, device, URL, file or NAME=URI")
    parsed_name, uri = split_name(text.strip())
    name = name or parsed_name or f"cam{index}"
    if not _NAME_RE.match(name):
        raise SourceError(f"source name {name!r}: use letters, digits, '.', '_' or '-' (it becomes the topic)")
    if fps is not None and fps <= 0:
        raise ConfigError(f"source {name!r}: fps must be > 0, got {fps}")
    kind = classify(uri)
    if kind is SourceKind.FILE:
        path = Path(uri).expanduser()
        if not path.is_file():
            raise SourceError(f"source {name!r}: no such file {uri!r} (and not a camera index, /dev path, URL or pipeline)")
        if not os.access(path, os.R_OK):
            raise SourceError(f"source {name!r}: file {uri!r} is not readable")
        uri = str(path)
    if kind is SourceKind.STREAM and not re.match(r"^[a-zA-Z]+://[^/\s]+", uri):
        raise SourceError(f"source {name!r}: malformed URL {redact_url(uri)!r}; expected e.g. rtsp://host:554/path")
    if loop and kind is not SourceKind.FILE:
        raise ConfigError(f"source {name!r}: loop applies to files only, not {kind.value} sources")
    if kind is SourceKind.SYNTHETIC:
        fps = parse_synthetic(uri, name, fps).fps  # always paced: a camera has a frame rate
    return SourceSpec(name=name, uri=uri, kind=kind, fps=fps, loop=loop)


@dataclass(frozen=True)
class SyntheticSettings:
    width: int
    height: int
    fps: float
    frames: int  # distinct pre-rendered frames, cycled


def parse_synthetic(uri: str, name: str, fps: float | None = None) -> SyntheticSettings:
    """`synthetic://WIDTHxHEIGHT[?fps=N][&frames=N]`; a rate given both here and by --fps must agree."""
    usage = f"source {name!r}: {uri!r}: expected synthetic://WIDTHxHEIGHT[?fps=N][&frames=N], e.g. synthetic://1280x720?fps=30"
    size, _, query = uri[len(SYNTHETIC_SCHEME) :].partition("?")
    m = re.fullmatch(r"(\d+)x(\d+)", size.lower())
    if not m:
        raise SourceError(usage)
    width, height = int(m.group(1)), int(m.group(2))
    if not (16 <= width <= 8192 and 16 <= height <= 8192):
        raise SourceError(f"source {name!r}: synthetic frame size {width}x{height}: each side must be 16..8192")
    options: dict[str, float] = {}
    for part in filter(None, query.split("&")):
        key, sep, value = part.partition("=")
        if key not in ("fps", "frames") or not sep:
            raise SourceError(f"{usage} (unknown option {part!r})")
        try:
            options[key] = float(value)
        except ValueError:
            raise SourceError(f"source {name!r}: synthetic {key}={value!r} is not a number") from None
    uri_fps = options.get("fps")
    if uri_fps is not None and not 0 < uri_fps <= 10_000:
        raise SourceError(f"source {name!r}: synthetic fps={uri_fps:g}: must be > 0 and <= 10000")
    if uri_fps is not None and fps is not None and uri_fps != fps:
        raise ConfigError(f"source {name!r}: fps given twice ({uri_fps:g} in the URI, {fps:g} from --fps); give it once")
    frames = options.get("frames", 8)
    if not 1 <= frames <= 64 or frames != int(frames):
        raise SourceError(f"source {name!r}: synthetic frames={frames:g}: must be a whole number 1..64")
    return SyntheticSettings(width, height, fps or uri_fps or SYNTHETIC_DEFAULT_FPS, int(frames))


@lru_cache(maxsize=4)
def render_synthetic(width: int, height: int, frames: int) -> tuple[np.ndarray, ...]:
    """A few frames of shapes moving over a fixed background; read-only, so every source can share them."""
    import cv2

    base = np.empty((height, width, 3), np.uint8)
    base[..., 0] = (np.arange(width) * 255 // width)[None, :]
    base[..., 1] = (np.arange(height) * 255 // height)[:, None]
    base[..., 2] = 96
    noisy = cv2.add(base, np.random.default_rng(0).integers(0, 32, base.shape, dtype=np.uint8))
    size = max(min(width, height) // 6, 4)
    out = []
    for i in range(frames):
        im = noisy.copy()
        x = (width - size) * i // max(frames, 1)
        y = (height - size) * (frames - i) // (frames + 1)
        cv2.rectangle(im, (x, height // 4), (x + size, height // 4 + size), (255, 255, 255), -1)
        cv2.circle(im, (width - size, y + size // 2), size // 2, (0, 0, 255), -1)
        im.flags.writeable = False
        out.append(im)
    return tuple(out)


class SyntheticReader:
    """A `VideoReader` over pre-rendered frames: a read costs nothing, so decoding is not what is
    measured. The capture thread paces it at the spec's fps, as it paces a file."""

    def __init__(self, spec: SourceSpec) -> None:
        cfg = parse_synthetic(spec.uri, spec.name, spec.fps)
        self._frames = render_synthetic(cfg.width, cfg.height, cfg.frames)
        self._next = zlib.crc32(spec.name.encode()) % cfg.frames  # sources out of step with each other

    def read(self) -> tuple[bool, np.ndarray | None]:
        frame = self._frames[self._next]
        self._next = (self._next + 1) % len(self._frames)
        return True, frame

    def release(self) -> None:
        pass


@dataclass(frozen=True, eq=False)
class Frame:
    """One captured image and when it was captured: wall clock for messages, monotonic for durations."""

    source: str
    index: int  # the source's own frame counter, counting frames the pipeline skipped
    image: np.ndarray  # H x W x 3, BGR, uint8
    capture_ns: int  # time.time_ns() when read() returned
    capture_mono_ns: int  # time.perf_counter_ns() at the same moment

    def __post_init__(self) -> None:
        im = self.image
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ValueError(f"Frame.image: expected HxWx3 uint8, got shape {im.shape} dtype {im.dtype}")


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


class ReconnectSchedule:
    """When to reopen a lost source: about once a second for the first `fast_window_s` of an outage
    (a camera that blinks is back within seconds), then exponential back-off to `max_s` with +-20%
    jitter, so a site whose cameras all drop at once does not reopen them in lock-step."""

    def __init__(self, fast_window_s: float = 10.0, fast_interval_s: float = 1.0, max_s: float = 30.0, jitter: float = 0.2, seed: int | None = None) -> None:
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
class HealthEvent:
    """A capture state change, for logs and metrics."""

    source: str
    previous: CaptureState
    state: CaptureState
    reason: str
    time_ns: int


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


class VideoReader(Protocol):
    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


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


def open_capture(spec: SourceSpec, settings: CaptureSettings) -> VideoReader:
    """Open with OpenCV; timeouts can only be set at open time, so they go in here."""
    if spec.kind is SourceKind.SYNTHETIC:
        return SyntheticReader(spec)
    import cv2

    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(settings.open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(settings.stall_timeout_s * 500),  # well under the stall timeout (a frozen camera returns late frames)
    ]
    if spec.kind is SourceKind.CAMERA:
        cap = cv2.VideoCapture(int(spec.uri), cv2.CAP_ANY)
    elif spec.kind is SourceKind.GSTREAMER:
        cap = cv2.VideoCapture(spec.uri, cv2.CAP_GSTREAMER)
    elif spec.kind is SourceKind.DEVICE:
        cap = cv2.VideoCapture(spec.uri, cv2.CAP_ANY)
    else:
        cap = cv2.VideoCapture(spec.uri, cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"source {spec.name!r}: cannot open {redact_url(spec.uri)!r}")
    return cap


def gstreamer_supported() -> bool:
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


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
        super().__init__(name=f"capture-{spec.name}", daemon=True)
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
        with self._lock:
            old = self.state
            if new is old or (only_from is not None and old not in only_from):
                return False
            if new not in _ALLOWED[old]:
                raise RuntimeError(f"capture {self.spec.name}: illegal transition {old.value} -> {new.value}")
            self.state = new
        event = HealthEvent(self.spec.name, old, new, reason, time.time_ns())
        self.events.append(event)
        level = logging.WARNING if new in (CaptureState.RECONNECTING, CaptureState.STALLED, CaptureState.OFFLINE) else logging.INFO
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
                    outcome = "open failed"
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
                    self._transition(CaptureState.OFFLINE, f"{outcome}; down {outage:.0f}s, retrying with back-off up to {self.settings.backoff_max_s:g}s")
                else:
                    self._transition(CaptureState.RECONNECTING, f"{outcome}; reopening about every {self.settings.fast_retry_s:g}s")
                delay = schedule.delay(outage)
                log.debug("source %s: %s, next try in %.1fs", self.spec.name, outcome, delay)
                if self._stop_event.wait(delay):
                    break
        finally:
            if self.state is not CaptureState.STOPPED:
                self._transition(CaptureState.STOPPED, "stopped")
            self.slot.close()

    def _stream(self, cap: VideoReader) -> str:
        """Read until the source ends, fails or stalls; returns why it stopped. Releases `cap`."""
        try:
            return self._read_loop(cap)
        finally:
            if self._cap is not None:
                self._cap.release()
                self._cap = None

    def _failure(self, exc: BaseException) -> str:
        self.slot.counters.read_failures += 1
        log.warning("source %s: %s: %s", self.spec.name, type(exc).__name__, redact_url(str(exc).splitlines()[0]) if str(exc) else "")
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

    def _read_loop(self, cap: VideoReader) -> str:
        self._cap = cap
        spec, counters = self.spec, self.slot.counters
        period_ns = int(1e9 / spec.fps) if spec.fps else 0
        next_due = time.perf_counter_ns()
        last_frame = time.monotonic()
        got_any = False
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
                        continue
                    return "ended"
                counters.read_failures += 1
                quiet = time.monotonic() - last_frame
                if got_any and spec.kind.can_stall and quiet >= self.settings.stall_timeout_s / 2:
                    # The read waited out its timeout: the server is there but sends nothing (frozen).
                    if self._transition(CaptureState.STALLED, f"no new frame for {quiet:.1f}s", only_from=frozenset({CaptureState.ONLINE})):
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
            frame = Frame(spec.name, index, image, time.time_ns(), mono)
            if not self.slot.put(frame, self._stop_event):
                return "stopped"
        return "stopped"


@dataclass
class SourceGroup:
    """The capture threads of one run and the condition their slots share with the batcher."""

    specs: list[SourceSpec]
    settings: CaptureSettings = field(default_factory=CaptureSettings)
    opener: Opener = open_capture
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
        self.threads = [CaptureThread(s, slot, self.settings, self.opener) for s, slot in zip(self.specs, self.slots)]

    def start(self) -> None:
        self.preflight()
        for t in self.threads:
            t.start()
        self._watch = threading.Thread(target=self._watch_stalls, name="stall-watch", daemon=True)
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
