"""The native TensorRT runtime: the decisions it makes without a GPU are tested here for real; the GPU
tests (marker `tensorrt`) build real engines from real Ultralytics ONNX exports and check them
against ONNX Runtime on the CPU, per batch profile and through CUDA-graph replay.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import sys
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_rt.detect.model_info import GRAPH_PREPROCESS_KEY
from edge_rt.detect.preprocess import Preprocessor
from edge_rt.engines import load_engine
from edge_rt.engines.cuda_runtime import (
    DeviceBuffer,
    Event,
    Graph,
    PinnedBuffer,
    Stream,
    capture,
    check,
    cuda_mismatch,
    host_array,
    load_cudart,
)
from edge_rt.engines.tensorrt import ProfileRange, SlotKey, TensorRTEngine, check_run_fits, choose_profile, plan_problem
from edge_rt.engines.tensorrt_profiles import letterbox_plan
from edge_rt.engines.tensorrt_sidecar import (
    check_sidecar,
    plan_input_name,
    read_sidecar,
    rebuild_command,
    sidecar_metadata,
    sidecar_path,
)
from edge_rt.errors import ConfigError, MissingDependencyError, ModelError
from edge_rt.exporters.graph import add_graph_preprocess
from edge_rt.exporters.tensorrt import build_engine
from tests.conftest import IMGSZ
from tests.exporters.test_export_tensorrt import _gpu_missing, assert_close_outputs, detect, iou, kept, raw_outputs, timing_cache

# --- which profile runs a batch ------------------------------------------------------------------

PER_BATCH = [ProfileRange(0, 1, 1), ProfileRange(1, 2, 2), ProfileRange(2, 4, 4)]  # what the builder makes for 1..4


@pytest.mark.parametrize(
    "profiles,batch,index,run",
    [
        (PER_BATCH, 1, 0, 1),
        (PER_BATCH, 2, 1, 2),
        (PER_BATCH, 3, 2, 4),  # no profile for 3: padded to the next one
        (PER_BATCH, 4, 2, 4),
        ([ProfileRange(0, 1, 4)], 3, 0, 3),  # an older engine with one range takes 3 as it is
        ([ProfileRange(0, 1, 8), ProfileRange(1, 4, 4)], 4, 1, 4),  # the exact profile beats the range
        ([ProfileRange(0, 1, 8), ProfileRange(1, 4, 4)], 3, 0, 3),  # ... and the range beats padding
        ([ProfileRange(0, 2, 2)], 1, 0, 2),  # a fixed batch of 2 takes one frame, padded
    ],
)
def test_choose_profile(profiles: list[ProfileRange], batch: int, index: int, run: int) -> None:
    chosen, run_batch = choose_profile(batch, profiles)
    assert (chosen.index, run_batch) == (index, run)


@pytest.mark.parametrize(
    "batch,match",
    [(5, r"batch 5 is outside its optimisation profiles \(largest batch 4\); rebuild with --max-batch 5"), (0, "at least one")],
)
def test_choose_profile_refuses(batch: int, match: str) -> None:
    with pytest.raises(ModelError, match=match):
        choose_profile(batch, PER_BATCH)


@pytest.mark.parametrize(
    "driver, bindings, expected",
    [
        (12060, 13000, "the NVIDIA driver offers CUDA 12.6, cuda-python is built for CUDA 13.0: pip install 'cuda-python>=12,<13'"),
        (12060, 12090, None),  # JetPack 6 with cuda-python 12.9: the bindings' build version, minor-compatible: no warning
        (12020, 12060, None),
        (13000, 12060, None),  # a newer driver runs older bindings
        (12060, 12060, None),
        (0, 12060, None),  # no driver: the first real call says so
    ],
)
def test_cuda_driver_against_the_bindings_refuses_only_an_older_major(driver: int, bindings: int, expected: str | None) -> None:
    """cudaRuntimeGetVersion in cuda-python is the bindings' build version (12.9 for any 12.x wheel): only a driver
    of an older major fails (cuda-python 13 on JetPack 6's CUDA 12.6), and that one line has a fix that changes something."""
    got = cuda_mismatch(driver, bindings)
    if expected is None:
        assert got is None
    else:
        assert got is not None and got.startswith(expected), got


class _FakeCudart:
    """cuda-python's runtime module as far as load_cudart reads it."""

    def __init__(self, driver: int, bindings: int) -> None:
        self._driver, self._bindings = driver, bindings

    def cudaDriverGetVersion(self) -> tuple[int, int]:
        return 0, self._driver

    def cudaRuntimeGetVersion(self) -> tuple[int, int]:
        return 0, self._bindings

    def cudaGetDeviceProperties(self, device: int) -> tuple[int, Any]:
        return 0, type("Props", (), {"name": b"Orin", "major": 8, "minor": 7})()


def _install_cudart(monkeypatch: pytest.MonkeyPatch, fake: _FakeCudart) -> None:
    import types

    cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    bindings.runtime = fake  # type: ignore[attr-defined]
    cuda.bindings = bindings  # type: ignore[attr-defined]
    for name, module in (("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", fake)):
        monkeypatch.setitem(sys.modules, name, module)


def test_jetpack6_with_cuda_python_12_9_starts_without_a_warning(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The driver says 12.6, the bindings 12.9 (their build version): a normal box, said as OK by doctor and nothing at load."""
    from edge_rt.doctor import checks

    _install_cudart(monkeypatch, _FakeCudart(12060, 12090))
    with caplog.at_level("WARNING", logger="edge_rt"):
        load_cudart()
    assert not caplog.records
    monkeypatch.setattr(checks, "_driver_cuda", lambda: 12060)
    found = {c.area: c for c in checks.nvidia()}
    assert {c.status for c in found.values()} == {"ok"}, found
    assert "12.9" in found["cuda-python runtime"].found and "12.6" in found["cuda-python runtime"].found
    _install_cudart(monkeypatch, _FakeCudart(12060, 13000))  # cuda-python 13 on JetPack 6: refused, with a fix that changes it
    with pytest.raises(MissingDependencyError, match=r"pip install 'cuda-python>=12,<13'"):
        load_cudart()
    row = next(c for c in checks.nvidia() if c.area == "cuda-python runtime")
    assert row.status == "fail" and row.fix.startswith("pip install 'cuda-python>=12,<13'")


# --- does the run fit the engine's profiles (checked at load) --------------------------------------


def _info(**changes: Any) -> Any:
    from dataclasses import replace as dc_replace

    from edge_rt.detect.model_info import ModelInfo

    base = ModelInfo({0: "a"}, (640, 640), 32, None, True, False, "images", "float32")
    return dc_replace(base, **changes)


PER_BATCH_8 = [ProfileRange(i, b, b, (640, 640)) for i, b in enumerate((1, 2, 4, 8))]


@pytest.mark.parametrize(
    "info, batch, imgsz, match",
    [
        (_info(), 8, None, None),
        (_info(), 16, None, r"m.engine: its profiles take batches up to 8, this run sends up to 16 .*run with --max-batch 8, or rebuild it: .*--max-batch 16"),
        (_info(batch=1), 16, None, None),  # a fixed batch runs its own batch whatever the sources
        (_info(max_batch=4), 16, None, None),  # an in-graph NMS caps the run at 4 (resolve_batch)
        (_info(), 1, (640, 640), None),
        (_info(), 1, (1280, 1280), r"built for inputs up to 640x640, --imgsz 1280x1280 is larger; run with --imgsz 640 or less, or rebuild it: .*--imgsz 1280"),
        (_info(), None, None, None),
    ],
)
def test_a_run_the_engine_cannot_take_is_refused_at_load(info: Any, batch: int | None, imgsz: tuple[int, int] | None, match: str | None, tmp_path: Path) -> None:
    """16 cameras on an engine built for 8, or --imgsz 1280 on one built for 640: one line at load, not a crash
    at the first full batch."""
    meta = {"weights": "best.pt", "imgsz": [640, 640], "dynamic": True, "max_batch": 8}
    if match is None:
        check_run_fits(info, PER_BATCH_8, batch, imgsz, meta, tmp_path / "m.engine")
    else:
        with pytest.raises(ModelError, match=match):
            check_run_fits(info, PER_BATCH_8, batch, imgsz, meta, tmp_path / "m.engine")


def test_a_graph_and_its_buffers_belong_to_one_profile_shape_and_plan() -> None:
    a = SlotKey(2, (4, 720, 1280, 3), (180, 320, 70, 0, 70, 0))
    same = SlotKey(2, (4, 720, 1280, 3), (180, 320, 70, 0, 70, 0))
    assert a == same and hash(a) == hash(same)
    assert a != SlotKey(2, (4, 720, 1280, 3), (180, 320, 6, 0, 6, 0))  # another plan: another capture
    assert a != SlotKey(1, (4, 720, 1280, 3), a.plan) and a != SlotKey(2, (4, 480, 640, 3), a.plan)


def test_plan_outside_the_built_range_is_named() -> None:
    lo, hi = (1, 1, 0, 0, 0, 0), (320, 320, 160, 160, 160, 160)
    assert plan_problem(letterbox_plan((720, 1280), (320, 320), 32, False), lo, hi) is None
    assert plan_problem((180, 640, 70, 0, 70, 0), lo, hi) == "letterbox new_w=640 is outside the engine's range 1..320"
    assert plan_problem((180, 320, 170, 0, 70, 0), lo, hi) == "letterbox pad_top=170 is outside the engine's range 0..160"


# --- the sidecar ---------------------------------------------------------------------------------

SIDE = {
    "names": {"0": "person", "1": "car"}, "imgsz": [640, 640], "stride": 32, "task": "detect", "batch": 8, "end2end": True,
    "tensorrt": "10.3.0", "gpu": "Orin", "precision": "fp16", "min_batch": 1, "opt_batch": 8, "max_batch": 8,
    "profiles": [1, 2, 4, 8], "dynamic": True, "nms": True, "cuda_graph": False, "built_ns": 1,
}


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("tensorrt", "10.13.0", "was built with TensorRT 10.3.0, this machine has 10.13.0; rebuild it here: edge-rt export "),
        ("gpu", "NVIDIA H100", "was built for GPU 'Orin', this machine has 'NVIDIA H100'; rebuild it here: edge-rt export "),
    ],
)
def test_an_engine_from_elsewhere_is_refused_with_the_rebuild_command(key: str, value: str, match: str, tmp_path: Path) -> None:
    here = {"tensorrt": "10.3.0", "gpu": "Orin", key: value}
    with pytest.raises(ModelError, match=match) as exc:
        check_sidecar(SIDE, here["tensorrt"], here["gpu"], tmp_path / "yolo.engine")
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.endswith(
        f"edge-rt export --weights WEIGHTS.pt --format engine --output {tmp_path / 'yolo.engine'} --imgsz 640 --half "
        "--dynamic --max-batch 8 --nms"
    )
    check_sidecar(SIDE, "10.3.0", "Orin", tmp_path / "yolo.engine")  # built here: accepted
    check_sidecar({}, "10.3.0", "Orin", tmp_path / "yolo.engine")  # an old sidecar without the facts: accepted


def test_rebuild_command_names_what_the_sidecar_knows(tmp_path: Path) -> None:
    side = {**SIDE, "weights": "runs/best.pt", "profile": "jetson-orin-fp16", "precision": "int8", "dynamic": False, "nms": False}
    side[GRAPH_PREPROCESS_KEY] = "{'version': 1, 'plan_input': 'letterbox', 'inner_hw': [640, 640], 'dynamic': False}"
    out = tmp_path / "my models" / "yolo.engine"
    assert rebuild_command(side, out) == (
        f"edge-rt export --weights runs/best.pt --format engine --output '{out}' --target jetson-orin-fp16 --imgsz 640 "
        "--int8 --calibration FRAMES_DIR --max-batch 8 --graph-preprocess"
    )


def test_sidecar_metadata_is_the_model_keys_as_onnx_strings() -> None:
    side = {**SIDE, GRAPH_PREPROCESS_KEY: "{'version': 1, 'plan_input': 'letterbox', 'inner_hw': [640, 640]}"}
    meta = sidecar_metadata(side)
    assert set(meta) == {"names", "imgsz", "stride", "task", "batch", "end2end", GRAPH_PREPROCESS_KEY}
    assert meta["names"] == "{'0': 'person', '1': 'car'}" and meta["imgsz"] == "[640, 640]" and meta["end2end"] == "True"
    assert plan_input_name(side) == "letterbox" and plan_input_name(SIDE) is None
    assert plan_input_name({GRAPH_PREPROCESS_KEY: {"plan_input": "plan"}}) == "plan"
    with pytest.raises(ModelError, match="is not readable"):
        plan_input_name({GRAPH_PREPROCESS_KEY: "{'version': 1}"})


def test_missing_or_broken_sidecar_is_one_clear_line(tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not an engine")
    with pytest.raises(ModelError, match=r"missing its sidecar m\.engine\.json"):
        read_sidecar(engine)
    sidecar_path(engine).write_text("{nope")
    with pytest.raises(ModelError, match="is not valid JSON"):
        read_sidecar(engine)
    sidecar_path(engine).write_text("[]")
    with pytest.raises(ModelError, match="expected a JSON object"):
        read_sidecar(engine)


def test_without_tensorrt_loading_an_engine_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    with pytest.raises(ConfigError, match="a TensorRT engine runs on the GPU"):
        load_engine(engine, "cpu")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on a machine without TensorRT
    with pytest.raises(MissingDependencyError) as exc:
        load_engine(engine, "auto")
    assert str(exc.value) == "TensorRT is not installed: pip install 'edge_rt[gpu]' (JetPack ships it)"


def test_without_cuda_python_the_message_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):  # as if cuda-python were not installed
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependencyError) as exc:
        load_cudart()
    assert str(exc.value) == "TensorRT engines need cuda-python: pip install 'edge_rt[gpu]'"


# --- cuda-python plumbing that needs no GPU --------------------------------------------------------


class Err(IntEnum):  # the shape of cuda-python's cudaError_t: an int enum with names
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorStreamCaptureInvalidated = 901


def test_check_returns_the_results_or_names_the_failed_call() -> None:
    assert check((Err.cudaSuccess,), "cudaFree") is None
    assert check((Err.cudaSuccess, 42), "cudaMalloc") == 42
    assert check((Err.cudaSuccess, 1, 2), "two") == [1, 2]
    with pytest.raises(ModelError, match="^CUDA error in cudaMalloc: cudaErrorInvalidValue$"):
        check((Err.cudaErrorInvalidValue, None), "cudaMalloc")


def test_host_array_is_a_view_of_the_memory_not_a_copy() -> None:
    raw = (ctypes.c_ubyte * 64)()
    view = host_array(ctypes.addressof(raw), "float32", (2, 8))
    view[1, 3] = 1.5
    assert np.frombuffer(raw, np.float32)[8 + 3] == 1.5 and view.shape == (2, 8)


@dataclass
class FakeCudart:
    """The cuda-python calls `capture` makes, recorded: its error paths cannot run without a GPU here.

    Only the control flow is under test (what is ended, destroyed and cleared); the real calls run in
    the GPU tests below.
    """

    end: Err = Err.cudaSuccess
    instantiate: Err = Err.cudaSuccess
    begin: Err = Err.cudaSuccess
    calls: list[str] = field(default_factory=list)

    class cudaStreamCaptureMode:  # cuda-python's spelling
        cudaStreamCaptureModeThreadLocal = 1

    def cudaStreamBeginCapture(self, stream: Any, mode: int) -> tuple[Err]:
        self.calls.append(f"begin(mode={mode})")
        return (self.begin,)

    def cudaStreamEndCapture(self, stream: Any) -> tuple[Err, Any]:
        self.calls.append("end")
        return self.end, (None if self.end == Err.cudaErrorStreamCaptureInvalidated else "graph")

    def cudaGraphInstantiate(self, graph: Any, flags: int) -> tuple[Err, Any]:
        self.calls.append(f"instantiate({graph}, {flags})")
        return self.instantiate, "exec"

    def cudaGraphDestroy(self, graph: Any) -> tuple[Err]:
        self.calls.append(f"destroy({graph})")
        return (Err.cudaSuccess,)

    def cudaGetLastError(self) -> tuple[Err]:
        self.calls.append("clear")
        return (Err.cudaSuccess,)


class FakeStream:
    handle = "stream"


def _raise() -> bool:
    raise RuntimeError("plugin enqueue failed")


OK, BEGUN = Err.cudaSuccess, ["begin(mode=1)", "end"]


@pytest.mark.parametrize(
    "enqueue,end,instantiate,result,calls",
    [
        (lambda: True, OK, OK, Graph, [*BEGUN, "instantiate(graph, 0)", "destroy(graph)"]),
        (lambda: False, OK, OK, "TensorRT refused", [*BEGUN, "destroy(graph)", "clear"]),
        (_raise, OK, OK, "enqueue raised RuntimeError: plugin", [*BEGUN, "destroy(graph)", "clear"]),
        (lambda: True, Err.cudaErrorStreamCaptureInvalidated, OK, "cudaErrorStreamCaptureInvalidated", [*BEGUN, "clear"]),
        (lambda: True, OK, Err.cudaErrorInvalidValue, "cudaGraphInstantiate: cudaErrorInvalidValue",
         [*BEGUN, "instantiate(graph, 0)", "destroy(graph)", "clear"]),
    ],
)
def test_capture_always_ends_the_capture_and_cleans_up(
    enqueue: Any, end: Err, instantiate: Err, result: Any, calls: list[str]
) -> None:
    cudart = FakeCudart(end, instantiate)
    got = capture(cudart, FakeStream(), enqueue)  # type: ignore[arg-type]
    if result is Graph:
        assert isinstance(got, Graph)
    else:
        assert isinstance(got, str) and result in got
    assert cudart.calls == calls


def test_capture_that_cannot_begin_is_a_fallback_not_a_crash() -> None:
    cudart = FakeCudart(begin=Err.cudaErrorInvalidValue)
    enqueued: list[bool] = []
    got = capture(cudart, FakeStream(), lambda: enqueued.append(True) or True)  # type: ignore[arg-type]
    assert got == "cudaStreamBeginCapture: cudaErrorInvalidValue" and not enqueued
    assert cudart.calls == ["begin(mode=1)", "clear"]


def test_every_cuda_call_is_accepted_by_the_real_bindings() -> None:
    """With cuda-python but no driver, each call reaches the runtime and fails as one ModelError, never a
    TypeError: the names, argument types and result tuples match the installed cuda-bindings."""
    cudart = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed")
    err, count = cudart.cudaGetDeviceCount()
    if int(err) == 0 and count:
        pytest.skip("a GPU is present: the GPU tests exercise these calls for real")
    makers = (lambda: PinnedBuffer(cudart, 64), lambda: DeviceBuffer(cudart, 64), lambda: Stream(cudart), lambda: Event(cudart))
    for make in makers:
        with pytest.raises(ModelError, match=r"^CUDA error in cuda\w+: cuda\w+$"):
            make()
    stream = Stream.__new__(Stream)  # handles as cuda-python types, without a driver to create them
    stream._cudart, stream.handle, stream.ptr = cudart, cudart.cudaStream_t(0), 0
    event = Event.__new__(Event)
    event._cudart, event.handle = cudart, cudart.cudaEvent_t(0)
    calls = [
        lambda: stream.to_device(0, 0, 16), lambda: stream.to_host(0, 0, 16), stream.synchronize,
        lambda: event.record(stream), event.wait, lambda: Graph(cudart, cudart.cudaGraphExec_t(0)).launch(stream),
    ]
    for call in calls:
        with pytest.raises(ModelError, match="^CUDA error in "):
            call()
    assert isinstance(capture(cudart, stream, lambda: True), str)  # cannot begin: a reason, not an exception
    Graph(cudart, cudart.cudaGraphExec_t(0)).destroy()
    event.destroy()
    stream.destroy()


# --- on a GPU with TensorRT ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trt_gpu() -> None:
    reason = _gpu_missing()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def engines(trt_gpu: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtime_engines")


@pytest.fixture(scope="module")
def dynamic_engine(engines: Path, onnx_dynamic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Batch 1..4 from the batch-4 dynamic export: one profile each for batch 1, 2 and 4."""
    cache = timing_cache(tmp_path_factory)
    return build_engine(onnx_dynamic, engines / "dyn.engine", fp16=True, max_batch=4, workspace_gb=2, timing_cache=cache)


@pytest.fixture(scope="module")
def images(assets: Path) -> list[np.ndarray]:
    ims = [cv2.imread(str(assets / name)) for name in ("bus.jpg", "zidane.jpg")]
    if any(im is None for im in ims):
        pytest.fail("cannot read Ultralytics' sample images")
    return [im for im in ims if im is not None]


@pytest.fixture(scope="module")
def square(images: list[np.ndarray]) -> np.ndarray:
    """Four different square-letterboxed frames [4, 3, H, W]."""
    frames = images + [im[:, ::-1].copy() for im in images]
    pre = Preprocessor((IMGSZ, IMGSZ), 32, auto=False)
    return np.concatenate([pre([im]).tensor for im in frames])


@pytest.mark.tensorrt
def test_builds_one_profile_per_batch_and_matches_onnxruntime(
    dynamic_engine: Path, onnx_dynamic: Path, images: list[np.ndarray]
) -> None:
    assert json.loads(sidecar_path(dynamic_engine).read_text())["profiles"] == [1, 2, 4]
    engine, ort = TensorRTEngine(dynamic_engine), load_engine(onnx_dynamic, "cpu")
    try:
        assert [(p.min_batch, p.max_batch) for p in engine._profiles] == [(1, 1), (2, 2), (4, 4)]
        assert_close_outputs(raw_outputs(engine, images), raw_outputs(ort, images), box_px=2.0, score=0.05)
        found, total = kept(detect(ort, images), detect(engine, images), min_conf=0.35, min_iou=0.5)
        assert total > 0 and found >= 0.6 * total, f"{found}/{total} confident ONNX Runtime boxes found"
    finally:
        engine.close()


@pytest.mark.tensorrt
def test_batches_of_1_3_and_4_give_each_frame_its_own_result(dynamic_engine: Path, square: np.ndarray) -> None:
    engine = TensorRTEngine(dynamic_engine)
    try:
        single = np.concatenate([engine.infer(square[i : i + 1]) for i in range(4)])
        for n in (1, 3, 4, 3, 1):  # switching back and forth: each profile keeps its own context
            out = engine.infer(square[:n])
            assert out.shape == (n, 84, 2100)
            assert_close_outputs(out, single[:n], box_px=2.0, score=0.05)  # other profile, other kernels: fp16 noise
        assert choose_profile(3, engine._profiles)[1] == 4, "3 frames run on the batch-4 profile, padded"
        assert {k.profile for k in engine._slots} == {0, 2}
    finally:
        engine.close()


@pytest.mark.tensorrt
def test_cuda_graph_replay_gives_what_the_first_call_gave(dynamic_engine: Path, square: np.ndarray) -> None:
    engine, plain = TensorRTEngine(dynamic_engine), TensorRTEngine(dynamic_engine, cuda_graphs=False)
    try:
        x, y = square[:2], square[2:4]
        first = engine.infer(x)
        assert engine.graph_count == 0, "the first call of a shape runs as it is"
        captured = engine.infer(x)
        assert engine.graph_count == 1, "the second call captures a graph"
        replayed = engine.infer(x)
        np.testing.assert_allclose(captured, first, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(replayed, first, rtol=1e-5, atol=1e-4)
        # the graph reads the input buffer, not the data it was captured with
        np.testing.assert_allclose(engine.infer(y), plain.infer(y), rtol=1e-5, atol=1e-4)
        engine.infer(x[:1])  # another profile in between ...
        np.testing.assert_allclose(engine.infer(x), first, rtol=1e-5, atol=1e-4)  # ... and back to the graph
        assert engine.graph_count >= 1 and plain.graph_count == 0
    finally:
        engine.close()
        plain.close()
        engine.close()  # closing twice is harmless


@pytest.mark.tensorrt
def test_engine_from_another_tensorrt_is_refused_in_one_line(dynamic_engine: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.engine"
    shutil.copy(dynamic_engine, copy)
    side = {**read_sidecar(dynamic_engine), "tensorrt": "9.9.9", "weights": "yolo11n.pt"}
    sidecar_path(copy).write_text(json.dumps(side))
    with pytest.raises(ModelError) as exc:
        load_engine(copy, "tensorrt")
    msg = str(exc.value)
    assert "\n" not in msg and "built with TensorRT 9.9.9" in msg
    assert f"rebuild it here: edge-rt export --weights yolo11n.pt --format engine --output {copy}" in msg


@pytest.mark.tensorrt
def test_end_to_end_engine_returns_its_detections_only(engines: Path, onnx_e2e: Path, square: np.ndarray,
                                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    path = build_engine(onnx_e2e, engines / "e2e.engine", fp16=True, workspace_gb=2, timing_cache=timing_cache(tmp_path_factory))
    engine, ort = TensorRTEngine(path), load_engine(onnx_e2e, "cpu")
    try:
        assert engine.info.end2end and engine.max_batch == 1
        outs = [engine.infer(square[:1]) for _ in range(3)]  # plain, captured, replayed
        assert all(o.shape == (1, 300, 6) for o in outs) and engine.graph_count == 1
        np.testing.assert_allclose(outs[2], outs[1], rtol=1e-5, atol=1e-4)
        ref, ours = ort.infer(square[:1])[0], outs[0][0].astype(np.float32)
        sure = ref[ref[:, 4] > 0.4]
        assert len(sure), "the reference found nothing: the test would prove nothing"
        overlap = iou(sure[:, :4], ours[:, :4]) * (sure[:, 5:6] == ours[None, :, 5])  # same class, same place
        assert (overlap.max(1) > 0.9).mean() >= 0.9, "confident end-to-end boxes of ONNX Runtime missing in TensorRT's"
        with pytest.raises(ModelError, match="batch 2 is outside its optimisation profiles"):
            engine.infer(square[:2])
    finally:
        engine.close()


@pytest.mark.tensorrt
def test_graph_preprocess_engine_takes_camera_frames_and_a_plan(
    engines: Path, onnx_dynamic: Path, images: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> None:
    frames_onnx = add_graph_preprocess(onnx_dynamic, engines / "frames.onnx")
    path = build_engine(frames_onnx, engines / "frames.engine", fp16=True, max_batch=2, workspace_gb=2,
                        timing_cache=timing_cache(tmp_path_factory))
    side = read_sidecar(path)
    assert GRAPH_PREPROCESS_KEY in side and side["imgsz"] == [IMGSZ, IMGSZ] and side["profiles"] == [1, 2]
    engine, ort = TensorRTEngine(path), load_engine(frames_onnx, "cpu")
    try:
        assert engine.info.graph_preprocess and engine.info.plan_input == "letterbox"
        for frame in (images[0], images[1][:360, :640].copy()):  # two camera sizes: two shapes, two plans
            batch = np.stack([frame, frame[:, ::-1]])
            plan = np.array(letterbox_plan(frame.shape[:2], engine.info.imgsz, engine.info.stride, True), np.int64)
            outs = [engine.infer(batch, plan) for _ in range(3)]
            ref = ort.infer(batch, plan)
            assert outs[0].shape == ref.shape
            assert_close_outputs(outs[0].astype(np.float32), ref, box_px=2.0, score=0.05)
            np.testing.assert_allclose(outs[2], outs[0], rtol=1e-5, atol=1e-4)
        with pytest.raises(ModelError, match="pass the plan for input 'letterbox'"):
            engine.infer(batch)
    finally:
        engine.close()


# --- one activation buffer for every profile's context (an 8 GB Orin) -----------------------------------


class _FakeContext:
    def __init__(self, strategy: object) -> None:
        self.strategy, self.memory = strategy, None

    def set_device_memory(self, ptr: int, size: int) -> None:
        self.memory = (ptr, size)


class _FakeEngine:
    def __init__(self, profiles: int) -> None:
        self.num_optimization_profiles = profiles
        self.device_memory_size_v2 = 96 << 20  # the largest profile's activations

    def create_execution_context(self, strategy: object = "default") -> _FakeContext:
        return _FakeContext(strategy)


class _FakeBuffer:
    made: list[_FakeBuffer] = []

    def __init__(self, nbytes: int) -> None:
        self.ptr, self.nbytes, self.freed = 0x7000_0000 + 256 * len(self.made), nbytes, False
        self.made.append(self)

    def free(self) -> None:
        self.freed = True


def test_every_profile_context_draws_on_one_buffer_of_the_largest_size() -> None:
    """Before, each profile's context had its own activations (ON_PROFILE_CHANGE): ~1.9x one context for 1, 2, 4, 8."""
    from types import SimpleNamespace

    from edge_rt.engines.tensorrt_memory import SharedActivations

    trt = SimpleNamespace(ExecutionContextAllocationStrategy=SimpleNamespace(USER_MANAGED="user", ON_PROFILE_CHANGE="profile"))
    _FakeBuffer.made.clear()
    shared = SharedActivations(trt, _FakeEngine(4), _FakeBuffer)
    contexts = [shared.context() for _ in range(4)]
    assert len(_FakeBuffer.made) == 1 and _FakeBuffer.made[0].nbytes == 96 << 20
    assert {c.strategy for c in contexts} == {"user"}
    assert {c.memory for c in contexts} == {(_FakeBuffer.made[0].ptr, 96 << 20)}
    shared.free()
    assert _FakeBuffer.made[0].freed
    single = SharedActivations(trt, _FakeEngine(1), _FakeBuffer)  # one profile: TensorRT's own memory, nothing to share
    assert single.context().strategy == "default" and len(_FakeBuffer.made) == 1
