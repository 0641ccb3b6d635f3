"""A source's encoded video, packet by packet, on the clock its frames carry.

Recording keeps the camera's own H.264 (as Frigate's and DeepStream's smart record do) instead of
encoding decoded frames: copying a 1080p packet costs ~0.2 ms against ~10 ms to encode the frame
with x264 ultrafast, and 5 s of pre-roll is the stream's bitrate x 5 s (2.5 MB at 4 Mbit/s) instead
of 150 decoded frames (930 MB). The price is a second reader of the source: a file is opened again
at each clip, a network stream gets a second connection, demuxed but never decoded.

Times are seconds on the frames' clock: a file's own position (Frame.media_s), a live stream's
arrival on time.perf_counter (Frame.capture_mono_ns), so an event's frame and its packets line up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..camera.reconnect import ReconnectSchedule
from ..camera.sources import SourceSpec
from ..ops.redact import redact_url

log = logging.getLogger("edge_rt.record")


@dataclass(frozen=True, eq=False)
class Packet:
    t: float  # seconds on the frames' clock
    packet: Any  # av.Packet
    key: bool
    generation: int  # a new connection to a live stream: its timestamps start over


def packet_time(pkt: Any, stream: Any) -> float | None:
    """A packet's presentation time in seconds from the stream's start (dts when it has no pts)."""
    ts = pkt.pts if pkt.pts is not None else pkt.dts
    if ts is None:
        return None
    return float((ts - (stream.start_time or 0)) * stream.time_base)


def open_input(uri: str, timeout_s: float = 5.0) -> Any:
    """PyAV's demuxer for a file or a URL; network streams over TCP with a socket timeout, so a dead
    camera raises instead of blocking the recorder forever."""
    import av

    options = {}
    if "://" in uri:
        options = {"rw_timeout": str(int(timeout_s * 1e6)), "timeout": str(int(timeout_s * 1e6))}
        if uri.lower().startswith(("rtsp://", "rtsps://")):
            options = {"rtsp_transport": "tcp", "timeout": str(int(timeout_s * 1e6))}
    return av.open(uri, options=options, timeout=timeout_s)


class FilePackets:
    """A file source: each clip opens the file again and seeks, so nothing is kept in memory."""

    live = False

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        with open_input(spec.uri) as container:
            stream = container.streams.video[0]
            self.codec = stream.codec_context.name
        self.dropped = 0

    def close(self) -> None:
        pass

    def buffered_bytes(self) -> int:
        return 0

    def iter_from(self, start_s: float, stop: threading.Event) -> Iterator[Packet | None]:
        """Packets from the keyframe at or before start_s to the end of the file."""
        container = open_input(self.spec.uri)
        try:
            stream = container.streams.video[0]
            if start_s > 0:
                target = int(start_s / stream.time_base) + (stream.start_time or 0)
                container.seek(target, backward=True, any_frame=False, stream=stream)
            for pkt in container.demux(stream):
                t = packet_time(pkt, stream)
                if t is None or pkt.size == 0:
                    continue
                yield Packet(t, pkt, bool(pkt.is_keyframe), 0)
                if stop.is_set():
                    return
        finally:
            container.close()


class LivePackets:
    """A network stream: a thread keeps the last `pre_s` of packets (from the keyframe before them) in a
    ring bounded in bytes, and reconnects with the capture's back-off when the camera goes away."""

    live = True

    def __init__(self, spec: SourceSpec, pre_s: float, max_bytes: int = 64 << 20, open_timeout_s: float = 5.0) -> None:
        self.spec = spec
        self.pre_s = pre_s
        self.max_bytes = max_bytes
        self.open_timeout_s = open_timeout_s
        self.codec: str | None = None
        self.template: Any = None  # the stream clips are muxed like (codec parameters)
        self._ring: deque[tuple[int, Packet]] = deque()  # (serial, packet)
        self._serial = 0
        self._bytes = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self.dropped = 0  # packets evicted by the byte bound before a clip took them
        self.generation = 0
        self._container: Any = None
        self._thread = threading.Thread(target=self._run, name=f"edge_rt-record-read-{spec.name}", daemon=True)
        self._thread.start()

    def buffered_bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=1.0)

    def _run(self) -> None:
        schedule, since = ReconnectSchedule(), None
        while not self._stop.is_set():
            try:
                self._read_connection()
                since = None
                schedule.reset()
            except Exception as exc:  # noqa: BLE001 - any failure of the stream: reconnect, never die
                now = time.monotonic()
                since = since or now
                delay = schedule.delay(now - since)
                log.warning("record %s: stream %s: %s; again in %.1fs", self.spec.name, redact_url(self.spec.uri), exc, delay)
                self._stop.wait(delay)

    def _read_connection(self) -> None:
        container = open_input(self.spec.uri, self.open_timeout_s)
        try:
            stream = container.streams.video[0]
            self.codec, self.template = stream.codec_context.name, stream
            self.generation += 1
            for pkt in container.demux(stream):
                if self._stop.is_set():
                    return
                if pkt.size == 0 or (pkt.pts is None and pkt.dts is None):
                    continue
                self._append(Packet(time.perf_counter(), pkt, bool(pkt.is_keyframe), self.generation))
            raise EOFError("the stream ended")
        finally:
            container.close()

    def _append(self, packet: Packet) -> None:
        with self._cond:
            self._ring.append((self._serial, packet))
            self._serial += 1
            self._bytes += packet.packet.size
            self._evict(packet.t - self.pre_s)
            self._cond.notify_all()

    def _evict(self, keep_from: float) -> None:
        """Drop what is older than the keyframe at or before `keep_from`; over the byte bound, drop anyway."""
        ring = self._ring
        while len(ring) > 1:
            over = self._bytes > self.max_bytes
            head = ring[0][1]
            if not over:
                # The front may go only if a later keyframe still starts the pre-roll.
                later_key = next((p for _, p in ring if p is not head and p.key), None)
                if later_key is None or later_key.t > keep_from:
                    return
            ring.popleft()
            self._bytes -= head.packet.size
            if over:
                self.dropped += 1

    def iter_from(self, start_s: float, stop: threading.Event) -> Iterator[Packet | None]:
        """The ring from the keyframe at or before start_s, then packets as they arrive; None when none
        is waiting (the caller checks its deadline and waits). A packet evicted before it was taken
        is counted in `dropped` and skipped."""
        with self._cond:
            start = [(s, p) for s, p in self._ring if p.key and p.t <= start_s]
            cursor = start[-1][0] if start else (self._ring[0][0] if self._ring else self._serial)
        while not (stop.is_set() or self._stop.is_set()):
            with self._cond:
                if not self._ring or self._ring[-1][0] < cursor:
                    self._cond.wait(0.05)
                    item = None
                else:
                    first = self._ring[0][0]
                    cursor = max(cursor, first)
                    item = self._ring[cursor - first][1]
                    cursor += 1
            yield item
