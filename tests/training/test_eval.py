"""`edge-rt eval`: the demo model scored as deployed, against Ultralytics' own `val` on the same file,
on a synthetic val set drawn with a seed the model never saw; exports compared side by side."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edge_rt.errors import ConfigError
from edge_rt.exporters import ExportOptions, export
from edge_rt.training.eval_data import read_labels
from edge_rt.training.evaluate import EvalResult, evaluate
from tests.helpers import assert_clean_failure, run_cli

ROOT = Path(__file__).resolve().parents[2]
DEMO_PT = ROOT / "models" / "demo" / "demo.pt"
DEMO_ONNX = ROOT / "models" / "demo" / "demo.onnx"
NAMES = ("circle", "square", "triangle", "cross")

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 val images at 320 drawn with seed 5 (the demo model was trained on seed 0); 40 train images calibrate INT8."""
    from edge_rt.training.synth import synth_dataset

    return synth_dataset(tmp_path_factory.mktemp("evalset") / "shapes", images=80, imgsz=320, seed=5, val_fraction=0.5)


@pytest.fixture(scope="module")
def onnx_result(data: Path) -> EvalResult:
    return evaluate(DEMO_ONNX, data, "val", device="cpu")


def _label_counts(data: Path, split: str = "val") -> np.ndarray:
    counts = np.zeros(len(NAMES), int)
    for label in (data.parent / "labels" / split).glob("*.txt"):
        for line in label.read_text().splitlines():
            counts[int(line.split()[0])] += 1
    return counts


def test_onnx_map50_agrees_with_ultralytics_val(data: Path, onnx_result: EvalResult, tmp_path: Path) -> None:
    """edge_rt's letterbox, decoder and NMS (one label per box) against Ultralytics' val (multi-label NMS)."""
    from ultralytics import YOLO

    theirs = YOLO(str(DEMO_ONNX), task="detect").val(
        data=str(data),
        imgsz=320,
        batch=1,
        conf=0.001,
        iou=0.7,
        device="cpu",
        plots=False,
        project=str(tmp_path),
        name="val",
        verbose=False,
    )
    ours = onnx_result
    assert ours.images == 40 and ours.instances == int(_label_counts(data).sum())
    assert ours.map50 > 0.7, "the demo model finds the shapes: a score near zero means boxes or labels are misread"
    assert abs(ours.map50 - theirs.box.map50) < 0.02, (ours.map50, theirs.box.map50)
    assert abs(ours.map50_95 - theirs.box.map) < 0.02, (ours.map50_95, theirs.box.map)
    assert abs(ours.recall - theirs.box.mr) < 0.03 and abs(ours.precision - theirs.box.mp) < 0.03
    assert ours.kind == "onnx fp32 static" and ours.conf == 0.001 and ours.iou == 0.7 and ours.max_det == 300


def test_per_class_rows_and_confusion_matrix_count_every_label(data: Path, onnx_result: EvalResult) -> None:
    r = onnx_result
    assert [c.name for c in r.per_class] == list(NAMES)
    assert [c.instances for c in r.per_class] == _label_counts(data).tolist()
    assert all(0.3 < c.map50 <= 1.0 and c.map50_95 <= c.map50 for c in r.per_class)
    matrix = np.asarray(r.confusion)
    assert matrix.shape == (5, 5)  # [predicted][true], background last
    assert matrix[:, :4].sum(0).tolist() == _label_counts(data).tolist(), "each label is matched once or missed once"
    assert np.trace(matrix[:4, :4]) > 0.7 * matrix[:, :4].sum(), "most shapes are found with the right class at conf 0.25"
    assert r.speed.inference_ms > 0 and r.speed.batches == 40


def test_swapped_labels_show_up_in_the_scores_and_the_confusion_matrix(
    data: Path, onnx_result: EvalResult, tmp_path: Path
) -> None:
    """Circles labelled as squares and back: the two classes collapse and the matrix shows the swap (rows = predicted)."""
    root = tmp_path / "swapped"
    shutil.copytree(data.parent / "images" / "val", root / "images" / "val")
    (root / "labels" / "val").mkdir(parents=True)
    swap = {"0": "1", "1": "0"}
    for label in (data.parent / "labels" / "val").glob("*.txt"):
        lines = [
            " ".join([swap.get(line.split()[0], line.split()[0]), *line.split()[1:]]) for line in label.read_text().splitlines()
        ]
        (root / "labels" / "val" / label.name).write_text("".join(f"{ln}\n" for ln in lines))
    swapped = root / "data.yaml"
    swapped.write_text(
        yaml.safe_dump({"path": str(root), "train": "images/val", "val": "images/val", "names": dict(enumerate(NAMES))})
    )
    r = evaluate(DEMO_ONNX, swapped, "val", device="cpu")
    ap = {c.name: c.map50 for c in r.per_class}
    good = {c.name: c.map50 for c in onnx_result.per_class}
    assert ap["circle"] < 0.2 and ap["square"] < 0.2
    assert abs(ap["cross"] - good["cross"]) < 1e-6 and abs(ap["triangle"] - good["triangle"]) < 1e-6
    matrix = np.asarray(r.confusion)
    assert matrix[0, 1] > 0.7 * matrix[:, 1].sum(), "labels 'square' (column 1) are circles: predicted row 0"


