"""The OpenVINO backend and export (issue 26) against real OpenVINO and NNCF on this CPU: boxes as ONNX
Runtime's and Ultralytics' own, requests overlapped without loss or hang, bad input as one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_rt.client import Subscriber
from edge_rt.detect.postprocess import PostprocessSettings
from edge_rt.engines import load_engine
from edge_rt.engines.openvino import export_record
from edge_rt.errors import ConfigError, ModelError
from edge_rt.exporters.verify import compare, runtime_detector
from tests.conftest import DEMO_DYNAMIC, DEMO_PT, write_clip
from tests.helpers import assert_clean_failure, collect, detections_of, run_cli, start_cli

pytest.importorskip("openvino", reason="the openvino extra is not installed: pip install 'edge_rt[openvino]'")

pytestmark = pytest.mark.timeout(300)
DEMO_STATIC = DEMO_PT.with_name("demo.onnx")
ASSETS = Path(__import__("ultralytics").__file__).parent / "assets"  # real photographs Ultralytics ships


def _shapes(count: int, seed: int, size: tuple[int, int] = (480, 270)) -> list[np.ndarray]:
    from edge_rt.training.synth import render_scene

    rng = np.random.default_rng(seed)
    return [render_scene(rng, size)[0] for _ in range(count)]


@pytest.fixture(scope="module")
def ir_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("openvino")


@pytest.fixture(scope="module")
def ir_fp32(ir_dir: Path) -> Path:
    from edge_rt.exporters.openvino import export_openvino

    return export_openvino(DEMO_DYNAMIC, ir_dir / "demo_fp32.xml", "fp32", None, 0)


@pytest.fixture(scope="module")
def ir_int8(ir_dir: Path) -> Path:
    """Calibrated on frames of a clip like those it is checked on (as a user calibrates on their camera)."""
    from edge_rt.exporters.openvino import export_openvino
    from edge_rt.training.synth_video import iter_clip

    frames = [im for im, _ in iter_clip(frames=48, size=(640, 360), seed=11)]
    return export_openvino(DEMO_STATIC, ir_dir / "demo_int8.xml", "int8", frames, 48)


def test_fp32_ir_boxes_match_onnx_runtime_on_the_same_model(ir_fp32: Path) -> None:
    """Same weights, two runtimes: >= 97% of boxes at IoU 0.9, on shapes and on real photographs (other aspect ratios)."""
    frames = _shapes(30, seed=21) + [cv2.imread(str(p)) for p in sorted(ASSETS.glob("*.jpg"))]
    settings = PostprocessSettings(conf=0.25)
    report = compare(runtime_detector(DEMO_DYNAMIC, settings, "cpu"), runtime_detector(ir_fp32, settings, "openvino"), frames, iou=0.9)
    assert report.reference_boxes >= 30, report.summary()
    assert report.found >= 0.97 and report.extra <= 0.03, report.summary()


def test_ir_carries_its_metadata_and_takes_uint8_frames(ir_fp32: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_RT_CACHE", str(tmp_path / "cache"))
    engine = load_engine(ir_fp32, "openvino")
    assert any((tmp_path / "cache" / "openvino").iterdir()), "compiled model cached: an Intel GPU compiles once, not per start"
    try:
        assert engine.info.names == {0: "circle", 1: "square", 2: "triangle", 3: "cross"}
        assert engine.info.dynamic_shape and engine.info.stride == 32
        assert (engine.info.input_dtype, engine.info.input_layout) == ("uint8", "nhwc")  # OpenVINO converts, not the host
        assert engine.device == "openvino:CPU"
        out = engine.infer(np.full((2, 192, 320, 3), 114, np.uint8))
        assert out.shape == (2, 8, 1260)
    finally:
        engine.close()


def test_int8_ir_keeps_the_float_boxes(ir_int8: Path, hd_frames: list[np.ndarray]) -> None:
    settings = PostprocessSettings(conf=0.25)
    report = compare(runtime_detector(DEMO_STATIC, settings, "cpu"), runtime_detector(ir_int8, settings, "openvino"), hd_frames[::2])
    assert report.reference_boxes >= 200, report.summary()
    assert report.found >= 0.95, report.summary()
    assert report.extra <= 0.06, report.summary()
    import openvino as ov

    model = ov.Core().read_model(str(ir_int8))
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ops()), "no INT8 in the IR"
    record = export_record(model)
    assert str(record["quantizer"]).startswith("nncf") and record["inference_precision"] == "f32", record
    # the head's inner convs are INT8; what feeds DFL and the class scores stays float
    quantized = {op.get_friendly_name().split("/fq_")[0] for op in model.get_ops() if op.get_type_name() == "FakeQuantize"}
    assert any(name.startswith("/model.23/cv2.0/cv2.0.0/") for name in quantized), sorted(quantized)
    assert not any(name.startswith(("/model.23/dfl", "/model.23/Sigmoid")) for name in quantized), sorted(quantized)
    engine = load_engine(ir_int8, "openvino")
    assert engine.precision == "f32"  # as verified: a CPU with BF16 would take bf16 by default
    # Asked for bf16, a CPU with AVX-512 BF16 or AMX gives it; one without (this box's AMD EPYC: FP32, INT8) stays f32.
    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert load_engine(ir_int8, "openvino", precision="bf16").precision == ("bf16" if "BF16" in caps else "f32"), caps


def test_run_on_an_ir_with_requests_in_flight_publishes_every_frame_in_order(ir_fp32: Path, tmp_path: Path) -> None:
    """`run --model X.xml` end to end, throughput hint: two requests overlap, yet every frame comes out once, in
    order, with the boxes the one-request latency hint gives."""
    clip = write_clip(tmp_path / "clip.mp4", frames=24)
    boxes = {}
    for hint in ("throughput", "latency"):
        endpoint = f"ipc://{tmp_path}/{hint}.sock"
        with Subscriber(endpoint) as sub:
            proc = start_cli("run", "-m", str(ir_fp32), "-s", str(clip), "--publish", endpoint, "--await-subscribers", "1", "--engine-hint", hint)
            try:
                messages = detections_of(collect(sub, ["cam0"], timeout=120)["cam0"])
                _, err = proc.communicate(timeout=60)
            finally:
                proc.kill()
        assert proc.returncode == 0, err
        assert [m.frame_index for m in messages] == list(range(24)), err
        assert [m.seq for m in messages] == list(range(24))
        assert f"{hint} hint, {2 if hint == 'throughput' else 1} request(s) in flight" in err, err
        boxes[hint] = [[(d.cls, *np.round(d.box, 1)) for d in m.detections] for m in messages]
    assert boxes["throughput"] == boxes["latency"]


@pytest.fixture(scope="module")
def ultralytics_ir(ir_dir: Path) -> Path:
    """Ultralytics' own OpenVINO export of the demo weights: the folder a user gets from `yolo export format=openvino`."""
    from ultralytics import YOLO

    pt = ir_dir / "demo.pt"
    shutil.copy2(DEMO_PT, pt)
    return Path(YOLO(str(pt)).export(format="openvino", imgsz=320, dynamic=False, verbose=False))


