"""K-fold cross-validation: every image held out exactly once, rare classes spread, a real run's summary."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
import yaml

from edge_rt.cli import main
from edge_rt.training.kfold import image_classes, pooled_images, stratified_folds, write_folds
from edge_rt.training.synth import synth_dataset

os.environ.setdefault("YOLO_OFFLINE", "1")

pytestmark = [pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean")]

DEMO_PT = Path(__file__).resolve().parents[2] / "models" / "demo" / "demo.pt"
RARE = 3  # 'cross'


def _make_rare(data: Path, keep: int) -> list[Path]:
    """Remove class RARE from all but ``keep`` labelled images; return the images that keep it."""
    images, _, _ = pooled_images(data)
    having = [im for im in images if RARE in image_classes(im)]
    assert len(having) > keep, "the synthetic set should draw the class often enough to thin it"
    for im in having[keep:]:
        label = im.parent.parent.parent / "labels" / im.parent.name / f"{im.stem}.txt"
        lines = [ln for ln in label.read_text().splitlines() if ln.split() and int(ln.split()[0]) != RARE]
        label.write_text("".join(f"{ln}\n" for ln in lines))
    return having[:keep]


@pytest.fixture(scope="module")
def rare_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 images, 20% val; class 3 left in only 3 of them, the other classes common."""
    data = synth_dataset(tmp_path_factory.mktemp("kf") / "data", images=30, imgsz=64, seed=4)
    _make_rare(data, keep=3)
    return data


@pytest.mark.parametrize("k", [2, 3])
def test_every_image_is_held_out_in_exactly_one_fold(rare_data: Path, tmp_path: Path, k: int) -> None:
    yamls = write_folds(rare_data, tmp_path / "splits", k, seed=0)
    images, _, _ = pooled_images(rare_data)
    held_out = [Path(p) for y in yamls for p in (y.parent / "val.txt").read_text().split()]
    assert sorted(held_out) == sorted(images), "the val folds partition train+val"
    assert len(images) == 30
    for y in yamls:
        train = set((y.parent / "train.txt").read_text().split())
        val = set((y.parent / "val.txt").read_text().split())
        assert not train & val and len(train) + len(val) == len(images)
        assert all(Path(p).is_file() and "images" in Path(p).parts for p in train | val), "lists name the original files"
        spec = yaml.safe_load(y.read_text())
        assert spec["names"] == {0: "circle", 1: "square", 2: "triangle", 3: "cross"}
    sizes = [len((y.parent / "val.txt").read_text().split()) for y in yamls]
    assert max(sizes) - min(sizes) <= 1, sizes
    assert not list(tmp_path.rglob("*.jpg")), "no image is copied"


@pytest.mark.parametrize("seed", range(5))
def test_a_rare_class_is_spread_over_the_folds(rare_data: Path, seed: int) -> None:
    images, _, _ = pooled_images(rare_data)
    labels = [image_classes(im) for im in images]
    folds = stratified_folds(labels, 3, seed)
    rare = Counter(f for f, s in zip(folds, labels) if RARE in s)
    # 3 images with the class, 3 folds: one each (a plain random deal does this 2 times in 9).
    assert sorted(rare.values()) == [1, 1, 1], rare
    for c in (0, 1, 2):
        per_fold = Counter(f for f, s in zip(folds, labels) if c in s)
        assert len(per_fold) == 3 and max(per_fold.values()) - min(per_fold.values()) <= 3, (c, per_fold)
    assert sorted(Counter(folds).values()) == [10, 10, 10]


def test_folds_are_reproducible_with_a_seed(rare_data: Path) -> None:
    images, _, _ = pooled_images(rare_data)
    labels = [image_classes(im) for im in images]
    assert stratified_folds(labels, 3, seed=7) == stratified_folds(labels, 3, seed=7)
    assert stratified_folds(labels, 3, seed=7) != stratified_folds(labels, 3, seed=8)


def test_test_split_is_left_alone(tmp_path: Path) -> None:
    data = synth_dataset(tmp_path / "d", images=8, imgsz=64, seed=1)
    spec = yaml.safe_load(data.read_text())
    spec["test"] = "images/val"
    data.write_text(yaml.safe_dump(spec))
    (fold1, _) = write_folds(data, tmp_path / "splits", 2)
    assert yaml.safe_load(fold1.read_text())["test"] == str(tmp_path / "d" / "images" / "val")


def test_too_many_folds_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = synth_dataset(tmp_path / "d", images=4, imgsz=64, seed=1)
    code = main(["train", "--data", str(data), "--folds", "5", "--imgsz", "64", "--project", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "folds=5: only 4 images" in err[0], err


@pytest.fixture(scope="module")
def kfold_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`edge-rt train --folds 2`: the demo model fine-tuned 1 epoch at 64 px on 16 images, per fold."""
    root = tmp_path_factory.mktemp("kfold_run")
    data = synth_dataset(root / "data", images=16, imgsz=64, seed=2, val_fraction=0.25)
    out = root / "stdout.txt"
    import contextlib

    with out.open("w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        code = main(
            ["train", "--data", str(data), "--model", str(DEMO_PT), "--folds", "2", "--epochs", "1", "--imgsz", "64"]
            + ["--batch", "8", "--project", str(root / "runs"), "--name", "cv", "--seed", "3"]
        )
    assert code == 0
    return root / "runs" / "cv", out.read_text()


def test_kfold_trains_each_fold_and_summarises(kfold_run: tuple[Path, str]) -> None:
    root, stdout = kfold_run
    report = json.loads((root / "kfold.json").read_text())
    assert report["k"] == 2 and report["seed"] == 3 and len(report["folds"]) == 2
    held_out = []
    for fold in report["folds"]:
        assert Path(fold["weights"]).is_file() and Path(fold["weights"]).parent.parent == root / f"fold{fold['fold']}"
        assert set(fold["metrics"]) >= {"precision", "recall", "mAP50", "mAP50-95"}
        held_out += (Path(fold["data_yaml"]).parent / "val.txt").read_text().split()
        assert fold["val_images"] == 8 and fold["train_images"] == 8
    assert len(held_out) == len(set(held_out)) == 16
    for key in ("precision", "recall", "mAP50", "mAP50-95"):
        values = [f["metrics"][key] for f in report["folds"]]
        s = report["summary"][key]
        assert s["mean"] == pytest.approx(sum(values) / 2)
        assert s["std"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5), "sample std over 2 folds"
    assert report["summary"]["mAP50"]["mean"] > 0.05, "the demo model finds shapes after one epoch at 64 px"
    assert "k-fold: 2/2" in stdout and "fold 2: mAP50" in stdout, "progress per fold"
    lines = stdout[stdout.index("fold  ") :].splitlines()
    assert lines[0].split() == ["fold", "train", "val", "precision", "recall", "mAP50", "mAP50-95"]
    assert any(line.startswith("mean ± std") for line in lines)
    assert stdout.strip().endswith(str(root / "kfold.json"))
