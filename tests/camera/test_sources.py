"""Capture and batching with real video files and a real RTSP camera (GStreamer's RTSP server)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_rt.camera.capture import CaptureState, SourceGroup
from edge_rt.camera.reconnect import CaptureSettings
from edge_rt.camera.slot import FrameSlot
from edge_rt.camera.sources import Frame, SourceKind, parse_source
from edge_rt.detect.batching import Batcher
from edge_rt.errors import ConfigError, SourceError
from tests.conftest import write_clip
from tests.support.rtsp import RtspServer, free_port, rtsp_available

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    "text,name,kind,uri",
    [
        ("0", "cam3", SourceKind.CAMERA, "0"),
        ("/dev/video0", "cam3", SourceKind.DEVICE, "/dev/video0"),
        ("rtsp://10.0.0.5:554/stream?channel=1&subtype=0", "cam3", SourceKind.STREAM, "rtsp://10.0.0.5:554/stream?channel=1&subtype=0"),
        ("front=rtsp://user:pa=ss@cam/live", "front", SourceKind.STREAM, "rtsp://user:pa=ss@cam/live"),
        ("back_1=2", "back_1", SourceKind.CAMERA, "2"),
        ("nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1920 ! nvvidconv ! appsink", "cam3", SourceKind.GSTREAMER, None),
        ("csi=nvarguscamerasrc ! nvvidconv ! appsink", "csi", SourceKind.GSTREAMER, "nvarguscamerasrc ! nvvidconv ! appsink"),
        ("http://host:8080/video.mjpg", "cam3", SourceKind.STREAM, "http://host:8080/video.mjpg"),
    ],
)
def test_parse_source(text: str, name: str, kind: SourceKind, uri: str | None) -> None:
    spec = parse_source(text, 3)
    assert (spec.name, spec.kind) == (name, kind)
    assert spec.uri == (uri or text)


@pytest.mark.parametrize(
    "text,kwargs,error,expected",
    [
        ("missing.mp4", {}, SourceError, "no such file"),
        ("", {}, SourceError, "empty value"),
        ("rtsp://", {}, SourceError, "malformed URL"),
        ("a b=clip.mp4", {}, SourceError, "no such file"),  # not a valid name, so the whole text is the URI
        ("0", {"fps": 0}, ConfigError, "fps must be > 0"),
        ("0", {"loop": True}, ConfigError, "loop applies to files only"),
        ("0", {"name": "bad name"}, SourceError, "source name"),
    ],
)
def test_parse_source_errors(text: str, kwargs: dict, error: type, expected: str) -> None:
    with pytest.raises(error, match=expected):
        parse_source(text, 0, **kwargs)


def _drain(group: SourceGroup, batcher: Batcher, timeout: float = 20, slow_s: float = 0.0) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = batcher.next_batch(0.2)
        if batch is None:
            if batcher.finished():
                return frames
            continue
        frames.extend(batch.frames)
        time.sleep(slow_s)
    raise AssertionError("sources did not finish")


def test_file_delivers_every_frame_in_order_to_a_slow_consumer(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4", frames=15)
    group = SourceGroup([parse_source(str(clip), 0)])
    batcher = Batcher(group.slots, group.cond, max_batch=4, max_wait_s=0.01)
    group.start()
    frames = _drain(group, batcher, slow_s=0.02)
    group.stop()
    assert [f.index for f in frames] == list(range(15))
    assert group.slots[0].counters.skipped == 0
    assert group.threads[0].state is CaptureState.STOPPED
    assert [e.state for e in group.threads[0].events][:3] == [CaptureState.ONLINE, CaptureState.ENDED, CaptureState.STOPPED]


def test_paced_file_behaves_like_a_camera_and_counts_what_it_skips(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4", frames=30)
    group = SourceGroup([parse_source(str(clip), 0, fps=60)])
    batcher = Batcher(group.slots, group.cond, max_batch=1, max_wait_s=0)
    group.start()
    t0 = time.monotonic()
    frames = _drain(group, batcher, slow_s=0.05)  # a consumer at ~20 frames/s
    elapsed = time.monotonic() - t0
    group.stop()
    c = group.slots[0].counters
    assert elapsed > 0.4, "30 frames paced at 60 frames/s take at least half a second"
    assert c.read == 30 and len(frames) + c.skipped == 30 and c.skipped > 0
    assert [f.index for f in frames] == sorted(f.index for f in frames)


def test_loop_restarts_a_file_and_keeps_counting(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4", frames=5)
    group = SourceGroup([parse_source(str(clip), 0, loop=True)])
    batcher = Batcher(group.slots, group.cond, max_batch=1, max_wait_s=0)
    group.start()
    got = []
    while len(got) < 12:
        batch = batcher.next_batch(5)
        assert batch is not None
        got.extend(batch.frames)
    group.stop()
    assert [f.index for f in got] == list(range(12))
    np.testing.assert_array_equal(got[0].image, got[5].image)  # frame 5 is frame 0 again


def _frame(source: str, i: int) -> Frame:
    return Frame(source, i, np.zeros((4, 4, 3), np.uint8), time.time_ns(), time.perf_counter_ns())


def test_batcher_takes_one_newest_frame_per_source_and_waits_bounded() -> None:
    cond = threading.Condition()
    slots = [FrameSlot(n, cond, latest=True) for n in ("a", "b", "c")]
    stop = threading.Event()
    for s in slots:
        s.set_active(True)
    batcher = Batcher(slots, cond, max_batch=2, max_wait_s=0.05)
    slots[0].put(_frame("a", 0), stop)
    slots[0].put(_frame("a", 1), stop)  # replaces frame 0: live sources keep only the newest
    t0 = time.monotonic()
    batch = batcher.next_batch(1)
    waited = time.monotonic() - t0
    assert batch is not None and [(f.source, f.index) for f in batch.frames] == [("a", 1)]
    assert 0.04 < waited < 0.5, "waits up to max_wait for the other active sources, then goes"
    assert slots[0].counters.skipped == 1
    for s, i in zip(slots, range(3)):
        s.put(_frame(s.name, 10 + i), stop)
    first = batcher.next_batch(1)
    second = batcher.next_batch(1)
    assert first is not None and second is not None
    assert len(first.frames) == 2 and len(second.frames) == 1, "max_batch caps a batch; the rest waits its turn"
    assert {f.source for f in first.frames + second.frames} == {"a", "b", "c"}


def test_batcher_does_not_wait_for_sources_that_are_down() -> None:
    cond = threading.Condition()
    up, down = FrameSlot("up", cond, latest=True), FrameSlot("down", cond, latest=True)
    up.set_active(True)  # "down" is reconnecting: not active
    batcher = Batcher([up, down], cond, max_batch=2, max_wait_s=1.0)
    up.put(_frame("up", 0), threading.Event())
    t0 = time.monotonic()
    batch = batcher.next_batch(1)
    assert batch is not None and time.monotonic() - t0 < 0.2


# --- a real RTSP camera -------------------------------------------------------------------------

rtsp = pytest.mark.skipif(not rtsp_available()[0], reason=f"no RTSP test server: {rtsp_available()[1]}")
FAST = CaptureSettings(open_timeout_s=3.0, stall_timeout_s=1.5, fast_retry_window_s=10.0, fast_retry_s=0.2, backoff_max_s=1.0)


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _consume(batcher: Batcher, stop: threading.Event, sink: list[Frame]) -> threading.Thread:
    def loop() -> None:
        while not stop.is_set():
            batch = batcher.next_batch(0.1, stop)
            if batch is not None:
                sink.extend(batch.frames)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


@rtsp
def test_dead_camera_is_reconnected_with_backoff_and_never_stalls_a_file(tmp_path: Path) -> None:
    port = free_port()
    clip = write_clip(tmp_path / "c.mp4", frames=40)
    with RtspServer(port=port, fps=15) as cam:
        group = SourceGroup([parse_source(f"door={cam.url}", 0), parse_source(f"clip={clip}", 1, fps=15, loop=True)], FAST)
        batcher = Batcher(group.slots, group.cond, max_batch=2, max_wait_s=0.05)
        frames: list[Frame] = []
        stop = threading.Event()
        group.start()
        consumer = _consume(batcher, stop, frames)
        try:
            _wait_for(lambda: any(f.source == "door" for f in frames), 15, "first camera frame")
            cam.stop()  # the camera dies
            door = group.threads[0]
            _wait_for(lambda: door.state is CaptureState.RECONNECTING, 10, "reconnecting")
            clip_before = sum(f.source == "clip" for f in frames)
            time.sleep(1.5)
            assert sum(f.source == "clip" for f in frames) - clip_before >= 10, "the file kept flowing while the camera was down"
            seen_before = max(f.index for f in frames if f.source == "door")
            cam.start()  # ...and comes back on the same port
            _wait_for(lambda: any(f.source == "door" and f.index > seen_before for f in frames), 20, "frames after the restart")
        finally:
            stop.set()
            group.stop()
            consumer.join(2)
        counters = group.slots[0].counters
        assert counters.reconnects >= 1
        states = [e.state for e in door.events]
        # Logged once per state change, not once per retry: no two equal states in a row.
        assert all(a is not b for a, b in zip(states, states[1:]))
        assert CaptureState.RECONNECTING in states


@rtsp
def test_frozen_camera_is_detected_by_its_stall_timeout_and_reopened() -> None:
    port = free_port()
    with RtspServer(port=port, fps=15) as cam:
        group = SourceGroup([parse_source(cam.url, 0)], FAST)
        batcher = Batcher(group.slots, group.cond, max_batch=1, max_wait_s=0)
        frames: list[Frame] = []
        stop = threading.Event()
        group.start()
        consumer = _consume(batcher, stop, frames)
        try:
            _wait_for(lambda: len(frames) > 5, 15, "frames")
            cam.freeze()  # socket open, no frames: read() blocks, then returns late frames
            t0 = time.monotonic()
            thread = group.threads[0]
            _wait_for(lambda: thread.state is not CaptureState.ONLINE, 10, "stall detection")
            declared = [e.state for e in thread.events if e.time_ns > time.time_ns() - 10**10][-3:]
            detected = time.monotonic() - t0
            cam.resume()
            n = len(frames)
            _wait_for(lambda: len(frames) > n + 5, 20, "frames after reopening")
        finally:
            stop.set()
            group.stop()
            consumer.join(2)
        # Declared by the stall watch while OpenCV's read is still blocked: within stall timeout + 1 s.
        assert CaptureState.STALLED in declared and detected < FAST.stall_timeout_s + 1, declared
        c = group.slots[0].counters
        assert c.stalls + c.read_failures >= 1 and c.reconnects >= 1