def test_cli_writes_the_table_json_and_plots(data: Path, onnx_result: EvalResult, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = run_cli(
        "eval",
        "--model",
        str(DEMO_ONNX),
        "--data",
        str(data),
        "--device",
        "cpu",
        "--json",
        str(out),
        "--plots",
        str(tmp_path / "plots"),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {
        line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.split() and line.split()[0] in (*NAMES, "all")
    }
    assert rows["all"][1:3] == ["40", str(onnx_result.instances)]
    assert float(rows["all"][5]) == pytest.approx(onnx_result.map50, abs=5e-4)
    assert all(float(rows[n][5]) == pytest.approx(c.map50, abs=5e-4) for n, c in zip(NAMES, onnx_result.per_class))
    assert "eval demo.onnx: 40/40" in proc.stderr, "progress over the images"
    doc = json.loads(out.read_text())
    assert doc["map50"] == pytest.approx(onnx_result.map50) and doc["map50_95"] == pytest.approx(onnx_result.map50_95)
    assert [c["instances"] for c in doc["per_class"]] == [c.instances for c in onnx_result.per_class]
    assert doc["confusion"] == [list(row) for row in onnx_result.confusion]
    assert len(doc["curves"]["precision"]) == 4 and len(doc["curves"]["x"]) == 1000
    assert doc["speed"]["inference_ms"] > 0 and doc["file_bytes"] == DEMO_ONNX.stat().st_size
    for name in ("confusion_matrix.png", "PR_curve.png", "F1_curve.png"):
        image = cv2.imread(str(tmp_path / "plots" / name))
        assert image is not None and image.shape[0] > 400 and image.std() > 10, name


@pytest.fixture(scope="module")
def exports(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo weights as fp16 and INT8 ONNX (INT8 calibrated on 16 train images of the eval set's seed)."""
    folder = tmp_path_factory.mktemp("exports")
    fp16 = export(DEMO_PT, folder / "demo-fp16.onnx", ExportOptions(imgsz=320, precision="fp16").check()).path
    options = ExportOptions(imgsz=320, precision="int8", calibration_frames=16).check()
    int8 = export(DEMO_PT, folder / "demo-int8.onnx", options, calibration=data.parent / "images" / "train").path
    return {"fp16": fp16, "int8": int8}


def test_compare_shows_accuracy_speed_and_size_per_file(data: Path, exports: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    models = [DEMO_PT, DEMO_ONNX, exports["fp16"], exports["int8"]]
    proc = run_cli(
        "eval", "--compare", *map(str, models), "--data", str(data), "--device", "cpu", "--json", str(out), timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout[proc.stdout.index("model ") :].splitlines()
    assert [line.split()[0] for line in table[1:5]] == [m.name for m in models]
    doc = json.loads(out.read_text())["models"]
    assert [d["kind"] for d in doc] == ["pytorch", "onnx fp32 static", "onnx fp16 static", "onnx int8 static"]
    pt, fp32, fp16, int8 = (d["map50_95"] for d in doc)
    assert pt > 0.5
    assert abs(fp32 - pt) < 0.005, "same weights, same letterbox and decoder: only the engine differs"
    assert abs(fp16 - fp32) < 0.01
    assert fp32 - 0.1 < int8 < fp32 + 0.02, "INT8 keeps most of the accuracy (its head stays float)"
    assert [d["file_bytes"] for d in doc] == [m.stat().st_size for m in models]
    assert all(d["speed"]["inference_ms"] > 0 for d in doc)
    assert f"{int8 - pt:+.3f}" in table[4], "the INT8 row shows what it loses against the first file"


def test_in_graph_letterbox_and_nms_export_is_scored_at_its_baked_thresholds(
    data: Path, onnx_result: EvalResult, tmp_path: Path
) -> None:
    """uint8 frames in, letterbox and NMS inside the graph (the GPU path) runs here on ONNX Runtime's CPU provider."""
    options = ExportOptions(imgsz=320, dynamic=True, max_batch=2, graph_preprocess=True, nms=True, nms_conf=0.001).check()
    model = export(DEMO_PT, tmp_path / "gpu_path.onnx", options).path
    r = evaluate(model, data, "val", device="cpu", batch=2)
    assert r.kind == "onnx fp32 dynamic +letterbox +nms" and r.batch == 2
    assert abs(r.map50 - onnx_result.map50) < 0.02
    r = evaluate(model, data, "val", device="cpu", iou=0.5)
    assert r.iou == 0.7 and any("iou 0.5 -> 0.7" in n for n in r.notes), "the graph's NMS IoU is what ran, and the report says so"


def _dataset_with(tmp_path: Path, data: Path, **changes: object) -> Path:
    doc = {**yaml.safe_load(data.read_text()), **changes}
    out = tmp_path / "changed.yaml"
    out.write_text(yaml.safe_dump(doc))
    return out


@pytest.mark.parametrize(
    "case,expected",
    [
        ("missing model", "no such file"),
        ("missing data", "--data"),
        ("unknown split", "invalid choice: 'holdout'"),
        ("no test split", "no 'test' split"),
        ("class count", "has 4 classes"),
        ("fixed imgsz", "fixed 320x320 input"),
        ("bad label", "is not 'class cx cy w h'"),
        ("unknown format", "unknown format '.tflite'"),
        ("no labels", "no labelled objects"),
        ("plots under a file", "--plots"),
    ],
)
def test_user_mistakes_are_one_line(case: str, expected: str, data: Path, tmp_path: Path) -> None:
    model, data_arg, extra = str(DEMO_ONNX), str(data), []
    if case == "missing model":
        model = str(tmp_path / "nope.onnx")
    elif case == "missing data":
        data_arg = str(tmp_path / "nope.yaml")
    elif case == "unknown split":
        extra = ["--split", "holdout"]
    elif case == "no test split":
        extra = ["--split", "test"]
    elif case == "class count":
        data_arg = str(_dataset_with(tmp_path, data, names=[*NAMES, "star"], nc=5))
    elif case == "fixed imgsz":
        extra = ["--imgsz", "640"]
    elif case == "bad label":
        root = tmp_path / "bad"
        shutil.copytree(data.parent / "images" / "val", root / "images" / "val")
        shutil.copytree(data.parent / "labels" / "val", root / "labels" / "val")
        first = sorted((root / "labels" / "val").glob("*.txt"))[0]
        first.write_text("0 0.5 0.5 1.7 0.2\n")
        data_arg = str(_dataset_with(tmp_path, data, path=str(root), train="images/val"))
    elif case == "no labels":
        root = tmp_path / "empty"
        shutil.copytree(data.parent / "images" / "val", root / "images" / "val")
        (root / "labels" / "val").mkdir(parents=True)
        data_arg = str(_dataset_with(tmp_path, data, path=str(root), train="images/val"))
    elif case == "plots under a file":
        (tmp_path / "afile").write_text("")
        extra = ["--plots", str(tmp_path / "afile" / "plots")]
    elif case == "unknown format":
        model = str(tmp_path / "m.tflite")
        Path(model).write_bytes(b"x")
    proc = run_cli("eval", "--model", model, "--data", data_arg, "--device", "cpu", *extra)
    assert_clean_failure(proc, expected)


def test_labels_become_pixel_boxes_once_each(tmp_path: Path) -> None:
    label = tmp_path / "a.txt"
    label.write_text("2 0.5 0.25 0.2 0.1\n2 0.5 0.25 0.2 0.1\n\n0 0.1 0.9 0.2 0.2\n")
    cls, xyxy = read_labels(label, 640, 320, 4)
    assert cls.tolist() == [0, 2]
    np.testing.assert_allclose(xyxy, [[0, 256, 128, 320], [256, 64, 384, 96]], atol=1e-4)
    assert read_labels(tmp_path / "missing.txt", 640, 320, 4)[0].size == 0, "no label file: a background image"
    label.write_text("4 0.5 0.5 0.1 0.1\n")
    with pytest.raises(ConfigError, match=r"a.txt:1: .*class 0..3"):
        read_labels(label, 640, 320, 4)


@pytest.mark.tensorrt
def test_tensorrt_engine_scores_like_its_onnx(data: Path, onnx_result: EvalResult, tmp_path: Path) -> None:
    options = ExportOptions(format="engine", precision="fp16", imgsz=320, workspace_gb=1).check()
    engine = export(DEMO_PT, tmp_path / "demo.engine", options).path
    r = evaluate(engine, data, "val", device="tensorrt")
    assert r.kind.startswith("tensorrt fp16")
    assert abs(r.map50 - onnx_result.map50) < 0.02 and abs(r.map50_95 - onnx_result.map50_95) < 0.03
