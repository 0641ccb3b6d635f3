"""INT8 that a real model can use (issue 10): rectangular static inputs, calibration memory that does
not grow with the frame count, and failures that never look like a finished export."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_rt.detect.postprocess import PostprocessSettings
from edge_rt.engines import load_engine
from edge_rt.errors import ConfigError
from edge_rt.exporters import ExportOptions, export, parse_imgsz, resolve_options
from edge_rt.exporters.verify import compare, runtime_detector, ultralytics_detector
from tests.helpers import assert_clean_failure, env, run_cli, start_cli

ROOT = Path(__file__).resolve().parents[2]
DEMO_PT = ROOT / "models" / "demo" / "demo.pt"
RECT = (192, 320)  # what a 16:9 frame letterboxes to at 320: the small twin of 384x640

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16:9 calibration frames: the clip the demo model's shapes drift in, one image per frame."""
    from edge_rt.training.synth_video import iter_clip

    folder = tmp_path_factory.mktemp("cal16x9")
    for i, (im, _) in enumerate(iter_clip(frames=32, size=(640, 360), seed=11)):
        cv2.imwrite(str(folder / f"{i:03d}.png"), im)
    return folder


@pytest.mark.parametrize(
    "value,expected",
    [(640, 640), ("640", 640), ("384x640", (384, 640)), ("384X640", (384, 640)), ([384, 640], (384, 640)), ([320, 320], 320),
     ("wide", ConfigError), ("384x640x3", ConfigError), (True, ConfigError)],
)
def test_imgsz_takes_one_size_or_height_by_width(value: object, expected: object) -> None:
    if expected is ConfigError:
        with pytest.raises(ConfigError, match="height x width"):
            parse_imgsz(value)
    else:
        assert parse_imgsz(value) == expected


def test_rectangular_imgsz_from_flags_and_profiles(tmp_path: Path) -> None:
    assert resolve_options("cpu-int8", {"imgsz": "384x640"}).hw == (384, 640)
    profile = tmp_path / "wide.yaml"
    profile.write_text("format: onnx\nprecision: int8\nimgsz: 384x640\n")
    assert resolve_options(str(profile), {}).imgsz == (384, 640)
    profile.write_text("imgsz: [384, 640]\n")
    assert resolve_options(str(profile), {}).hw == (384, 640)
    with pytest.raises(ConfigError, match="multiple of 32"):
        resolve_options(None, {"imgsz": "360x640"})


def test_rectangular_static_export_matches_ultralytics(tmp_path: Path, hd_frames: list[np.ndarray], cal_dir: Path) -> None:
    """A static 192x320 export letterboxes 1280x720 frames exactly as Ultralytics predicts on the .pt at 320
    (its `auto` letterbox gives the same 192x320) and as Ultralytics predicts on the export itself."""
    proc = run_cli("export", "--weights", str(DEMO_PT), "--imgsz", "192x320", "--output", str(tmp_path / "rect.onnx"),
                   "--verify", "--verify-source", str(cal_dir), "--verify-frames", "8", timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "imgsz 192x320" in proc.stdout and "parity: 8 frames" in proc.stdout
    model = tmp_path / "rect.onnx"
    info = load_engine(model, "cpu").info
    assert info.imgsz == RECT and not info.dynamic_shape
    frames = hd_frames[::8]
    settings = PostprocessSettings()
    ours = runtime_detector(model, settings)
    on_pt = compare(ultralytics_detector(DEMO_PT, 320, settings), ours, frames)
    on_onnx = compare(ultralytics_detector(model, RECT, settings), ours, frames)
    assert on_pt.reference_boxes > 30
    assert on_pt.match_rate >= 0.97, on_pt.summary()
    assert on_onnx.match_rate >= 0.99 and on_onnx.max_conf_diff < 0.01, on_onnx.summary()


def test_rectangular_int8_export_end_to_end(tmp_path: Path, cal_dir: Path, hd_frames: list[np.ndarray]) -> None:
    out = tmp_path / "rect_int8.onnx"
    result = export(
        DEMO_PT, out, ExportOptions(precision="int8", imgsz=RECT, calibration_frames=16).check(), calibration=cal_dir,
        verify_frames=hd_frames[::8], min_match=0.9,
    )
    engine = load_engine(out, "cpu")
    assert engine.info.imgsz == RECT
    import onnx

    model = onnx.load(str(out))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["edge_rt_precision"] == "int8" and "'frames': 16" in meta["edge_rt_int8"]
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    dfl_softmax = [n for n in model.graph.node if n.op_type == "Softmax" and "/dfl/" in n.name]
    assert [a.i for n in dfl_softmax for a in n.attribute if a.name == "axis"] == [-1], "DFL softmax over the last axis"
    assert result.parity is not None and result.parity.reference_boxes > 30


def test_last_axis_dfl_gives_the_same_outputs(onnx_static: Path, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    from edge_rt.exporters.dfl import last_axis_dfl

    model = onnx.load(str(onnx_static))
    assert last_axis_dfl(model)
    assert not last_axis_dfl(model), "a rewritten graph has no axis-1 DFL softmax left"
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp_path / "dfl.onnx"))
    ops = [n.op_type for n in model.graph.node if "/dfl/" in n.name]
    assert "MatMul" in ops and "Conv" not in ops
    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    before, after = (
        ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
        for f in (onnx_static, tmp_path / "dfl.onnx")
    )
    assert before.shape == after.shape
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-4)


