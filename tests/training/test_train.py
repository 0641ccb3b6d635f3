"""A real (tiny) Ultralytics training run: weights, an ONNX that ONNX Runtime loads, metadata, metrics."""

from __future__ import annotations

import ast
import os
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from edge_rt.training.synth import CLASS_NAMES, render_scene, synth_dataset
from edge_rt.training.train import METRIC_KEYS, TrainResult, format_metrics, train

# Must be set before Ultralytics is first imported (it reads it once); the test command sets it too.
os.environ.setdefault("YOLO_OFFLINE", "1")

IMGSZ = 64

# Checked without importing it: importing Ultralytics writes a settings file and sets OMP_NUM_THREADS.
needs_ultralytics = pytest.mark.skipif(
    find_spec("ultralytics") is None, reason="needs the 'train' extra: pip install edge_rt[train]"
)
# torch.onnx tracing of the Detect head warns about a shape comparison; constant for a static export.
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """One epoch of yolo11n from its YAML on 16 images at 64 px: ~10 s on 2 CPU cores."""
    root = tmp_path_factory.mktemp("train")
    data = synth_dataset(root / "data", images=16, imgsz=IMGSZ, seed=0, val_fraction=0.25)
    return train(data, "yolo11n.yaml", epochs=1, imgsz=IMGSZ, batch=8, project=root / "runs", name="tiny")


@needs_ultralytics
@pytest.mark.timeout(300)
def test_training_writes_weights_and_metrics(trained: TrainResult) -> None:
    assert trained.best_weights.name == "best.pt" and trained.best_weights.is_file()
    assert set(trained.metrics) == set(METRIC_KEYS)
    assert all(0.0 <= v <= 1.0 for v in trained.metrics.values())


