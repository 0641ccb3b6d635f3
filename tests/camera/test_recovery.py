"""Recovery: the reopen schedule, sources that cannot start, outages that go long, cameras that blink.

Real parts: FFmpeg opening a closed port on 127.0.0.1, truncated mp4 files, GStreamer's RTSP server.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from edge_rt.camera.capture import CaptureState, SourceGroup
from edge_rt.camera.reconnect import CaptureSettings, ReconnectSchedule
from edge_rt.camera.sources import Frame, parse_source
from edge_rt.detect.batching import Batcher
from edge_rt.errors import SourceError
from tests.conftest import free_port, write_clip
from tests.helpers import assert_clean_failure, run_cli
from tests.support.rtsp import RtspServer, rtsp_available

from .test_sources import _consume, _wait_for

pytestmark = pytest.mark.timeout(120)


def test_schedule_retries_every_second_then_backs_off_to_the_cap_with_jitter() -> None:
    s = ReconnectSchedule(fast_window_s=10, fast_interval_s=1.0, max_s=30, jitter=0.2, seed=1)
    fast = [s.delay(t) for t in (0, 2.5, 5, 9.9)]
    assert all(0.8 <= d <= 1.2 for d in fast)
    slow = [s.delay(10 + i) for i in range(8)]
    bases = [2, 4, 8, 16, 30, 30, 30, 30]
    assert all(b * 0.8 <= d <= b * 1.2 for d, b in zip(slow, bases)), slow
    assert len({round(d, 3) for d in slow[4:]}) > 1, "jitter spreads cameras that fail together"
    s.reset()
    assert 1.6 <= s.delay(20) <= 2.4  # a new long outage starts the back-off over


def test_a_file_that_cannot_be_opened_is_one_line_and_exit_3(clip: Path, tmp_path: Path) -> None:
    """The issue's own example: a truncated mp4 used to end the run with exit 0 and an empty summary."""
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[:2000])
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    for bad in (truncated, not_video):
        proc = run_cli("run", "--model", "models/demo/demo.onnx", "--source", f"cam={clip}", "--source", f"bad={bad}",
                       "--device", "cpu", "--publish", f"tcp://127.0.0.1:{free_port()}")
        assert proc.returncode == 3, proc.stderr
        assert_clean_failure(proc, "source 'bad'")