_PEAK = """
import json, resource, sys, tempfile
from pathlib import Path
from edge_rt.exporters.calibration import CalibrationFrames
from edge_rt.exporters.int8 import Int8Quantizer
model, folder, count, method = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
frames = CalibrationFrames(folder, count).checked(1)
with tempfile.TemporaryDirectory() as tmp:
    q = Int8Quantizer(model, Path(tmp))
    q.calibrate(frames, method)
    print(json.dumps({"peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "frames": q.frames_seen}))
"""


def _activation_bytes(model: Path, frame: np.ndarray) -> int:
    """What one frame's intermediate tensors weigh: what the old calibration kept per frame."""
    import tempfile

    from edge_rt.exporters.int8_calibrate import ActivationRanges

    with tempfile.TemporaryDirectory() as tmp:
        r = ActivationRanges(model, Path(tmp), (640, 640), 32, 1)
        return sum(x.nbytes for out in r._outputs([frame], "one frame") for x in out.values())


@pytest.fixture(scope="module")
def demo640(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model at 640, so one frame's activations are clearly visible (exported once for both methods)."""
    from edge_rt.exporters.onnx import export_onnx

    return export_onnx(DEMO_PT, tmp_path_factory.mktemp("demo640") / "demo640.onnx", 640)


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_calibration_peak_memory_does_not_grow_with_frames(method: str, demo640: Path, cal_dir: Path) -> None:
    """4 and 16 frames peak within a few frames' activations of each other; keeping every frame's
    activations (what ONNX Runtime's histogram calibrators do) would add 12 frames' worth."""
    model = demo640
    per_frame = _activation_bytes(model, cv2.imread(str(sorted(cal_dir.iterdir())[0])))
    peaks = {}
    for count in (4, 16):
        proc = subprocess.run([sys.executable, "-c", _PEAK, str(model), str(cal_dir), str(count), method], capture_output=True, text=True,
                              env=env(), timeout=240)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["frames"] == count
        peaks[count] = out["peak_kb"] * 1024
    growth = peaks[16] - peaks[4]
    assert per_frame > 20e6, f"one frame's activations ({per_frame / 1e6:.0f} MB) too small to tell"
    assert growth < 3 * per_frame, f"peak grew {growth / 1e6:.0f} MB from 4 to 16 frames; one frame is {per_frame / 1e6:.0f} MB"


def test_too_few_usable_calibration_frames_is_one_line(tmp_path: Path, cal_dir: Path) -> None:
    folder = tmp_path / "few"
    folder.mkdir()
    for i, src in enumerate(sorted(cal_dir.iterdir())[:3]):
        (folder / f"{i}.png").write_bytes(src.read_bytes())
    for i in range(4):
        cv2.imwrite(str(folder / f"black{i}.png"), np.zeros((360, 640, 3), np.uint8))
    proc = run_cli("export", "--weights", str(DEMO_PT), "--int8", "--imgsz", "320", "--calibration", str(folder),
                   "--output", str(tmp_path / "q.onnx"), timeout=120)
    assert_clean_failure(proc, "only 3 usable frames of 7 read (4 blank); INT8 needs at least 8")
    assert not (tmp_path / "q.onnx").exists()


def test_killed_export_leaves_nothing_at_the_output(tmp_path: Path, cal_dir: Path) -> None:
    """A previous file at --output goes first; a kill before the end leaves no file there that looks like the export."""
    out = tmp_path / "q.onnx"
    out.write_bytes(b"an older export")
    proc = start_cli("export", "--weights", str(DEMO_PT), "--int8", "--imgsz", "320", "--calibration", str(cal_dir), "--output", str(out))
    try:
        deadline = time.monotonic() + 120
        while out.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the export ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()
    assert not any(p.suffix == ".onnx" for p in tmp_path.iterdir())


def test_out_of_memory_is_one_clear_error(tmp_path: Path, cal_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_rt.exporters import int8_calibrate

    def no_memory(self: object, frames: object) -> None:
        raise MemoryError

    monkeypatch.setattr(int8_calibrate.ActivationRanges, "collect_ranges", no_memory)
    out = tmp_path / "q.onnx"
    with pytest.raises(int8_calibrate.CalibrationOutOfMemory, match="ran out of memory; nothing was written") as err:
        export(DEMO_PT, out, ExportOptions(precision="int8", imgsz=320).check(), calibration=cal_dir)
    assert err.value.exit_code != 0
    assert not out.exists() and not list(tmp_path.iterdir())


def test_engine_rebuild_command_keeps_a_static_rectangle(tmp_path: Path) -> None:
    from edge_rt.engines.tensorrt_sidecar import rebuild_command

    side = {"weights": "best.pt", "imgsz": [384, 640], "precision": "int8", "dynamic": False}
    assert "--imgsz 384x640 --int8" in rebuild_command(side, tmp_path / "m.engine")
    assert "--imgsz 640 " in rebuild_command({**side, "dynamic": True}, tmp_path / "m.engine")


def test_keep_float_choices() -> None:
    from edge_rt.exporters.int8 import float_nodes

    class N:
        def __init__(self, name: str, op: str, inputs: list[str], outputs: list[str]) -> None:
            self.name, self.op_type, self.input, self.output = name, op, inputs, outputs

    nodes = [
        N("/model.0/conv/Conv", "Conv", ["images"], ["a"]),
        N("/model.1/conv/Conv", "Conv", ["a"], ["b"]),
        N("/model.2/cv1/conv/Conv", "Conv", ["b"], ["c"]),
        N("/model.3/cv2.0/cv2.0.0/conv/Conv", "Conv", ["c"], ["d"]),
        N("/model.3/cv2.0/cv2.0.1/conv/Conv", "Conv", ["d"], ["e"]),
        N("/model.3/cv2.0/cv2.0.2/Conv", "Conv", ["e"], ["f"]),
        N("/model.3/cv3.0/cv3.0.0/conv/Conv", "Conv", ["c"], ["h"]),
        N("/model.3/cv3.0/cv3.0.1/conv/Conv", "Conv", ["h"], ["i"]),
        N("/model.3/cv3.0/cv3.0.2/Conv", "Conv", ["i"], ["j"]),
        N("/model.3/dfl/conv/Conv", "Conv", ["f"], ["g"]),
        N("/Sigmoid", "Sigmoid", ["j"], ["out"]),
    ]
    box = ["/model.3/cv2.0/cv2.0.0/conv/Conv", "/model.3/cv2.0/cv2.0.1/conv/Conv"]
    cls = ["/model.3/cv3.0/cv3.0.0/conv/Conv", "/model.3/cv3.0/cv3.0.1/conv/Conv"]
    outputs = ["/model.3/cv2.0/cv2.0.2/Conv", "/model.3/cv3.0/cv3.0.2/Conv", "/model.3/dfl/conv/Conv", "/Sigmoid"]
    head = [n.name for n in nodes if n.name.startswith("/model.3/") or n.name == "/Sigmoid"]
    stem = "/model.0/conv/Conv"
    assert float_nodes(nodes, "head") == head
    assert float_nodes(nodes, "head+feeders") == [stem, "/model.2/cv1/conv/Conv", *head]
    assert sorted(float_nodes(nodes, "head-outputs")) == sorted([stem, *outputs])
    assert sorted(float_nodes(nodes, "head-cls")) == sorted([stem, *cls, *outputs])
    assert sorted(float_nodes(nodes, "head-cls1")) == sorted([stem, cls[1], *outputs])
    coarse = N("/model.3/cv3.1/cv3.1.0/conv/Conv", "Conv", ["c"], ["k"])
    assert coarse.name not in float_nodes([*nodes, coarse], "head-cls-p3"), "strides 16, 32: the class branch is INT8"
    assert set(cls) <= set(float_nodes([*nodes, coarse], "head-cls-p3")), "stride 8: the class branch stays float"
    assert sorted(float_nodes(nodes, "head-cls", float_stem=False)) == sorted([*cls, *outputs])
    assert not set(box) & set(float_nodes(nodes, "head-cls1")), "the box branch's inner convs are INT8"
