"""Synthetic data is deterministic and well-formed; check_dataset names each problem and its fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edge_rt.training.dataset import check_dataset
from edge_rt.training.synth import CLASS_NAMES, render_scene, synth_dataset
from edge_rt.training.synth_video import iter_clip, synth_clip

REPO = Path(__file__).resolve().parents[2]
IMAGES = 12
IMGSZ = 96


def _files(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every image and label (data.yaml holds the absolute root, so not it)."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in {".jpg", ".txt"}
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-image dataset shared (read-only) by the tests of this module."""
    return synth_dataset(tmp_path_factory.mktemp("tiny"), images=IMAGES, imgsz=IMGSZ, seed=0)


@pytest.fixture
def broken(tiny: Path, tmp_path: Path) -> Path:
    """A private copy of ``tiny`` for a test to break; returns its data.yaml."""
    root = tmp_path / "ds"
    shutil.copytree(tiny.parent, root)
    data = yaml.safe_load((root / "data.yaml").read_text())
    data["path"] = str(root)
    (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root / "data.yaml"


def test_same_seed_gives_identical_files(tiny: Path, tmp_path: Path) -> None:
    again = synth_dataset(tmp_path / "again", images=IMAGES, imgsz=IMGSZ, seed=0)
    assert _files(again.parent) == _files(tiny.parent)


def test_other_seed_gives_other_images(tiny: Path, tmp_path: Path) -> None:
    other = synth_dataset(tmp_path / "other", images=IMAGES, imgsz=IMGSZ, seed=1)
    a = [v for k, v in _files(tiny.parent).items() if k.endswith(".jpg")]
    b = [v for k, v in _files(other.parent).items() if k.endswith(".jpg")]
    assert len(a) == len(b) == IMAGES
    assert not set(a) & set(b)


def test_layout_and_yaml(tiny: Path) -> None:
    data = yaml.safe_load(tiny.read_text())
    assert Path(data["path"]) == tiny.parent
    assert (data["train"], data["val"]) == ("images/train", "images/val")
    assert data["names"] == dict(enumerate(CLASS_NAMES))
    val = sorted((tiny.parent / "images/val").glob("*.jpg"))
    train = sorted((tiny.parent / "images/train").glob("*.jpg"))
    assert (len(val), len(train)) == (round(IMAGES * 0.2), IMAGES - round(IMAGES * 0.2))
    for image in val + train:
        pixels = cv2.imread(str(image))
        assert pixels is not None and pixels.shape == (IMGSZ, IMGSZ, 3)
        assert (tiny.parent / "labels" / image.parent.name / f"{image.stem}.txt").is_file()


def test_labels_are_valid_boxes(tiny: Path) -> None:
    seen: set[int] = set()
    for label in sorted((tiny.parent / "labels").rglob("*.txt")):
        rows = np.loadtxt(label, ndmin=2)
        assert 1 <= len(rows) <= 6, label
        assert rows.shape[1] == 5
        assert np.all(rows[:, 0] == rows[:, 0].astype(int))
        assert np.all((rows[:, 0] >= 0) & (rows[:, 0] < len(CLASS_NAMES)))
        assert np.all((rows[:, 1:] >= 0) & (rows[:, 1:] <= 1))
        assert np.all(rows[:, 3:] > 4 / IMGSZ), "boxes at least a few pixels wide"
        seen |= set(rows[:, 0].astype(int).tolist())
    assert seen == set(range(len(CLASS_NAMES)))


def test_render_scene_is_deterministic_and_boxes_fit() -> None:
    a, la = render_scene(np.random.default_rng(7), (160, 90))
    b, lb = render_scene(np.random.default_rng(7), (160, 90))
    assert a.shape == (90, 160, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and la == lb
    for lab in la:
        assert 0 <= lab.x1 < lab.x2 <= 160 and 0 <= lab.y1 < lab.y2 <= 90


def test_check_dataset_accepts_good_dataset(tiny: Path) -> None:
    assert check_dataset(tiny) == []


def test_images_without_labels_are_background_not_a_problem(broken: Path) -> None:
    first = sorted((broken.parent / "labels/train").glob("*.txt"))
    first[0].unlink()
    first[1].write_text("")
    assert check_dataset(broken) == []


def _edit_yaml(**changes: object) -> Callable[[Path], Path]:
    def edit(data_yaml: Path) -> Path:
        data = yaml.safe_load(data_yaml.read_text())
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        data_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
        return data_yaml

    return edit


def _first_label(line: str) -> Callable[[Path], Path]:
    def edit(data_yaml: Path) -> Path:
        label = sorted((data_yaml.parent / "labels/train").glob("*.txt"))[0]
        label.write_text(line + "\n")
        return label

    return edit


def _remove(rel: str) -> Callable[[Path], Path]:
    def edit(data_yaml: Path) -> Path:
        shutil.rmtree(data_yaml.parent / rel)
        return data_yaml.parent / rel

    return edit


def _write_yaml(text: str) -> Callable[[Path], Path]:
    def edit(data_yaml: Path) -> Path:
        data_yaml.write_text(text)
        return data_yaml

    return edit


def _delete_yaml(data_yaml: Path) -> Path:
    data_yaml.unlink()
    return data_yaml


# case id, how to break the dataset (returns the file the problem must name), expected substring
BROKEN_CASES = [
    ("missing-val", _edit_yaml(val=None), "missing key(s) val"),
    ("missing-names", _edit_yaml(names=None, nc=None), "missing key(s) names"),
    ("nc-vs-names", _edit_yaml(nc=5), "nc=5 but 4 names"),
    ("names-gap", _edit_yaml(names={0: "a", 2: "b"}, nc=None), "must be 0..1 with no gaps"),
    ("bad-yaml", _write_yaml("names: [circle\n"), "not valid YAML"),
    ("not-a-mapping", _write_yaml("- a\n- b\n"), "expected a mapping"),
    ("no-yaml", _delete_yaml, "data yaml not found"),
    ("no-val-images", _remove("images/val"), "does not exist"),
    ("no-labels-folder", _remove("labels/train"), "no labels folder"),
    ("four-columns", _first_label("0 0.5 0.5 0.2"), ":1: 4 columns; expected 5"),
    ("segment-columns", _first_label("1 0.1 0.1 0.2 0.1 0.2 0.2"), ":1: 7 columns; expected 5"),
    ("non-numeric", _first_label("0 0.5 abc 0.2 0.2"), ":1: non-numeric value"),
    ("pixel-coords", _first_label("0 48 48 20 20"), ":1: coordinates ['48', '48', '20', '20'] outside [0, 1]"),
    ("negative-coord", _first_label("0 -0.1 0.5 0.2 0.2"), "outside [0, 1]"),
    ("zero-size", _first_label("0 0.5 0.5 0 0.2"), "zero-size box"),
    ("class-too-big", _first_label("4 0.5 0.5 0.2 0.2"), ":1: class id 4 >= nc 4; use 0..3"),
    ("class-negative", _first_label("-1 0.5 0.5 0.2 0.2"), "class id -1 is not a non-negative integer"),
    ("class-fraction", _first_label("1.5 0.5 0.5 0.2 0.2"), "class id 1.5 is not a non-negative integer"),
]


@pytest.mark.parametrize(("case", "breaker", "expected"), BROKEN_CASES, ids=[c[0] for c in BROKEN_CASES])
def test_check_dataset_reports_one_clear_line(broken: Path, case: str, breaker: Callable[[Path], Path], expected: str) -> None:
    culprit = breaker(broken)
    problems = check_dataset(broken)
    assert len(problems) == 1, problems
    (problem,) = problems
    assert expected in problem
    assert "\n" not in problem
    assert str(culprit) in problem, f"{case}: the problem should name {culprit}"
    assert ";" in problem, "the problem should say how to fix it"


def test_check_dataset_caps_a_flood_of_problems(broken: Path) -> None:
    for label in (broken.parent / "labels").rglob("*.txt"):
        label.write_text("9 0.5 0.5 0.2 0.2\n" * 10)
    problems = check_dataset(broken)
    assert 10 < len(problems) <= 51
    assert "stopped after" in problems[-1]


def test_check_dataset_accepts_txt_lists_and_relative_image_paths(broken: Path) -> None:
    root = broken.parent
    listing = root / "val.txt"
    listing.write_text("".join(f"./images/val/{p.name}\n" for p in sorted((root / "images/val").glob("*.jpg"))))
    _edit_yaml(val="val.txt")(broken)
    assert check_dataset(broken) == []
    listing.write_text(listing.read_text() + "./images/val/missing.jpg\n")
    (problem,) = check_dataset(broken)
    assert "missing.jpg: listed in 'val' but missing" in problem


def test_synth_clip_writes_a_moving_16_9_video(tmp_path: Path) -> None:
    path = synth_clip(tmp_path / "clip.mp4", frames=12, size=(640, 360), fps=30, seed=3)
    cap = cv2.VideoCapture(str(path))
    try:
        assert cap.isOpened()
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(30, abs=0.5)
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    assert len(frames) == 12
    assert frames[0].shape == (360, 640, 3)
    diff = np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean()
    assert diff > 1.0, "shapes should move between the first and the last frame"


def test_iter_clip_labels_move_smoothly_and_stay_inside() -> None:
    clip = list(iter_clip(frames=40, size=(320, 180), seed=5))
    assert len(clip) == 40
    first, _ = clip[0]
    assert first.shape == (180, 320, 3)
    for (_, prev), (_, cur) in zip(clip, clip[1:], strict=False):
        assert [lb.cls for lb in prev] == [lb.cls for lb in cur]
        for a, b in zip(prev, cur, strict=True):
            assert 0 <= b.x1 < b.x2 <= 320 and 0 <= b.y1 < b.y2 <= 180
            centre_step = np.hypot((a.x1 + a.x2 - b.x1 - b.x2) / 2, (a.y1 + a.y2 - b.y1 - b.y2) / 2)
            assert centre_step < 8, "a shape jumped between frames"
    assert {lb.cls for lb in clip[0][1]} == set(range(len(CLASS_NAMES)))


def test_dataset_module_does_not_import_torch_or_ultralytics() -> None:
    code = (
        "import sys, edge_rt.training.dataset, edge_rt.training.synth; print(sorted({'torch', 'ultralytics'} & set(sys.modules)))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"
