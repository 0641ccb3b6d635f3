"""ONNX Runtime's TensorRT provider without a GPU: the profile it is given covers every shape the run sends
(1, 8 and 16 sources, --imgsz 320 to 1280), the OPT/MAX swap of onnxruntime-gpu built against TensorRT
>= 10.11 (microsoft/onnxruntime#32415) is worked round or refused in one line, and the batch reaches the
device by a copy that has ended before the provider reads it. Real models and real CPU sessions; only the
provider's versions are stand-ins (no TensorRT here).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from edge_rt.detect.preprocess import plan_letterbox
from edge_rt.engines import load_engine
from edge_rt.engines.onnxruntime import (
    GraphFacts,
    InputCopy,
    OnnxRuntimeEngine,
    _Binding,
    check_active_provider,
    input_copy,
    provider_options,
)
from edge_rt.engines.ort_tensorrt import ProviderVersions, fallback_hint, read_versions
from edge_rt.engines.tensorrt_profiles import letterbox_plan
from edge_rt.errors import EngineError
from edge_rt.exporters.graph import add_graph_preprocess
from edge_rt.runner import planned_batch, resolve_batch
from tests.conftest import DEMO_DYNAMIC

TRT = "TensorrtExecutionProvider"
FRAMES = [(720, 1280), (1080, 1920), (2160, 3840), (480, 640), (1280, 720), (240, 320), (32, 32)]  # (h, w)
SIZES = range(320, 1281, 32)  # every --imgsz a dynamic stride-32 model takes from 320 to 1280
FIXED = ProviderVersions((1, 22, 0), (10, 9, 0), "package tensorrt")  # no swap
SWAPS = ProviderVersions((1, 23, 0), (10, 11, 0), "package tensorrt-cu12")
UNREAD = ProviderVersions((1, 23, 0), None, "")


@pytest.fixture(scope="module")
def framed_dynamic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model with the letterbox in its graph, inner size following the frame (dynamic)."""
    out = tmp_path_factory.mktemp("ort_trt") / "framed_dynamic.onnx"
    add_graph_preprocess(DEMO_DYNAMIC, out)
    return out


