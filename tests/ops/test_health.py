"""Health on the bus, the engine watchdog, metrics and JSON logs of a real `edge-rt run`.

Real parts: the CLI in its own process, ZeroMQ over loopback TCP, GStreamer's RTSP server frozen
with SIGSTOP, ONNX Runtime running an Ultralytics-exported model, Prometheus scraped over HTTP.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
import urllib.request
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_rt.camera.sources import parse_source
from edge_rt.client import DetectionMessage, HealthMessage, Message, Subscriber
from edge_rt.config import RunConfig
from edge_rt.engines import load_engine
from edge_rt.errors import EngineError
from edge_rt.ops.metrics import Metrics
from edge_rt.runner import build_pipeline
from tests.conftest import free_port, write_clip
from tests.helpers import start_cli, validate
from tests.support.rtsp import RtspServer, rtsp_available

pytestmark = pytest.mark.timeout(120)
rtsp = pytest.mark.skipif(not rtsp_available()[0], reason=f"no RTSP test server: {rtsp_available()[1]}")


def _receive_until(sub: Subscriber, done: Any, timeout: float, what: str) -> list[Message]:
    """Messages until `done(messages)` is true; fails naming `what` after `timeout` seconds."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while not done(got):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {what} within {timeout:g}s; got {[(type(m).__name__, m.source, getattr(m, 'state', '')) for m in got[-8:]]}"
        msg = sub.receive(int(remaining * 1000) + 1)
        if msg is not None:
            validate(msg.raw)
            got.append(msg)
    return got


def _health(messages: list[Message]) -> list[HealthMessage]:
    return [m for m in messages if isinstance(m, HealthMessage)]


def test_late_subscriber_learns_every_state_at_once_and_the_last_word_is_stopped(onnx_dynamic: Path, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=20)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    dead = f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/door"  # nothing listens: reconnecting, then offline
    proc = start_cli(
        "run", "--model", str(onnx_dynamic), "--device", "cpu", "--publish", endpoint, "--open-timeout", "1",
        "--source", "yard=synthetic://320x240?fps=10", "--source", f"clip={clip}", "--loop", "--fps", "10",
        "--source", f"door={dead}",
    )
    try:
        with Subscriber(endpoint, topics=["yard"]) as frames:
            _receive_until(frames, lambda got: len(got) >= 3, 60, "detections from yard")  # the run is up
        time.sleep(0.5)
        with Subscriber(endpoint, health=True, topics=["$health"]) as sub:
            joined = time.monotonic()
            got = _receive_until(sub, lambda got: {m.source for m in _health(got)} >= {"yard", "clip", "door"}, 5, "health of every source")
            learned_s = time.monotonic() - joined
            assert all(isinstance(m, HealthMessage) for m in got), "a $health-only subscriber gets nothing else"
            states = {m.source: m.state for m in _health(got)}
            assert states["yard"] == states["clip"] == "online"
            assert states["door"] in ("reconnecting", "offline")
            door = next(m for m in _health(got) if m.source == "door")
            assert "hunter2" not in json.dumps(door.raw), "camera passwords never reach the bus"
            assert door.counters["read_failures"] >= 1 and door.counters["published"] == 0
            beats = _receive_until(sub, lambda got: any(m.event == "heartbeat" for m in _health(got)), 4, "a heartbeat")
            assert any(m.source == "yard" and m.counters["published"] > 0 for m in _health(beats))
            proc.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            tail = _receive_until(sub, lambda got: {m.source for m in _health(got) if m.state == "stopped"} >= {"yard", "clip", "door"}, 5, "stopped for every source")
            proc.communicate(timeout=5)
            stop_s = time.monotonic() - stopping
            assert sub.receive(300) is None, "nothing follows a source's stopped"
    finally:
        proc.kill()
        proc.communicate()
    assert learned_s < 1.0, f"a late subscriber waited {learned_s:.2f}s for the sources' states"
    assert proc.returncode == 0 and stop_s < 5.0
    last = {m.source: m for m in _health(tail)}
    assert {m.state for m in last.values()} == {"stopped"} and last["yard"].reason == "shutdown"


