"""`edge-rt run` end to end: real model, real mp4 files, real ZeroMQ sockets, the real CLI process."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from edge_rt.client import EndOfStream, Subscriber
from edge_rt.detect.postprocess import PostprocessSettings
from tests.detect.test_parity import ultralytics_detect

from .conftest import free_port, write_clip
from .helpers import assert_clean_failure, collect, detections_of, read_frames, run_cli, start_cli
from .support.rtsp import RtspServer, rtsp_available

pytestmark = pytest.mark.timeout(120)


def _run_and_collect(args: list[str], endpoint: str, sources: list[str], topics: tuple[str, ...] = ()) -> tuple[dict, subprocess.CompletedProcess]:
    with Subscriber(endpoint, topics=topics) as sub:
        proc = start_cli("run", "--publish", endpoint, "--await-subscribers", "1", "--device", "cpu", *args)
        try:
            messages = collect(sub, sources)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    return messages, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_every_frame_of_a_file_is_published_with_ultralytics_boxes(onnx_static: Path, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=10)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    messages, proc = _run_and_collect(["--model", str(onnx_static), "--source", f"door={clip}"], endpoint, ["door"])
    assert proc.returncode == 0, proc.stderr
    dets = detections_of(messages["door"])
    assert [m.seq for m in dets] == list(range(10))
    assert [m.frame_index for m in dets] == list(range(10))
    eos = messages["door"][-1]
    assert isinstance(eos, EndOfStream) and eos.reason == "end of file" and eos.frames == 10 and eos.seq == 10
    assert all((m.width, m.height) == (480, 270) for m in dets)
    for m in dets:
        ts = m.timestamps
        assert ts["capture_ns"] <= ts["batch_ns"] <= ts["inference_start_ns"] <= ts["inference_end_ns"] <= ts["publish_ns"]
        parts = sum(v for k, v in m.latency_ms.items() if k != "total")
        assert parts == pytest.approx(m.latency_ms["total"], abs=0.05)
    # Overlap: the next batch is batched and preprocessed while the engine still works on this one.
    overlapped = sum(b.timestamps["batch_ns"] < a.timestamps["inference_end_ns"] for a, b in zip(dets, dets[1:]))
    assert overlapped >= len(dets) // 2, f"only {overlapped} of {len(dets) - 1} batches overlapped inference"

    frames = read_frames(clip)
    reference = ultralytics_detect(onnx_static, frames, PostprocessSettings())
    assert sum(len(r) for r in reference) > 0
    for m, ref in zip(dets, reference):
        assert len(m.detections) == len(ref), f"frame {m.frame_index}"
        np.testing.assert_allclose([d.box for d in m.detections], ref.xyxy.reshape(-1, 4), atol=0.02)
        np.testing.assert_allclose([d.conf for d in m.detections], ref.conf, atol=1e-3)
        assert [d.cls for d in m.detections] == ref.cls.tolist()
        assert all(d.label == str(d.cls) for d in m.detections)  # untrained YAML model: names are "0".."79"


def test_two_sources_batched_on_a_dynamic_model_over_msgpack(onnx_dynamic: Path, tmp_path: Path) -> None:
    a = write_clip(tmp_path / "a.mp4", frames=8, seed=1)
    b = write_clip(tmp_path / "b.mp4", frames=6, seed=2)
    endpoint = f"ipc://{tmp_path}/edge.sock"
    args = ["--model", str(onnx_dynamic), "--source", f"a={a}", "--source", f"b={b}", "--max-batch", "2", "--max-wait-ms", "200", "--encoding", "msgpack"]
    messages, proc = _run_and_collect(args, endpoint, ["a", "b"])
    assert proc.returncode == 0, proc.stderr
    da, db = detections_of(messages["a"]), detections_of(messages["b"])
    assert [m.frame_index for m in da] == list(range(8))
    assert [m.frame_index for m in db] == list(range(6))
    assert max(m.batch_size for m in da + db) == 2, "frames of two sources should share an inference call"
    ref = ultralytics_detect(onnx_dynamic, read_frames(b), PostprocessSettings())  # one frame at a time
    assert sum(len(r) for r in ref) > 0
    for m, r in zip(db, ref):
        np.testing.assert_allclose([d.box for d in m.detections], r.xyxy.reshape(-1, 4), atol=0.05)


def test_fixed_batch_model_pads_a_single_source(onnx_batch2: Path, onnx_static: Path, tmp_path: Path) -> None:
    from edge_rt.detect.preprocess import Preprocessor
    from edge_rt.engines import load_engine

    clip = write_clip(tmp_path / "clip.mp4", frames=5)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    messages, proc = _run_and_collect(["--model", str(onnx_batch2), "--source", str(clip)], endpoint, ["cam0"])
    assert proc.returncode == 0, proc.stderr
    dets = detections_of(messages["cam0"])
    assert [m.frame_index for m in dets] == list(range(5))
    assert all(m.batch_size == 1 and m.detections for m in dets)
    # The padded row must not change the real one: raw outputs equal the batch-1 export's (same weights).
    frame = read_frames(clip)[0]
    b2, b1 = load_engine(onnx_batch2, "cpu"), load_engine(onnx_static, "cpu")
    padded = Preprocessor(b2.info.imgsz, 32, auto=False, fixed_batch=2)([frame])
    single = Preprocessor(b1.info.imgsz, 32, auto=False, fixed_batch=1)([frame])
    assert padded.tensor.shape[0] == 2 and padded.count == 1
    np.testing.assert_allclose(b2.infer(padded.tensor)[:1], b1.infer(single.tensor), atol=2e-3, rtol=1e-3)


def test_config_file_with_cli_override(onnx_static: Path, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=4)
    port = free_port()
    config = tmp_path / "edge.yaml"
    config.write_text(
        f"model: {onnx_static}\n"
        f"sources:\n  - name: lobby\n    uri: {clip}\n"
        f"publish: tcp://127.0.0.1:{port}\n"
        "conf: 0.9\nmax-det: 40\n"
    )
    with Subscriber(f"tcp://127.0.0.1:{port}") as sub:
        proc = start_cli("run", "--config", str(config), "--conf", "0.3", "--await-subscribers", "1", "--device", "cpu")
        messages = collect(sub, ["lobby"])
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    confs = [d.conf for m in detections_of(messages["lobby"]) for d in m.detections]
    counts = [len(m.detections) for m in detections_of(messages["lobby"])]
    assert confs and min(confs) > 0.3 and min(confs) < 0.9, "the flag --conf 0.3 must override the file's 0.9"
    assert max(counts) == 40, "max-det from the file applies"


def test_sigterm_publishes_in_flight_and_exits_zero(onnx_static: Path, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=6)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with Subscriber(endpoint) as sub:
        proc = start_cli("run", "--model", str(onnx_static), "--source", str(clip), "--loop", "--publish", endpoint, "--await-subscribers", "1", "--device", "cpu")
        try:
            seen = []
            while len(seen) < 15:  # more than one pass: --loop keeps going
                msg = sub.receive(30000)
                assert msg is not None, "no messages"
                seen.append(msg)
            proc.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            proc.communicate(timeout=10)
            stop_s = time.monotonic() - t0
            rest = collect(sub, ["cam0"], timeout=5)["cam0"]
        finally:
            proc.kill()
    assert proc.returncode == 0
    assert stop_s < 2.5, f"took {stop_s:.1f}s to stop"
    everything = seen + rest
    assert [m.seq for m in everything] == list(range(len(everything))), "nothing lost between the last frame and end-of-stream"
    assert isinstance(everything[-1], EndOfStream) and everything[-1].reason == "shutdown"
    indices = [m.frame_index for m in detections_of(everything)]
    assert indices == list(range(len(indices))), "the frame counter keeps counting across loops"


def _bad_yaml(tmp_path: Path) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text("model: [unclosed\n")
    return p


def _unknown_key(tmp_path: Path) -> Path:
    p = tmp_path / "unknown.yaml"
    p.write_text("model: m.onnx\nsources: [0]\nconfidence: 0.3\n")
    return p


def _live_loop(tmp_path: Path, model: Path) -> Path:
    p = tmp_path / "loop.yaml"
    p.write_text(f"model: {model}\nsources:\n  - uri: rtsp://127.0.0.1:1/x\n    loop: true\n")
    return p


def _not_onnx(tmp_path: Path) -> Path:
    p = tmp_path / "junk.onnx"
    p.write_text("this is not a model")
    return p


@pytest.mark.parametrize(
    "make_args,expected",
    [
        (lambda t, m, c: ["--model", str(t / "missing.onnx"), "--source", str(c)], "no such file"),
        (lambda t, m, c: ["--model", str(_not_onnx(t)), "--source", str(c)], "ONNX Runtime cannot load it"),
        (lambda t, m, c: ["--model", str(m), "--source", str(t / "nope.mp4")], "no such file"),
        (lambda t, m, c: ["--model", str(m), "--source", "rtsp://"], "malformed URL"),
        (lambda t, m, c: ["--model", str(m), "--source", str(c), "--publish", "localhost:5555"], "expected tcp://"),
        (lambda t, m, c: ["--model", str(m), "--source", str(c), "--publish", "tcp://256.1.1.1:5555", "--insecure"], "cannot bind"),
        (lambda t, m, c: ["--model", str(m), "--source", str(c), "--publish", "tcp://*:5555"], "or --insecure"),
        (lambda t, m, c: ["--model", str(m), "--source", str(c), "--conf", "1.5"], "conf: must be <= 1"),
        (lambda t, m, c: ["--model", str(m), "--source", str(c), "--iou", "-0.1"], "iou: must be >= 0"),
        (lambda t, m, c: ["--model", str(m), "--source", str(c), "--max-batch", "4"], "fixed batch of 1"),
        (lambda t, m, c: ["--model", str(m), "--source", str(c), "--classes", "80"], "--classes 80"),
        (lambda t, m, c: ["--model", str(m), "--source", str(c), "--imgsz", "640"], "fixed input"),
        (lambda t, m, c: ["--model", str(m), "--source", f"a={c}", "--source", f"a={c}"], "repeated: a"),
        (lambda t, m, c: ["--model", str(m)], "no source"),
        (lambda t, m, c: ["--source", str(c)], "no model"),
        (lambda t, m, c: ["--config", str(_bad_yaml(t))], "broken YAML at line"),
        (lambda t, m, c: ["--config", str(_unknown_key(t))], "unknown key 'confidence'"),
        (lambda t, m, c: ["--config", str(t / "none.yaml")], "no such file"),
        (lambda t, m, c: ["--model", str(m), "--source", str(c), "--conf", "high"], "invalid float value"),
        (lambda t, m, c: ["--config", str(_live_loop(t, m))], "loop applies to files only"),
    ],
)
def test_user_mistakes_get_one_line_and_nonzero_exit(make_args, expected: str, onnx_static: Path, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=2)
    proc = run_cli("run", "--device", "cpu", "--publish", f"tcp://127.0.0.1:{free_port()}", *make_args(tmp_path, onnx_static, clip))
    assert_clean_failure(proc, expected)


def test_port_in_use_is_a_clean_error(onnx_static: Path, tmp_path: Path) -> None:
    import zmq

    clip = write_clip(tmp_path / "clip.mp4", frames=2)
    port = free_port()
    ctx = zmq.Context()
    holder = ctx.socket(zmq.PUB)
    holder.setsockopt(zmq.LINGER, 0)
    holder.bind(f"tcp://127.0.0.1:{port}")
    try:
        proc = run_cli("run", "--model", str(onnx_static), "--source", str(clip), "--publish", f"tcp://127.0.0.1:{port}")
    finally:
        holder.close()
        ctx.term()
    assert_clean_failure(proc, "address already in use")


def test_the_runtime_never_imports_torch_or_ultralytics(onnx_static: Path, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=2)
    code = (
        "import sys; from edge_rt.cli import main; "
        f"rc = main(['run', '--model', {str(onnx_static)!r}, '--source', {str(clip)!r}, '--publish', 'ipc://{tmp_path}/x.sock', '--device', 'cpu']); "
        "heavy = [m for m in ('torch', 'ultralytics', 'torchvision') if m in sys.modules]; "
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    proc = subprocess.run([__import__("sys").executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout


@pytest.mark.skipif(not rtsp_available()[0], reason=f"no RTSP test server: {rtsp_available()[1]}")
def test_camera_that_dies_and_comes_back_keeps_one_session(onnx_static: Path) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with RtspServer(port=free_port(), fps=15) as cam, Subscriber(endpoint) as sub:
        proc = start_cli(
            "run", "--model", str(onnx_static), "--source", f"door={cam.url}", "--publish", endpoint,
            "--stall-timeout", "1.5", "--reconnect-max", "1", "--device", "cpu",
        )
        try:
            first = [sub.receive(30000) for _ in range(5)]
            assert all(first), "no messages from the live camera"
            cam.stop()
            time.sleep(2)
            while sub.receive(100) is not None:  # what was in flight when it died
                pass
            cam.start()
            after = sub.receive(30000)
            assert after is not None, "no messages after the camera came back"
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=10)
        finally:
            proc.kill()
    assert proc.returncode == 0
    assert err.count("online -> reconnecting") + err.count("online -> stalled") >= 1, "the outage is logged as a state change"
    assert err.count("-> online") >= 2, "and so is the return"
    assert after.session == first[0].session and not after.restarted
    assert after.frame_index > first[-1].frame_index


def test_sigint_while_waiting_for_subscribers_exits_promptly(onnx_static: Path, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=3)
    proc = start_cli("run", "--model", str(onnx_static), "--source", str(clip), "--publish", f"ipc://{tmp_path}/w.sock",
                     "--await-subscribers", "1", "--await-timeout", "60", "--device", "cpu")
    try:
        deadline = time.monotonic() + 30
        assert proc.stderr is not None
        while "waiting up to" not in proc.stderr.readline():
            assert time.monotonic() < deadline, "never started waiting"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0 and time.monotonic() - t0 < 3