def test_preflight_passes_good_files_and_names_the_bad_one(clip: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    SourceGroup([parse_source(str(clip), 0)]).preflight()
    with pytest.raises(SourceError, match="source 'b'"):
        SourceGroup([parse_source(str(clip), 0), parse_source(f"b={empty}", 1)]).preflight()


def test_unreachable_camera_is_retried_every_second_then_goes_offline_beside_a_file(tmp_path: Path) -> None:
    """A camera down at start-up is not fatal: it is retried while the file publishes."""
    settings = CaptureSettings(open_timeout_s=1.0, stall_timeout_s=2.0, fast_retry_window_s=2.5, fast_retry_s=0.5, backoff_max_s=2.0)
    dead = f"rtsp://127.0.0.1:{free_port()}/nothing"
    clip = write_clip(tmp_path / "c.mp4", frames=30)
    group = SourceGroup([parse_source(f"gate={dead}", 0), parse_source(f"clip={clip}", 1, fps=20, loop=True)], settings)
    batcher = Batcher(group.slots, group.cond, max_batch=2, max_wait_s=0.02)
    frames: list[Frame] = []
    stop = threading.Event()
    group.start()
    consumer = _consume(batcher, stop, frames)
    gate = group.threads[0]
    try:
        _wait_for(lambda: gate.state is CaptureState.RECONNECTING, 5, "reconnecting")
        _wait_for(lambda: gate.state is CaptureState.OFFLINE, 8, "offline after the fast-retry window")
        tries_fast = group.slots[0].counters.read_failures
        clip_frames = sum(f.source == "clip" for f in frames)
    finally:
        stop.set()
        group.stop()
        consumer.join(2)
    assert tries_fast >= 3, "about one try per fast_retry_s during the window"
    assert clip_frames >= 30, "the file kept publishing while the camera was down"
    states = [e.state for e in gate.events]
    assert states[:2] == [CaptureState.RECONNECTING, CaptureState.OFFLINE] and states[-1] is CaptureState.STOPPED
    assert all(a is not b for a, b in zip(states, states[1:])), "one event per change, not per retry"


rtsp = pytest.mark.skipif(not rtsp_available()[0], reason=f"no RTSP test server: {rtsp_available()[1]}")


@rtsp
def test_a_camera_that_blinks_for_4s_is_back_within_4s_of_its_return(tmp_path: Path) -> None:
    settings = CaptureSettings(open_timeout_s=2.0, stall_timeout_s=2.0)  # the default schedule: 1 s retries
    port = free_port()
    clip = write_clip(tmp_path / "c.mp4", frames=30)
    with RtspServer(port=port, fps=15) as cam:
        group = SourceGroup([parse_source(f"door={cam.url}", 0), parse_source(f"clip={clip}", 1, fps=15, loop=True)], settings)
        batcher = Batcher(group.slots, group.cond, max_batch=2, max_wait_s=0.02)
        frames: list[Frame] = []
        stamps: list[tuple[str, float]] = []
        stop = threading.Event()
        group.start()
        consumer = _consume(batcher, stop, frames)
        watcher_stop = threading.Event()

        def watch() -> None:  # arrival times per source, to measure gaps
            seen = 0
            while not watcher_stop.is_set():
                while seen < len(frames):
                    stamps.append((frames[seen].source, time.monotonic()))
                    seen += 1
                time.sleep(0.01)

        w = threading.Thread(target=watch, daemon=True)
        w.start()
        try:
            _wait_for(lambda: any(f.source == "door" for f in frames), 15, "first camera frame")
            cam.stop()
            time.sleep(4.0)
            before = max(f.index for f in frames if f.source == "door")
            cam.start()
            returned = time.monotonic()
            _wait_for(lambda: any(f.source == "door" and f.index > before for f in frames), 10, "a frame after the return")
            back_after = time.monotonic() - returned
        finally:
            stop.set()
            watcher_stop.set()
            group.stop()
            consumer.join(2)
            w.join(1)
    assert back_after <= 4.0, f"first frame {back_after:.1f}s after the camera returned"
    clip_times = [t for s, t in stamps if s == "clip"]
    assert max(b - a for a, b in zip(clip_times, clip_times[1:])) < 1.0, "the camera's outage delayed the file"


@rtsp
def test_a_wall_clock_step_of_an_hour_causes_no_stall_and_no_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Liveness runs on the monotonic clock: NTP stepping the wall clock an hour either way changes nothing."""
    settings = CaptureSettings(open_timeout_s=3.0, stall_timeout_s=1.0)
    offset = [0.0]
    real_time, real_time_ns = time.time, time.time_ns
    with RtspServer(port=free_port(), fps=15) as cam:
        group = SourceGroup([parse_source(f"door={cam.url}", 0)], settings)
        batcher = Batcher(group.slots, group.cond, max_batch=1, max_wait_s=0)
        frames: list[Frame] = []
        stop = threading.Event()
        group.start()
        consumer = _consume(batcher, stop, frames)
        try:
            _wait_for(lambda: len(frames) > 5, 15, "frames")
            monkeypatch.setattr(time, "time", lambda: real_time() + offset[0])
            monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() + int(offset[0] * 1e9))
            events_before = len(group.threads[0].events)
            for step in (3600.0, -3600.0, 0.0):  # forward an hour, back an hour before now, and home
                offset[0] = step
                n = len(frames)
                time.sleep(2.5)  # longer than the stall timeout
                assert len(frames) > n + 10, f"frames stopped after a wall-clock step of {step:+.0f}s"
        finally:
            monkeypatch.undo()
            stop.set()
            group.stop()
            consumer.join(2)
    c = group.slots[0].counters
    assert c.stalls == 0 and c.reconnects == 0 and c.read_failures == 0
    assert [e.state for e in list(group.threads[0].events)[events_before:]] == [CaptureState.STOPPED], "no alarm, only the final stop"
