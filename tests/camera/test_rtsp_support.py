"""The RTSP test camera (tests/support) against OpenCV's FFmpeg backend.

Measured here (opencv-python 5.0.0, FFmpeg backend, RTSP over TCP, x264 stream
320x240 @ 15 fps, OPEN_TIMEOUT 3000 ms, READ_TIMEOUT 2000 ms):

* Opening takes ~2.0 s at 15 fps (~1.0 s at 30 fps): FFmpeg's stream probing
  reads ~28 frames before it returns, and those frames stay queued, so the
  first ~27 read() calls return at once with frames up to ~1.8 s old. The
  open timeout caps the probing (the open still succeeds, with less probed).
* Frozen camera (session and TCP open, no frames): read() blocks for the whole
  read timeout (~2.0 s) and still returns True twice (frames still in the
  decoder, not duplicates of the last one), then returns False after another
  ~2.0 s block, and False (each after a ~2 s block) from then on. Once it has
  failed, that VideoCapture never recovers, even after the camera resumes:
  read() keeps returning False (quickly, ~1 frame interval) -- the decoder was
  drained at end-of-stream. Only a new VideoCapture gets frames again.
* Killed server (process SIGTERM'd or SIGKILL'd, so the kernel closes TCP):
  read() returns True twice at once (frames left in the decoder), then False
  at once (<10 ms), every time. A camera that loses power or network sends no
  FIN, so to the client it looks like the frozen case, not this one.
* A new server on the same port right after: a new VideoCapture opens (~2 s).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

try:
    from tests.support.rtsp import RtspServer, RtspServerError, free_port, rtsp_available
except ImportError:  # tests/ put on sys.path directly (rootdir without package)
    from support.rtsp import RtspServer, RtspServerError, free_port, rtsp_available

cv2 = pytest.importorskip("cv2")

OPEN_TIMEOUT_MS = 3000
READ_TIMEOUT_MS = 2000


@pytest.fixture(scope="module")
def rtsp_ready() -> str:
    ok, reason = rtsp_available()
    if not ok:
        pytest.skip(reason)
    if not cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG):
        pytest.skip("OpenCV has no FFmpeg backend")
    return reason


@pytest.fixture
def camera(rtsp_ready):
    server = RtspServer(port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def open_capture(url: str):
    cap = cv2.VideoCapture(
        url,
        cv2.CAP_FFMPEG,
        [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            OPEN_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            READ_TIMEOUT_MS,
        ],
    )
    assert cap.isOpened(), f"could not open {url}"
    return cap


def drain_to_live(cap, fps: int, max_reads: int = 300) -> np.ndarray:
    """Read past the frames queued during probing; return the latest live frame.

    Live means read() had to wait for the camera (over half a frame interval)
    twice in a row; queued frames come back in a few milliseconds.
    """
    waited = 0
    for _ in range(max_reads):
        ok, frame, blocked = timed_read(cap)
        assert ok, "stream ended while draining"
        waited = waited + 1 if blocked > 0.5 / fps else 0
        if waited == 2:
            return frame
    pytest.fail("never caught up with the live stream")


def timed_read(cap):
    t = time.monotonic()
    ok, frame = cap.read()
    return ok, frame, time.monotonic() - t


@pytest.mark.timeout(60)
@pytest.mark.parametrize("width,height,fps", [(320, 240, 15), (176, 144, 30)])
def test_frames_have_requested_size_and_move(rtsp_ready, width, height, fps):
    with RtspServer(port=free_port(), width=width, height=height, fps=fps) as cam:
        assert cam.url == f"rtsp://127.0.0.1:{cam.port}/cam"
        assert cam.encoder in ("x264enc", "openh264enc")
        cap = open_capture(cam.url)
        try:
            frames = []
            for _ in range(10):
                ok, frame = cap.read()
                assert ok
                assert frame.shape == (height, width, 3)
                frames.append(frame)
            # The pattern moves: consecutive frames differ.
            assert any(not np.array_equal(a, b) for a, b in zip(frames[:-1], frames[1:], strict=True))
            # Live: once drained, frames arrive at about the camera's rate.
            drain_to_live(cap, fps)
            t = time.monotonic()
            for _ in range(fps):
                assert cap.read()[0]
            assert 0.5 < time.monotonic() - t < 3.0
        finally:
            cap.release()


@pytest.mark.timeout(60)
def test_frozen_camera_reads_block_then_fail_and_never_recover(camera):
    cap = open_capture(camera.url)
    try:
        last = drain_to_live(cap, camera.fps)
        camera.freeze()
        frozen_at = time.monotonic()
        results = []  # (ok, seconds the read blocked, identical to the previous frame)
        while time.monotonic() - frozen_at < 12:
            ok, frame, blocked = timed_read(cap)
            same = ok and np.array_equal(frame, last)
            results.append((ok, round(blocked, 2), same))
            if not ok:
                break
            last = frame
        failed_after = time.monotonic() - frozen_at
        print("frozen:", results, f"failed after {failed_after:.2f}s")

        timeout_s = READ_TIMEOUT_MS / 1000
        assert not results[-1][0], f"read() never failed on a frozen stream: {results}"
        # The failing read waited out the read timeout (it is not an EOF).
        assert results[-1][1] >= timeout_s * 0.9, results
        # Before failing: a few True reads (frames in flight return at once,
        # frames left in the decoder each after a full read timeout -- 2 here),
        # so failure comes after one to ~3 read timeouts.
        assert len([r for r in results if r[0] and r[1] >= timeout_s * 0.9]) <= 3, results
        assert len([r for r in results if r[0]]) <= 8, results
        assert timeout_s * 0.9 <= failed_after <= 3 * timeout_s + 2, results

        # The camera comes back, but this capture stays failed.
        camera.resume()
        t = time.monotonic()
        again = [cap.read()[0] for _ in range(10)]
        assert not any(again), again
        assert time.monotonic() - t < 5
    finally:
        cap.release()

    # A new capture gets frames again.
    cap = open_capture(camera.url)
    try:
        ok, frame = cap.read()
        assert ok and frame.shape == (camera.height, camera.width, 3)
    finally:
        cap.release()


@pytest.mark.timeout(60)
def test_killed_camera_fails_fast_and_comes_back_on_same_port(camera):
    cap = open_capture(camera.url)
    try:
        drain_to_live(cap, camera.fps)
        port = camera.port
        camera.stop()
        assert not camera.running
        stopped_at = time.monotonic()
        results = []
        for _ in range(6):
            ok, _frame, blocked = timed_read(cap)
            results.append((ok, round(blocked, 3)))
            if not ok:
                break
        print("killed:", results)
        assert not results[-1][0], f"read() kept succeeding after the server died: {results}"
        # End-of-stream, not a read timeout: it fails well before READ_TIMEOUT.
        assert time.monotonic() - stopped_at < READ_TIMEOUT_MS / 1000 * 0.75, results
        assert len(results) <= 4
        assert not cap.read()[0]  # and stays failed
    finally:
        cap.release()

    camera.start()  # same object, same port
    assert camera.port == port and camera.running
    cap = open_capture(camera.url)
    try:
        for _ in range(5):
            ok, frame = cap.read()
            assert ok and frame.shape == (camera.height, camera.width, 3)
    finally:
        cap.release()


@pytest.mark.timeout(60)
def test_sigkilled_camera_restarts_on_same_port(camera):
    cap = open_capture(camera.url)
    try:
        drain_to_live(cap, camera.fps)
        camera.kill()  # abrupt crash: no clean shutdown at all
        t = time.monotonic()
        oks = [cap.read()[0] for _ in range(5)]
        assert oks[-1] is False and time.monotonic() - t < 1.5, oks
    finally:
        cap.release()
    restarted = RtspServer(port=camera.port).start()
    try:
        cap = open_capture(restarted.url)
        try:
            assert cap.read()[0]
        finally:
            cap.release()
    finally:
        restarted.stop()


@pytest.mark.timeout(60)
def test_server_start_fails_fast_when_port_taken(camera):
    clash = RtspServer(port=camera.port, start_timeout=10)
    t = time.monotonic()
    with pytest.raises(RtspServerError, match="exited"):
        clash.start()
    assert time.monotonic() - t < 10
    assert not clash.running
    assert camera.running  # the first one is unharmed
    camera.freeze()
    camera.resume()


@pytest.mark.timeout(60)
def test_stop_is_idempotent_and_freeze_needs_a_server(rtsp_ready):
    cam = RtspServer(port=free_port())
    cam.stop()  # never started: no-op
    with pytest.raises(RtspServerError):
        cam.freeze()
    with cam:
        assert cam.running and cam.pid
    assert not cam.running
    cam.stop()