@rtsp
def test_a_frozen_camera_is_stalled_on_the_bus_then_online_again(onnx_dynamic: Path) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    stall_timeout = 3.0
    with RtspServer(port=free_port(), fps=15) as cam:
        proc = start_cli(
            "run", "--model", str(onnx_dynamic), "--device", "cpu", "--publish", endpoint,
            "--source", f"door={cam.url}", "--stall-timeout", str(stall_timeout), "--open-timeout", "3",
        )
        try:
            with Subscriber(endpoint, topics=["door"], health=True) as sub:
                _receive_until(sub, lambda got: sum(isinstance(m, DetectionMessage) for m in got) >= 5, 60, "frames from the camera")
                os.kill(cam.pid, signal.SIGSTOP)  # the whole server hangs: TCP stays open, nothing answers
                frozen = time.monotonic()
                got = _receive_until(sub, lambda got: any(m.state == "stalled" for m in _health(got)), stall_timeout + 3, "stalled")
                stalled_s = time.monotonic() - frozen
                while time.monotonic() - frozen < 15:
                    m = sub.receive(100)
                    if m is not None:
                        got.append(m)
                late = [m for m in got if isinstance(m, DetectionMessage) and m.raw["timestamps"]["publish_ns"] > time.time_ns() - (time.monotonic() - frozen - 1.0) * 1e9]
                os.kill(cam.pid, signal.SIGCONT)
                resumed = time.monotonic()
                back = _receive_until(sub, lambda got: any(m.state == "online" for m in _health(got)), 15, "online after SIGCONT")
                online_s = time.monotonic() - resumed
                _receive_until(sub, lambda got: any(isinstance(m, DetectionMessage) for m in got), 10, "frames after SIGCONT")
        finally:
            os.kill(cam.pid, signal.SIGCONT)  # harmless when it runs already
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=10)
            finally:
                proc.kill()
    assert stalled_s <= stall_timeout + 1.0, f"stalled declared {stalled_s:.1f}s after the freeze"
    assert len(late) <= 3, f"{len(late)} frames published more than 1 s into the freeze"
    assert online_s <= 12.0, f"online {online_s:.1f}s after the camera resumed"
    changes = [m.state for m in _health(got + back) if m.event == "change"]
    assert changes[0] == "stalled" and "online" in changes, changes


class _FaultyEngine:
    """A real ONNX Runtime engine that fails its `fail_on`-th call: raising, or hanging until released."""

    def __init__(self, model: Path, fail_on: int, hang: bool) -> None:
        self._engine = load_engine(model, "cpu", threads=1)
        self.info, self.device = self._engine.info, self._engine.device
        self.calls, self.fail_on, self.hang = 0, fail_on, hang
        self.release = threading.Event()

    def infer(self, tensor: np.ndarray, plan: np.ndarray | None = None) -> np.ndarray:
        self.calls += 1
        if self.calls == self.fail_on:
            if not self.hang:
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            self.release.wait(60)
        return self._engine.infer(tensor, plan)

    def close(self) -> None:
        self._engine.close()


class _ListSink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def publish(self, topic: str, message: dict[str, Any]) -> bool:
        self.messages.append((topic, message))
        return True


@pytest.mark.parametrize("hang", [False, True], ids=["raises", "hangs"])
def test_an_engine_that_raises_or_hangs_ends_the_run_with_engine_error(hang: bool, onnx_static: Path, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=10)
    engine = _FaultyEngine(onnx_static, fail_on=4, hang=hang)
    config = RunConfig(model=str(onnx_static), sources=(parse_source(str(clip), 0, loop=True),), engine_timeout=1.0)
    sink = _ListSink()
    pipeline = build_pipeline(config, engine, sink, Metrics())  # type: ignore[arg-type]
    t0 = time.monotonic()
    try:
        with pytest.raises(EngineError) as err:
            pipeline.run()
        took = time.monotonic() - t0
    finally:
        engine.release.set()
        engine.close()
    assert err.value.exit_code == 8
    assert ("has not returned after" if hang else "illegal memory access") in str(err.value)
    assert took < 15, f"the run took {took:.1f}s to give up"
    assert pipeline.engine_hung is hang
    detections = [m for t, m in sink.messages if t == "cam0"]
    assert len(detections) == 3, "the batches before the failure were published"
    last = [m for t, m in sink.messages if t == "$health"][-1]
    assert last["state"] == "stopped" and last["reason"].startswith("error: engine")