def test_ultralytics_own_openvino_export_loads_and_matches_its_predict(ultralytics_ir: Path) -> None:
    """The folder `YOLO.export(format="openvino")` writes (metadata.yaml beside the IR) runs as it is, and gives
    Ultralytics' own boxes on its own export."""
    from ultralytics import YOLO

    folder = ultralytics_ir
    frames = _shapes(12, seed=44, size=(320, 320))
    reference = YOLO(str(folder), task="detect")
    ours = runtime_detector(folder, PostprocessSettings(conf=0.25), "openvino")
    found = total = 0
    from edge_rt.detect.postprocess import Detections
    from edge_rt.exporters.verify import match

    for frame in frames:
        b = reference.predict(frame, imgsz=320, verbose=False, conf=0.25)[0].boxes
        ref = Detections(b.xyxy.numpy().astype(np.float32), b.conf.numpy().astype(np.float32), b.cls.numpy().astype(np.int64))
        mine = ours(frame)
        total += max(len(ref), len(mine))
        found += len(match(ref, mine, 0.9))
    assert total >= 12 and found / total >= 0.97, (found, total)


def test_bad_openvino_input_is_one_line(ir_fp32: Path, tmp_path: Path) -> None:
    lonely = tmp_path / "lonely.xml"
    shutil.copy2(ir_fp32, lonely)  # no .bin beside it
    proc = run_cli("run", "-m", str(lonely), "-s", "synthetic://320x180", "--device", "openvino")
    assert_clean_failure(proc, "its weights 'lonely.bin' are missing")
    assert proc.returncode == 4
    proc = run_cli("run", "-m", str(ir_fp32), "-s", "synthetic://320x180", "--device", "openvino:GPU")
    assert_clean_failure(proc, "OpenVINO finds no GPU here (devices: CPU)")
    assert proc.returncode == 2
    proc = run_cli("run", "-m", str(ir_fp32), "-s", "synthetic://320x180", "--device", "cuda")
    assert_clean_failure(proc, "is an OpenVINO model")
    proc = run_cli("run", "-m", str(ir_fp32), "-s", "synthetic://320x180", "--device", "openvino-gpu")
    assert_clean_failure(proc, "choose one of")


