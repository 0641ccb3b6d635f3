"""Export round trips: .pt -> ONNX (fp32, fp16, dynamic, INT8) -> reload -> the same detections."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_rt.detect.postprocess import Detections, PostprocessSettings
from edge_rt.engines import load_engine
from edge_rt.errors import ConfigError
from edge_rt.exporters import ExportOptions, export, resolve_options
from edge_rt.exporters.int8 import float_nodes, head_layer_index
from edge_rt.exporters.verify import compare, match, runtime_detector
from tests.helpers import assert_clean_failure, run_cli

ROOT = Path(__file__).resolve().parents[2]
DEMO_PT = ROOT / "models" / "demo" / "demo.pt"

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[np.ndarray]]:
    """Calibration and held-out frames from two different synthetic datasets (different seeds)."""
    from edge_rt.exporters.calibration import load_frames
    from edge_rt.training.synth import synth_dataset

    root = tmp_path_factory.mktemp("frames")
    cal = synth_dataset(root / "cal", images=64, imgsz=320, seed=101).parent
    held = synth_dataset(root / "held", images=60, imgsz=320, seed=202).parent
    return {"cal_dir": [cal / "images"], "cal": load_frames(cal / "images", 64), "held": load_frames(held / "images", 60)}  # type: ignore[dict-item]


def test_fp32_onnx_matches_the_weights_and_ultralytics_reads_it(tmp_path: Path, frames: dict) -> None:
    out = tmp_path / "demo.onnx"
    result = export(DEMO_PT, out, ExportOptions(imgsz=320).check(), verify_frames=frames["held"], min_match=0.99)
    assert result.parity is not None and result.parity.reference_boxes > 50
    assert result.parity.match_rate >= 0.99 and result.parity.max_conf_diff < 0.02
    engine = load_engine(out, "cpu")
    assert engine.info.names == {0: "circle", 1: "square", 2: "triangle", 3: "cross"}
    from ultralytics import YOLO

    assert YOLO(str(out), task="detect").names == engine.info.names  # Ultralytics loads it, with the names


def test_dynamic_and_fp16_exports_keep_parity(tmp_path: Path, frames: dict) -> None:
    dyn = export(DEMO_PT, tmp_path / "d.onnx", ExportOptions(imgsz=320, dynamic=True, max_batch=4).check(), verify_frames=frames["held"])
    info = load_engine(dyn.path, "cpu").info
    assert info.batch is None and info.dynamic_shape
    half = export(DEMO_PT, tmp_path / "h.onnx", ExportOptions(imgsz=320, precision="fp16").check(), verify_frames=frames["held"])
    assert dyn.parity and dyn.parity.match_rate >= 0.95
    assert half.parity and half.parity.match_rate >= 0.95
    assert half.path.stat().st_size < 0.7 * dyn.path.stat().st_size, "fp16 weights are half the size"


def test_int8_keeps_the_float_detections(tmp_path: Path, frames: dict) -> None:
    fp32 = export(DEMO_PT, tmp_path / "f.onnx", ExportOptions(imgsz=320).check()).path
    cal = Path(frames["cal_dir"][0])
    int8 = export(DEMO_PT, tmp_path / "q.onnx", ExportOptions(imgsz=320, precision="int8").check(), calibration=cal).path
    settings = PostprocessSettings()
    report = compare(runtime_detector(fp32, settings), runtime_detector(int8, settings), frames["held"])
    assert report.reference_boxes > 50
    assert report.match_rate >= 0.95, report.summary()
    model = onnx.load(str(int8))
    ops = {n.op_type for n in model.graph.node}
    assert "QuantizeLinear" in ops, "it really is quantized"
    head = head_layer_index([n.name for n in model.graph.node])
    head_quantized = [n.name for n in model.graph.node if n.op_type == "QuantizeLinear" and n.name.startswith(f"/model.{head}/")]
    # INT8 in the head: the box branch's inner convs, and the class branch's at strides 16 and 32;
    # the class branch at stride 8, the output convs and DFL stay float
    int8_ok = rf"/model\.{head}/(cv2\.\d/cv2\.\d\.[01]|cv3\.[12]/cv3\.[12]\.[01])/"
    unexpected = [n for n in head_quantized if not re.match(int8_ok, n)]
    assert head_quantized and not unexpected, f"the stride-8 class branch and head outputs must stay float: {unexpected[:3]}"
    assert any("/cv3.1/" in n for n in head_quantized), "the coarse class branch is INT8"


def test_float_part_is_the_stem_the_head_and_what_feeds_it() -> None:
    class N:
        def __init__(self, name: str, op: str, inputs: list[str], outputs: list[str]) -> None:
            self.name, self.op_type, self.input, self.output = name, op, inputs, outputs

    nodes = [
        N("/model.0/conv/Conv", "Conv", ["images"], ["a"]),
        N("/model.0/act/Mul", "Mul", ["a"], ["b"]),
        N("/model.1/conv/Conv", "Conv", ["b"], ["c"]),
        N("/model.2/conv/Conv", "Conv", ["c"], ["d"]),
        N("/model.3/cv1/Conv", "Conv", ["d"], ["e"]),
        N("/model.4/cv3.0/Conv", "Conv", ["e", "c"], ["f"]),  # the head reads layers 3 and 1
        N("/Sigmoid", "Sigmoid", ["f"], ["out"]),
    ]
    assert head_layer_index([n.name for n in nodes]) == 4
    assert float_nodes(nodes) == ["/model.0/conv/Conv", "/model.1/conv/Conv", "/model.3/cv1/Conv", "/model.4/cv3.0/Conv", "/Sigmoid"]


def test_match_rate_counts_misses_and_extras() -> None:
    ref = Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.array([0.9, 0.8], np.float32), np.array([0, 1]))
    same_but_class = Detections(ref.xyxy.copy(), ref.conf, np.array([0, 2]))
    assert match(ref, ref) == [(0, 0), (1, 1)]
    assert match(ref, same_but_class) == [(0, 0)]
    report = compare(lambda f: ref, lambda f: same_but_class, [np.zeros((1, 1, 3), np.uint8)])
    assert report.match_rate == 0.5


@pytest.mark.parametrize(
    "target,overrides,expected",
    [
        ("cpu-int8", {}, ExportOptions(format="onnx", precision="int8", imgsz=640, dynamic=False, max_batch=1, calibration_frames=64)),
        ("trt-fp16", {"imgsz": 320, "max_batch": 2, "opt_batch": 2}, None),
        (None, {"precision": "fp16", "dynamic": True}, ExportOptions(precision="fp16", dynamic=True)),
    ],
)
def test_profiles_and_flag_overrides(target: str | None, overrides: dict, expected: ExportOptions | None) -> None:
    options = resolve_options(target, overrides)
    if expected is not None:
        assert (options.format, options.precision, options.imgsz, options.dynamic, options.max_batch) == (
            expected.format, expected.precision, expected.imgsz, expected.dynamic, expected.max_batch)
    else:
        assert (options.format, options.precision, options.imgsz, options.max_batch, options.min_batch) == ("engine", "fp16", 320, 2, 1)


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--target", "nope"], "no such profile (available: cpu-fp32, cpu-int8"),
        (["--int8"], "INT8 needs calibration data"),
        (["--imgsz", "100"], "multiple of 32"),
        (["--int8", "--dynamic", "--calibration", "x"], "drop --dynamic"),
        (["--verify"], "--verify needs frames"),
    ],
)
def test_export_mistakes_are_one_line(args: list[str], expected: str) -> None:
    assert_clean_failure(run_cli("export", "--weights", str(DEMO_PT), *args), expected)


def test_export_missing_weights_is_one_line(tmp_path: Path) -> None:
    assert_clean_failure(run_cli("export", "--weights", str(tmp_path / "none.pt")), "no such file")


def test_engine_format_without_tensorrt_says_so(tmp_path: Path) -> None:
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    proc = run_cli("export", "--weights", str(DEMO_PT), "--format", "engine", "--imgsz", "320", "--output", str(tmp_path / "m.engine"), timeout=120)
    assert_clean_failure(proc, "TensorRT is not installed")


def test_bad_option_values_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="batch range"):
        ExportOptions(min_batch=4, max_batch=2).check()