def test_cli_engine_failure_is_one_line_and_exit_8(onnx_static: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_rt import cli, runner

    clip = write_clip(tmp_path / "clip.mp4", frames=10)
    monkeypatch.setattr(runner, "load_engine", lambda model, device, threads, **_: _FaultyEngine(Path(model), fail_on=2, hang=False))
    err = io.StringIO()
    with redirect_stderr(err):
        code = cli.main(["run", "--model", str(onnx_static), "--source", str(clip), "--publish", f"tcp://127.0.0.1:{free_port()}", "--log-level", "error"])
    assert code == 8
    lines = [line for line in err.getvalue().splitlines() if "error:" in line]
    assert "Traceback" not in err.getvalue() and len(lines) == 1 and "illegal memory access" in lines[0], err.getvalue()


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(body) for s in f.samples}


def test_metrics_are_scraped_during_a_run_and_logs_are_json(onnx_dynamic: Path, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=20)
    port = free_port()
    proc = start_cli(
        "run", "--model", str(onnx_dynamic), "--device", "cpu", "--publish", f"tcp://127.0.0.1:{free_port()}",
        "--source", f"clip={clip}", "--loop", "--fps", "15", "--source", f"door=rtsp://127.0.0.1:{free_port()}/x",
        "--open-timeout", "1", "--metrics-port", str(port), "--log-format", "json",
    )
    try:
        deadline = time.monotonic() + 60
        got: dict[Any, float] = {}
        while time.monotonic() < deadline:
            try:
                got = _scrape(port)
            except OSError:
                got = {}
            if got.get(("edge_rt_frames_published_total", (("source", "clip"),)), 0) >= 10 and got.get(("edge_rt_read_failures_total", (("source", "door"),)), 0) >= 1:
                break
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert got.get(("edge_rt_frames_published_total", (("source", "clip"),)), 0) >= 10, sorted(k[0] for k in got)
    assert got[("edge_rt_frames_read_total", (("source", "clip"),))] >= 10
    assert got[("edge_rt_stage_latency_ms_count", (("stage", "inference"),))] >= 10
    assert got[("edge_rt_batch_size_count", ())] >= 1 and got[("edge_rt_engine_ms_count", ())] >= 1
    assert got[("edge_rt_source_state", (("edge_rt_source_state", "online"), ("source", "clip")))] == 1
    assert got[("edge_rt_source_up", (("source", "door"),))] == 0
    assert proc.returncode == 0
    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]  # every line is one JSON object
    assert any(r["msg"].startswith("metrics on http://") for r in records)
    assert {"ts", "level", "logger", "msg"} <= set(records[0])


