"""Augmentation presets: what each does to the images Ultralytics trains on, and the preview grid."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_rt.errors import ConfigError
from edge_rt.training.augment import PRESETS, Barrel, Blur, Fog, LowLight, Rain, register, train_kwargs
from edge_rt.training.preview import augmented_samples
from edge_rt.training.split import split_dataset
from edge_rt.training.synth import CLASS_NAMES, synth_dataset
from tests.helpers import assert_clean_failure, run_cli

pytestmark = pytest.mark.timeout(180)

IMGSZ = 128
N = 24


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_dataset(tmp_path_factory.mktemp("aug"), images=16, imgsz=IMGSZ, seed=0)


@pytest.fixture(scope="module")
def samples(data: Path) -> dict[str, list[dict[str, Any]]]:
    """N training samples per preset, through Ultralytics' own training dataset (same seed for all)."""
    return {p: augmented_samples(data, p, n=N, seed=0, imgsz=IMGSZ) for p in PRESETS}


def _images(samples: list[dict[str, Any]]) -> list[np.ndarray]:
    return [np.ascontiguousarray(s["img"].numpy().transpose(1, 2, 0)) for s in samples]


def _sharpness(img: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def test_unknown_preset_is_a_config_error() -> None:
    for call in (lambda: train_kwargs("dusk"), lambda: register(object(), "dusk")):
        with pytest.raises(ConfigError, match="'dusk': unknown preset; choose one of default, night, weather, fisheye"):
            call()


def test_train_kwargs_are_ultralytics_arguments_and_a_fresh_dict() -> None:
    from ultralytics.cfg import get_cfg

    for name in PRESETS:
        kwargs = train_kwargs(name)
        cfg = get_cfg(overrides=kwargs)  # raises on a key Ultralytics does not know
        assert all(getattr(cfg, k) == v for k, v in kwargs.items())
        kwargs["hsv_v"] = 9.0
        assert train_kwargs(name).get("hsv_v") != 9.0
    assert train_kwargs("default") == {}
    assert train_kwargs("fisheye")["perspective"] > 0 and train_kwargs("fisheye")["degrees"] >= 10


def test_night_is_darker_and_greyer(samples: dict[str, list[dict[str, Any]]]) -> None:
    default, night = _images(samples["default"]), _images(samples["night"])
    assert np.mean([im.mean() for im in night]) < 0.75 * np.mean([im.mean() for im in default])
    spread = [im.astype(np.float32).std(axis=2).mean() for im in night]  # 0 for a grey image
    assert np.mean(spread) < 0.6 * np.mean([im.astype(np.float32).std(axis=2).mean() for im in default])
    assert sum(s < 1.0 for s in spread) >= N // 4, "most night images should be plain grey (an IR camera)"


def test_weather_is_blurrier(samples: dict[str, list[dict[str, Any]]]) -> None:
    default = np.median([_sharpness(im) for im in _images(samples["default"])])
    weather = np.median([_sharpness(im) for im in _images(samples["weather"])])
    assert weather < 0.6 * default


@pytest.mark.parametrize("preset", list(PRESETS))
def test_boxes_stay_inside_the_image(samples: dict[str, list[dict[str, Any]]], preset: str) -> None:
    boxes = np.concatenate([s["bboxes"].numpy().reshape(-1, 4) for s in samples[preset]])
    assert len(boxes) > N, "mosaic samples should hold several boxes each"
    assert np.all(boxes[:, :2] - boxes[:, 2:] / 2 >= -1e-5) and np.all(boxes[:, :2] + boxes[:, 2:] / 2 <= 1 + 1e-5)
    assert np.all(boxes[:, 2:] > 0)
    for s in samples[preset]:
        assert tuple(s["img"].shape) == (3, IMGSZ, IMGSZ)
        assert len(s["cls"]) == len(s["bboxes"])


def test_same_seed_same_samples(data: Path, samples: dict[str, list[dict[str, Any]]]) -> None:
    again = augmented_samples(data, "weather", n=N, seed=0, imgsz=IMGSZ)
    assert all(np.array_equal(a["img"].numpy(), b["img"].numpy()) for a, b in zip(again, samples["weather"]))
    other = augmented_samples(data, "weather", n=N, seed=1, imgsz=IMGSZ)
    assert not all(np.array_equal(a["img"].numpy(), b["img"].numpy()) for a, b in zip(other, samples["weather"]))


def test_barrel_boxes_follow_the_pixels() -> None:
    """White rectangles on black: after the warp each box is the bounding box of its rectangle's pixels."""
    from ultralytics.utils.instance import Instances

    w, h = 160, 120
    rects = np.array([[4, 4, 40, 30], [70, 50, 90, 70], [110, 80, 156, 116], [120, 10, 150, 40]], np.float32)
    img = np.zeros((h, w, 3), np.uint8)
    for x1, y1, x2, y2 in rects.astype(int):
        img[y1:y2, x1:x2] = 255
    norm = rects / [w, h, w, h]
    xywh = np.concatenate([(norm[:, :2] + norm[:, 2:]) / 2, norm[:, 2:] - norm[:, :2]], axis=1)
    labels = {
        "img": img,
        "cls": np.arange(4, dtype=np.float32)[:, None],
        "instances": Instances(xywh, bbox_format="xywh", normalized=True),
    }
    out = Barrel(p=1.0, k=(0.4, 0.4))(labels)
    warped = out["img"]
    assert (warped[0, 0] == 114).all() and (warped[h // 2, w // 2] == 255).all(), "corners show nothing, the middle stays"
    inst = out["instances"]
    inst.convert_bbox("xyxy")
    inst.denormalize(w, h)
    mask = warped[..., 0] > 127
    count, comp = cv2.connectedComponents(mask.astype(np.uint8))
    assert count - 1 == 4
    for box in inst.bboxes:
        cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
        ys, xs = np.nonzero(comp == comp[cy, cx])
        pixels = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
        assert np.abs(pixels - box).max() <= 1.5, (pixels, box)
    corner_before, corner_after = rects[0], inst.bboxes[0]
    assert corner_after[0] > corner_before[0] + 3 and corner_after[1] > corner_before[1] + 3, "the corner is pulled inwards"
    assert np.abs(inst.bboxes[1] - rects[1]).max() < 3, "the middle barely moves"


def test_ops_keep_the_image_format() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    for op in (LowLight(), Blur(), Rain(), Fog()):
        out = op.apply(img.copy())
        assert out.shape == img.shape and out.dtype == np.uint8
        assert not np.array_equal(out, img), f"{type(op).__name__} left the image as it was"
    grey = LowLight(grey_p=1.0, noise=(0.0, 0.0)).apply(img)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


def test_register_puts_the_preset_into_training(tmp_path: Path, data: Path) -> None:
    """A real 1-epoch training with 'night': the training loader (rebuilt when mosaic closes) runs its
    transform, validation does not; the data.yaml comes from edge-rt dataset split (.txt lists)."""
    from ultralytics import YOLO

    shutil.copytree(data.parent / "images", tmp_path / "ds" / "images")
    shutil.copytree(data.parent / "labels", tmp_path / "ds" / "labels")
    split = split_dataset(tmp_path / "ds", val=0.25, seed=0, names=list(CLASS_NAMES))
    yolo = YOLO("yolo11n.yaml")
    before = len(yolo.callbacks["on_pretrain_routine_start"])
    register(yolo, "default")
    assert len(yolo.callbacks["on_pretrain_routine_start"]) == before, "a preset without transforms adds no callback"
    register(yolo, "night")
    seen: dict[str, list[str]] = {}

    def record(trainer: Any) -> None:
        seen["train"] = [type(t).__name__ for t in trainer.train_loader.dataset.transforms.transforms]
        seen["val"] = [type(t).__name__ for t in trainer.test_loader.dataset.transforms.transforms]
        pre = trainer.train_loader.dataset.transforms.transforms[0]  # v8_transforms' [Mosaic, CopyPaste, affine]
        seen["mosaic"] = [str(t.p) for t in pre.transforms if type(t).__name__ == "Mosaic"]

    yolo.add_callback("on_train_epoch_end", record)
    yolo.train(
        data=str(split.data_yaml),
        epochs=1,
        imgsz=64,
        batch=4,
        workers=0,
        close_mosaic=1,
        device="cpu",
        project=str(tmp_path / "runs"),
        name="night",
        plots=False,
        amp=False,
        val=False,
        verbose=False,
        **train_kwargs("night"),
    )
    assert seen["mosaic"] == ["0.0"], "close_mosaic rebuilt the training transforms (mosaic off)"
    assert "PresetOps" in seen["train"] and seen["train"][-1] == "Format"
    assert "PresetOps" not in seen["val"]


def test_preview_writes_the_grid(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "grid.png"
    proc = run_cli("dataset", "preview", str(data), "--augment", "fisheye", "--out", str(out), "--n", "6", "--imgsz", "64")
    assert proc.returncode == 0, proc.stderr
    grid = cv2.imread(str(out))
    assert grid is not None and grid.shape == (2 * 64 + 2, 3 * 64 + 2 * 2, 3)  # 3 columns, 2 rows, 2 px gaps
    assert grid[:64, :64].std() > 5, "a tile with a picture in it"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--augment", "dusk"], "--augment 'dusk': unknown preset"),
        (["--imgsz", "100"], "--imgsz 100: must be a multiple of 32"),
        (["--n", "0"], "--n 0: must be at least 1"),
    ],
)
def test_preview_mistakes_are_one_line(tmp_path: Path, data: Path, args: list[str], expected: str) -> None:
    assert_clean_failure(run_cli("dataset", "preview", str(data), "--out", str(tmp_path / "g.png"), *args), expected)


def test_preview_of_a_broken_dataset_is_one_line(tmp_path: Path) -> None:
    proc = run_cli("dataset", "preview", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "g.png"))
    assert_clean_failure(proc, "data yaml not found")