def test_an_ir_that_is_no_detector_is_refused(tmp_path: Path) -> None:
    import openvino as ov

    from edge_rt.doctor import __file__ as doctor_init

    ir = tmp_path / "identity.xml"
    ov.save_model(ov.convert_model(str(Path(doctor_init).with_name("identity.onnx"))), str(ir))
    with pytest.raises(ModelError, match="identity.xml"):
        load_engine(ir, "openvino")


def test_npu_refuses_a_dynamic_model_and_says_what_to_do(ir_fp32: Path) -> None:
    from edge_rt.engines.openvino import check_static

    with pytest.raises(ConfigError, match="static shapes only.*--target openvino-int8 --imgsz 384x640"):
        check_static("NPU", load_engine(ir_fp32, "openvino").info, ir_fp32, "openvino:NPU")
    check_static("CPU", load_engine(ir_fp32, "openvino").info, ir_fp32, "openvino")  # dynamic is fine elsewhere


def test_export_cli_writes_xml_and_bin(tmp_path: Path) -> None:
    out = tmp_path / "m" / "demo.xml"
    proc = run_cli("export", "-w", str(DEMO_PT), "--target", "openvino-fp16", "--imgsz", "320", "-o", str(out), timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and out.with_suffix(".bin").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["demo.bin", "demo.xml"]  # no partial files left
    proc = run_cli("export", "-w", str(DEMO_PT), "--target", "openvino-int8", "--dynamic", "--calibration", str(tmp_path))
    assert_clean_failure(proc, "drop --dynamic")
    proc = run_cli("export", "-w", str(DEMO_PT), "--target", "openvino-fp32", "--output", str(tmp_path / "demo.onnx"))
    assert_clean_failure(proc, "written as NAME.xml")  # at once, before any export work
    assert not (tmp_path / "demo.onnx").exists()


def test_bench_compare_against_ultralytics_own_openvino_export(ir_fp32: Path, ultralytics_ir: Path, tmp_path: Path) -> None:
    """The fair anchor on a CPU: `--reference-export` times Ultralytics' OpenVINO export beside its .pt, the ratio is
    against it, and both sides' boxes are scored against the .pt's."""
    import json

    clip = write_clip(tmp_path / "clip.mp4", frames=16)
    out = tmp_path / "cmp.json"
    proc = run_cli(
        "bench", "compare", "-m", str(ir_fp32), "-s", str(clip), "--reference", str(DEMO_PT),
        "--reference-export", str(ultralytics_ir), "--device", "openvino", "--json", str(out), timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"edge_rt / ultralytics {ultralytics_ir.name} = " in proc.stdout, proc.stdout
    data = json.loads(out.read_text())
    assert data["export_fps"] > 0 and data["edge_device"] == "openvino:CPU"
    assert abs(data["edge_fps"] / data["export_fps"] - float(proc.stdout.split(" = ")[1].split("x")[0])) < 0.01
    for boxes in (data["boxes"], data["export_boxes"]):
        assert boxes["reference_boxes"] > 0 and boxes["found"] >= 0.9, data
    proc = run_cli("bench", "compare", "-m", str(ir_fp32), "-s", str(clip), "--reference-export", str(tmp_path / "nope"))
    assert_clean_failure(proc, "--reference-export")


def test_bench_engine_times_an_ir_with_either_hint(ir_fp32: Path, tmp_path: Path) -> None:
    import json

    for hint in ("latency", "throughput"):
        out = tmp_path / f"{hint}.json"
        proc = run_cli("bench", "engine", "-m", str(ir_fp32), "--device", "openvino", "--shape", "192x320",
                       "--iters", "12", "--warmup", "2", "--engine-hint", hint, "--json", str(out))
        assert proc.returncode == 0, proc.stderr
        [row] = json.loads(out.read_text())
        assert (row["device"], row["height"], row["width"], row["iters"]) == ("openvino:CPU", 192, 320, 12)
        assert row["images_per_s"] > 0


def test_doctor_lists_the_openvino_devices() -> None:
    proc = run_cli("doctor")
    assert "openvino CPU" in proc.stdout and "openvino GPU" in proc.stdout, proc.stdout


class _FailsOnThird:
    """A real OpenVINO engine with requests in flight whose third result raises, as a device error would."""

    def __init__(self, model: Path) -> None:
        self._engine = load_engine(model, "openvino", hint="throughput")
        self.info, self.device, self.in_flight, self.calls = self._engine.info, self._engine.device, self._engine.in_flight, 0

    def submit(self, tensor: np.ndarray, plan: np.ndarray | None = None) -> object:
        self.calls += 1
        pending = self._engine.submit(tensor, plan)
        if self.calls != 3:
            return pending

        class Broken:
            def result(self) -> np.ndarray:
                pending.result()
                raise RuntimeError("GPU device lost")

        return Broken()

    def infer(self, tensor: np.ndarray, plan: np.ndarray | None = None) -> np.ndarray:
        raise AssertionError("with requests in flight the pipeline submits")

    def close(self) -> None:
        self._engine.close()


def test_a_failed_request_in_flight_ends_the_run_in_one_line(ir_fp32: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The collecting thread's error stops the submitting one and the run (exit 8), without a hang or a traceback."""
    import io
    from contextlib import redirect_stderr

    from edge_rt import cli, runner

    clip = write_clip(tmp_path / "clip.mp4", frames=20)
    monkeypatch.setattr(runner, "load_engine", lambda model, *a, **k: _FailsOnThird(Path(model)))
    err = io.StringIO()
    with redirect_stderr(err):
        code = cli.main(["run", "-m", str(ir_fp32), "-s", str(clip), "--publish", f"ipc://{tmp_path}/f.sock", "--log-level", "error"])
    assert code == 8, err.getvalue()
    lines = [line for line in err.getvalue().splitlines() if "error:" in line]
    assert "Traceback" not in err.getvalue() and len(lines) == 1 and "GPU device lost" in lines[0], err.getvalue()


@pytest.mark.parametrize(
    "target,hint,precision,threads,expected",
    [
        ("CPU", "latency", "f32", 2, {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2}),
        ("GPU", "throughput", "f16", 2, {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f16"}),
        ("GPU.1", "latency", None, None, {"PERFORMANCE_HINT": "LATENCY"}),  # the GPU's own f16 default
        ("AUTO", "latency", "f32", 2, {"PERFORMANCE_HINT": "LATENCY"}),  # AUTO forwards nothing we could check
        ("NPU", "latency", "f32", None, {"PERFORMANCE_HINT": "LATENCY"}),
    ],
)
def test_compile_config_sets_only_what_each_device_takes(target: str, hint: str, precision: str | None, threads: int | None, expected: dict) -> None:
    from edge_rt.engines.openvino import compile_config

    assert compile_config(target, hint, precision, threads) == expected