def test_subscribe_prints_health_with_health_flag_and_only_health_for_its_topic(onnx_dynamic: Path) -> None:
    from tests.helpers import run_cli

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = start_cli("run", "--model", str(onnx_dynamic), "--device", "cpu", "--publish", endpoint, "--source", "yard=synthetic://320x240?fps=10")
    try:
        with Subscriber(endpoint, topics=["yard"]) as frames:
            _receive_until(frames, lambda got: len(got) >= 2, 60, "detections from yard")
        only = run_cli("subscribe", endpoint, "--topic", "$health", "--count", "3", "--timeout", "10", timeout=30)
        mixed = run_cli("subscribe", endpoint, "--health", "--count", "40", "--timeout", "10", timeout=30)
        plain = run_cli("subscribe", endpoint, "--count", "20", "--timeout", "10", timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert only.returncode == mixed.returncode == plain.returncode == 0, only.stderr + mixed.stderr + plain.stderr
    schemas = lambda out: {json.loads(line)["schema"] for line in out.stdout.splitlines()}  # noqa: E731
    assert schemas(only) == {"edge_rt.health"}
    first = json.loads(only.stdout.splitlines()[0])
    assert first["event"] == "snapshot" and first["state"] == "online", "a new subscriber is answered at once"
    assert schemas(mixed) == {"edge_rt.health", "edge_rt.detections"}, "--health adds health to the detections"
    assert schemas(plain) == {"edge_rt.detections"}, "health only for those who ask"


_NATIVE_HANG = """
import sys
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper
from edge_rt import cli, runner
from edge_rt.engines import load_engine

# A graph that computes for hours inside ONNX Runtime (a Loop of 10**12 additions): a hang in native code.
body = helper.make_graph(
    [helper.make_node("Identity", ["cond"], ["cond_out"]), helper.make_node("Add", ["x", "one"], ["x_out"])],
    "body",
    [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
     helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
    [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [1])],
    [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])],
)
graph = helper.make_graph(
    [helper.make_node("Loop", ["n", "c", "x0"], ["x"], body=body)],
    "spin",
    [],
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
    [helper.make_tensor("n", TensorProto.INT64, [], [10**12]), helper.make_tensor("c", TensorProto.BOOL, [], [True]),
     helper.make_tensor("x0", TensorProto.FLOAT, [1], [0.0])],
)
spin = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())


class HangsOnThirdCall:
    def __init__(self, model, device, threads, **_):
        self._engine = load_engine(model, "cpu", 1)
        self.info, self.device, self.calls = self._engine.info, self._engine.device, 0

    def infer(self, tensor, plan=None):
        self.calls += 1
        if self.calls == 3:
            print("HANGING", flush=True)
            spin.run(None, {})
        return self._engine.infer(tensor, plan)

    def close(self):
        self._engine.close()


runner.load_engine = HangsOnThirdCall
sys.argv = ["edge-rt", *sys.argv[1:]]
cli.entrypoint()
"""


@pytest.mark.parametrize("how", ["watchdog", "sigterm"])
def test_a_hang_inside_native_code_exits_cleanly_with_the_right_code(how: str, onnx_static: Path, tmp_path: Path) -> None:
    """A daemon thread stuck in ONNX Runtime makes a normal interpreter exit abort (SIGABRT, 134): the
    watchdog must end the run with 8, SIGTERM with 0 within the drain timeout."""
    import subprocess
    import sys

    from tests.helpers import env

    clip = write_clip(tmp_path / "clip.mp4", frames=10)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    timeout = "1" if how == "watchdog" else "600"
    proc = subprocess.Popen(
        [sys.executable, "-c", _NATIVE_HANG, "run", "--model", str(onnx_static), "--source", str(clip), "--loop",
         "--publish", endpoint, "--engine-timeout", timeout],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
    )
    try:
        with Subscriber(endpoint, topics=["$health"]) as sub:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "HANGING"
            t0 = time.monotonic()
            if how == "sigterm":
                time.sleep(1.0)
                proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
            took = time.monotonic() - t0
            last = _receive_until(sub, lambda got: any(m.state == "stopped" for m in _health(got)), 3, "stopped")
    finally:
        proc.kill()
    if how == "watchdog":
        assert proc.returncode == 8, stderr
        assert [line for line in stderr.splitlines() if "error:" in line][0].endswith("ending the run so it can be restarted")
        assert _health(last)[-1].reason.startswith("error: engine")
    else:
        assert proc.returncode == 0, stderr
        assert took < 1.0 + 5.0 + 2.0, f"SIGTERM took {took - 1:.1f}s with the engine hung"
        assert _health(last)[-1].reason == "shutdown"
    assert "Traceback" not in stderr and "terminate called" not in stderr