@pytest.fixture(scope="module")
def framed_static(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ort_trt") / "framed_static.onnx"
    add_graph_preprocess(DEMO_DYNAMIC.with_name("demo.onnx"), out)
    return out


def _facts(path: Path) -> GraphFacts:
    import onnxruntime as ort

    return OnnxRuntimeEngine._facts(ort, path)


def _profile(facts: GraphFacts, batch: int, imgsz: tuple[int, int] | None, versions: ProviderVersions | None, tmp: Path) -> dict[str, tuple[tuple[int, ...], ...]]:
    """{input: (min, opt, max)} of the TensorRT provider's options."""
    opts = dict(provider_options([TRT], facts, tmp, batch, imgsz, versions))[TRT]
    out: dict[str, list[tuple[int, ...]]] = {}
    for key in ("min", "opt", "max"):
        for entry in opts[f"trt_profile_{key}_shapes"].split(","):
            name, dims = entry.split(":")
            out.setdefault(name, []).append(tuple(int(v) for v in dims.split("x")))
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def _inside(shape: tuple[int, ...], lo: tuple[int, ...], hi: tuple[int, ...]) -> bool:
    return len(shape) == len(lo) == len(hi) and all(a <= v <= b for v, a, b in zip(shape, lo, hi))


@pytest.mark.parametrize("n_sources", [1, 8, 16])
def test_profile_covers_every_shape_a_plain_dynamic_model_is_sent(onnx_dynamic: Path, tmp_path: Path, n_sources: int) -> None:
    """16 cameras on a dynamic model exported at 320: batches 1..16 and letterboxed sizes up to --imgsz 1280."""
    facts = _facts(onnx_dynamic)
    info = facts.info
    assert info is not None and info.dynamic_shape and info.batch is None
    run_batch = resolve_batch(SimpleNamespace(info=info), None, n_sources)  # type: ignore[arg-type]
    for s in [None, *SIZES]:
        size = (s, s) if s else None
        target = size or info.imgsz
        (name, (lo, opt, hi)), = _profile(facts, planned_batch(None, n_sources), size, FIXED, tmp_path).items()
        assert name == info.input_name and _inside(opt, lo, hi)
        for b in range(1, run_batch + 1):
            sent = [(b, 3, *plan_letterbox(f, target, info.stride, auto=True)[1]) for f in FRAMES] + [(b, 3, *target)]
            outside = [x for x in sent if not _inside(x, lo, hi)]
            assert not outside, f"{n_sources} sources, --imgsz {s}: {outside[:2]} outside {lo}..{hi}"


@pytest.mark.parametrize("n_sources", [1, 8, 16])
@pytest.mark.parametrize("versions", [FIXED, SWAPS, UNREAD], ids=["trt10.9", "trt10.11", "unread"])
def test_profile_covers_every_frame_and_plan_a_letterbox_model_is_sent(
    framed_dynamic: Path, tmp_path: Path, n_sources: int, versions: ProviderVersions
) -> None:
    facts = _facts(framed_dynamic)
    info = facts.info
    assert info is not None and info.graph_preprocess and info.plan_input and info.dynamic_shape
    run_batch = resolve_batch(SimpleNamespace(info=info), None, n_sources)  # type: ignore[arg-type]
    for s in [None, *SIZES]:
        size = (s, s) if s else None
        target = size or info.imgsz
        profile = _profile(facts, planned_batch(None, n_sources), size, versions, tmp_path)
        (flo, fopt, fhi), (plo, popt, phi) = profile[info.input_name], profile[info.plan_input]
        assert _inside(fopt, flo, fhi) and _inside(popt, plo, phi)
        if versions.swaps_shape_opt_max is not False:
            assert popt == phi, "OPT = MAX: the same profile whichever way round the provider sets them"
        for b in range(1, run_batch + 1):
            sent = [((b, *f, 3), letterbox_plan(f, target, info.stride, True)) for f in FRAMES]
            sent.append(((b, *target, 3), (*target, 0, 0, 0, 0)))  # mixed sizes: letterboxed on the host, identity plan
            for frames, plan in sent:
                assert _inside(frames, flo, fhi), f"frames {frames} outside {flo}..{fhi}"
                assert _inside(tuple(plan), plo, phi), f"--imgsz {s}: plan {plan} outside {plo}..{phi}"


def test_profile_keeps_a_fixed_batch_and_an_nms_batch_whatever_the_sources(device_model: Path, tmp_path: Path) -> None:
    facts = _facts(device_model)  # in-graph NMS exported for batches up to 4
    frames = _profile(facts, planned_batch(None, 16), None, FIXED, tmp_path)["frames"]
    assert [p[0] for p in frames] == [1, 4, 4]


def test_versions_come_from_the_build_info_else_the_installed_tensorrt() -> None:
    built = SimpleNamespace(__version__="1.23.0", get_build_info=lambda: "ORT Build Info: ..., TensorRT version: 10.11.0")
    v = read_versions(built, dist=lambda names: ("tensorrt", "10.3.0"), library=lambda: None)
    assert (v.ort, v.tensorrt, v.tensorrt_from) == ((1, 23, 0), (10, 11, 0), "onnxruntime build info") and v.swaps_shape_opt_max
    plain = SimpleNamespace(__version__="1.22.0+cu126", get_build_info=lambda: "ORT Build Info: git-branch=rel-1.22.0")
    v = read_versions(plain, dist=lambda names: ("tensorrt-cu12", "10.9.0.34"), library=lambda: None)
    assert (v.tensorrt, v.tensorrt_from, v.swaps_shape_opt_max) == ((10, 9, 0, 34), "package tensorrt-cu12", False)
    v = read_versions(SimpleNamespace(__version__="1.31.1"), dist=lambda names: None, library=lambda: "11.4.0")
    assert (v.tensorrt_from, v.swaps_shape_opt_max) == ("libnvinfer", True)
    v = read_versions(SimpleNamespace(__version__="1.31.1"), dist=lambda names: None, library=lambda: None)
    assert v.tensorrt is None and v.swaps_shape_opt_max is None and "TensorRT unknown" in v.describe()


def test_a_swapping_provider_gets_a_profile_that_builds_or_one_line(framed_dynamic: Path, framed_static: Path, tmp_path: Path) -> None:
    """Dynamic inner size: OPT = MAX for the plan (valid either way round). Fixed inner size: no plan profile
    builds under the swap, so one line names the bug and the native engine; never a silent CUDA run."""
    dynamic = _profile(_facts(framed_dynamic), 8, None, FIXED, tmp_path)["letterbox"]
    assert dynamic[1] != dynamic[2], "without the swap the plan is tuned for a 16:9 camera"
    static = _facts(framed_static)
    written = _profile(static, 1, None, FIXED, tmp_path)["letterbox"]
    assert written[1] != written[2]
    with pytest.raises(EngineError) as exc:
        provider_options([TRT], static, tmp_path, 1, None, SWAPS)
    line = str(exc.value)
    assert "\n" not in line and "microsoft/onnxruntime#32415" in line and "--target trt-fp16" in line
    assert "onnxruntime 1.23.0 with TensorRT 10.11.0 (package tensorrt-cu12)" in line
    assert _profile(static, 1, None, UNREAD, tmp_path)["letterbox"] == written, "unread: as written, and a fallback names the bug"
    trt = [TRT, "CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(EngineError, match=r"fell back to CUDAExecutionProvider.*#32415.*trt-fp16"):
        check_active_provider("tensorrt", trt, trt[1:], "m.onnx", fallback_hint(UNREAD, has_plan=True))
    assert fallback_hint(FIXED, has_plan=True) == "" and fallback_hint(SWAPS, has_plan=False) == ""


# --- how the batch reaches the device -----------------------------------------------------------


def test_each_provider_gets_a_copy_that_has_landed_before_it_reads() -> None:
    """synchronize_inputs calls the providers' Sync(): cudaDeviceSynchronize on CUDA, nothing on TensorRT."""
    assert input_copy("CUDAExecutionProvider") is InputCopy.DEVICE_BUFFER
    assert input_copy(TRT) is InputCopy.HOST_ARRAY
    assert input_copy("CPUExecutionProvider") is InputCopy.DEVICE_BUFFER  # CI's form of the CUDA path


def test_tensorrt_provider_runs_without_cuda_graphs_its_host_inputs_would_not_follow(tmp_path: Path) -> None:
    fixed = GraphFacts(True, False, "images", (1, 3, 640, 640))
    assert fixed.cuda_graph
    opts = dict(provider_options([TRT, "CUDAExecutionProvider"], fixed, tmp_path, 1))
    assert opts[TRT]["trt_cuda_graph_enable"] == "False"
    assert opts["CUDAExecutionProvider"]["enable_cuda_graph"] == "0"
    assert dict(provider_options(["CUDAExecutionProvider"], fixed, tmp_path, 1))["CUDAExecutionProvider"]["enable_cuda_graph"] == "1"


class _Recorder:
    """The real IOBinding, with the names of the calls made on it."""

    def __init__(self, binding: Any, calls: list[str]) -> None:
        self.binding, self._calls = binding, calls

    def __getattr__(self, name: str) -> Any:
        self._calls.append(name)
        return getattr(self.binding, name)


class _Session:
    def __init__(self, session: Any, calls: list[str]) -> None:
        self._session, self._calls = session, calls

    def io_binding(self) -> _Recorder:
        return _Recorder(self._session.io_binding(), self._calls)

    def run_with_iobinding(self, binding: _Recorder, options: Any) -> None:
        self._session.run_with_iobinding(binding.binding, options)


@pytest.mark.parametrize(
    "copy, made, not_made",
    [
        (InputCopy.HOST_ARRAY, {"bind_cpu_input"}, {"bind_ortvalue_input", "synchronize_inputs"}),
        (InputCopy.DEVICE_BUFFER, {"bind_ortvalue_input", "synchronize_inputs"}, {"bind_cpu_input"}),
    ],
)
def test_bind_calls_per_copy_and_every_call_sees_its_own_batch(
    onnx_dynamic: Path, copy: InputCopy, made: set[str], not_made: set[str]
) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_dynamic), providers=["CPUExecutionProvider"])
    inp, out = session.get_inputs()[0], session.get_outputs()[0]
    calls: list[str] = []
    binding = _Binding(ort, _Session(session, calls), "cpu", out.name, None, "float32", cuda_graph=True, copy=copy)
    rng = np.random.default_rng(0)
    for _ in range(2):  # the same shape twice: the second call must not read the first batch
        x = rng.random((2, 3, 64, 96), dtype=np.float32)
        np.testing.assert_allclose(binding.run(inp.name, x, None, None), session.run([out.name], {inp.name: x})[0], rtol=1e-5, atol=1e-4)
    assert made <= set(calls) and not (not_made & set(calls)), calls


def test_load_engine_takes_the_runs_batch_and_imgsz_by_keyword(onnx_dynamic: Path) -> None:
    engine = load_engine(onnx_dynamic, "cpu", max_batch=16, imgsz=1280)
    assert engine.infer(np.zeros((16, 3, 64, 64), np.float32)).shape[0] == 16
    assert planned_batch(None, 16) == 16 and planned_batch(4, 16) == 4 and planned_batch(None, 0) == 1