@needs_ultralytics
@pytest.mark.timeout(300)
def test_onnx_export_loads_and_carries_metadata(trained: TrainResult) -> None:
    ort = pytest.importorskip("onnxruntime", reason="needs the 'cpu' extra: pip install edge_rt[cpu]")
    assert trained.onnx == trained.best_weights.with_suffix(".onnx")
    session = ort.InferenceSession(str(trained.onnx), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    # Ultralytics writes Python literals; literal_eval, never eval.
    assert ast.literal_eval(meta["names"]) == dict(enumerate(CLASS_NAMES))
    assert ast.literal_eval(meta["imgsz"]) == [IMGSZ, IMGSZ]
    assert meta["task"] == "detect"
    (inp,) = session.get_inputs()
    assert inp.shape == [1, 3, IMGSZ, IMGSZ], "static export, batch 1"

    image, _ = render_scene(np.random.default_rng(0), IMGSZ)
    x = np.ascontiguousarray(image[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    (out,) = session.run(None, {inp.name: x})
    anchors = sum((IMGSZ // s) ** 2 for s in (8, 16, 32))
    assert out.shape == (1, 4 + len(CLASS_NAMES), anchors), "classic head: [B, 4 + nc, anchors]"
    assert np.isfinite(out).all()


@needs_ultralytics
@pytest.mark.timeout(300)
def test_the_same_seed_trains_the_same_weights(trained: TrainResult) -> None:
    """From a model YAML, the random initial weights and the data order both come from the seed."""
    import torch
    from ultralytics.utils.patches import torch_load

    def weights(path: Path) -> dict[str, torch.Tensor]:
        return torch_load(str(path), map_location="cpu", weights_only=False)["model"].float().state_dict()

    data = trained.best_weights.parents[3] / "data" / "data.yaml"
    runs = trained.best_weights.parents[2]
    first = weights(trained.best_weights)
    again = train(data, "yolo11n.yaml", 1, IMGSZ, 8, project=runs, name="again", seed=0, export_onnx=False, progress=False)
    other = train(data, "yolo11n.yaml", 1, IMGSZ, 8, project=runs, name="other", seed=1, export_onnx=False, progress=False)
    assert all(torch.equal(first[k], v) for k, v in weights(again.best_weights).items()), "seed 0 twice: same weights"
    assert not all(torch.equal(first[k], v) for k, v in weights(other.best_weights).items()), "seed 1: other weights"


def test_train_refuses_a_broken_dataset_before_training(tmp_path: Path) -> None:
    data = synth_dataset(tmp_path / "data", images=4, imgsz=IMGSZ, seed=0)
    label = sorted((tmp_path / "data/labels/train").glob("*.txt"))[0]
    label.write_text("7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(ValueError, match=rf"^{label}:1: class id 7 >= nc 4"):
        train(data, "yolo11n.yaml", epochs=1, imgsz=IMGSZ, project=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [({"imgsz": 100}, "imgsz=100: must be a multiple of 32"), ({"epochs": 0}, "epochs=0: must be a positive")],
)
def test_train_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, int], expected: str) -> None:
    args = {"epochs": 1, "imgsz": IMGSZ, **kwargs}
    with pytest.raises(ValueError, match=expected):
        train(tmp_path / "data.yaml", "yolo11n.yaml", args["epochs"], args["imgsz"], project=tmp_path / "runs")


def test_train_names_a_missing_data_yaml(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data yaml not found"):
        train(tmp_path / "nope.yaml", "yolo11n.yaml", epochs=1, imgsz=IMGSZ)


def test_format_metrics_is_an_aligned_table() -> None:
    text = format_metrics({"recall": 0.5, "mAP50": 0.91234, "mAP50-95": 0.7, "precision": 1.0, "extra": 2})
    lines = text.splitlines()
    assert [ln.split()[0] for ln in lines[2:]] == ["mAP50", "mAP50-95", "precision", "recall", "extra"]
    assert "0.9123" in lines[2]
    assert len({ln.index(ln.split()[1]) for ln in lines[2:]}) == 1, "values start in one column"
    assert format_metrics({}) == "(no metrics)"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"lr0": 0.005}, {"optimizer": "AdamW"}),  # auto would replace it: an explicit optimizer, logged
        ({"momentum": 0.8, "mosaic": 0}, {"optimizer": "AdamW"}),
        ({"lr0": 0.005, "optimizer": "SGD"}, {}),
        ({"mosaic": 0}, {}),  # auto may pick its own lr0: none was asked for
        ({"lr0": None}, {}),
        ({"lr0": 0.005, "optimizer": "auto"}, "optimizer=auto with lr0=0.005: Ultralytics' auto picks its own"),
    ],
)
def test_lr0_and_momentum_get_an_optimizer_that_uses_them(settings: dict[str, object], expected: object) -> None:
    from edge_rt.training.train import explicit_optimizer

    if isinstance(expected, str):
        with pytest.raises(ValueError, match=expected):
            explicit_optimizer(settings)
    else:
        assert explicit_optimizer(settings) == expected


def test_augment_line_names_the_preset_its_settings_and_transforms() -> None:
    from edge_rt.training.train import augment_line

    line = augment_line("weather", {"hsv_s": 0.3, "hsv_v": 0.5})
    assert line.startswith("augment preset weather: hsv_s=0.3, hsv_v=0.5; adds Fog, Rain, Blur to the training pipeline (")
    assert augment_line("default", {}).startswith("augment preset default: Ultralytics' defaults (")


@needs_ultralytics
def test_ultralytics_log_off_a_terminal_keeps_warnings_only_without_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import logging

    from ultralytics.utils import LOGGER, colorstr

    from edge_rt.training.yolo_io import ultralytics_log

    out = io.StringIO()  # not a terminal
    handler = logging.StreamHandler(out)
    monkeypatch.setattr(LOGGER, "handlers", [handler])
    monkeypatch.delenv("YOLO_VERBOSE", raising=False)
    level, filters = LOGGER.level, list(LOGGER.filters)
    with ultralytics_log():
        LOGGER.info(f"{colorstr('train:')} Scanning ...")
        LOGGER.warning(f"{colorstr('optimizer:')} something to know")
        assert os.environ["YOLO_VERBOSE"] == "False", "the tuner's `yolo train` subprocesses are quiet too"
    assert out.getvalue() == "optimizer: something to know\n"
    assert (LOGGER.level, LOGGER.filters) == (level, filters), "restored: nothing leaks into the next command"
    assert "YOLO_VERBOSE" not in os.environ
    monkeypatch.setenv("YOLO_VERBOSE", "true")  # Ultralytics' own switch: the full log, still without colour
    with ultralytics_log():
        LOGGER.info(f"{colorstr('train:')} Scanning ...")
    assert out.getvalue().endswith("\ntrain: Scanning ...\n")
