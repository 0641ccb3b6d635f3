"""Data preparation: split a folder into data.yaml, import COCO / VOC, and check's report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edge_rt.errors import ConfigError
from edge_rt.training.convert import import_coco, import_voc
from edge_rt.training.dataset import check_dataset
from edge_rt.training.dataset_report import dataset_report
from edge_rt.training.split import split_dataset
from edge_rt.training.synth import Label, render_scene
from tests.helpers import assert_clean_failure, run_cli

pytestmark = pytest.mark.timeout(120)

NAMES = ["car", "person", "bike", "rare"]


def _folder(root: Path, count: int = 40, next_to: bool = False) -> Path:
    """``count`` small distinct images with labels; images 0, 8, 16, 24, 32 hold the rare class 3,
    every 10th image from 5 on is background (no label file, or an empty one)."""
    images = root if next_to else root / "images"
    labels = root if next_to else root / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        cv2.imwrite(str(images / f"im{i:03d}.png"), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        if i % 10 == 5:
            if i % 20 == 5:
                (labels / f"im{i:03d}.txt").write_text("")
            continue
        cls = 3 if i % 8 == 0 else i % 3
        (labels / f"im{i:03d}.txt").write_text(f"{cls} 0.5 0.5 0.2 0.3\n{i % 3} 0.25 0.25 0.1 0.1\n")
    return root


def _lists(root: Path) -> dict[str, list[str]]:
    return {k: (root / f"{k}.txt").read_text().splitlines() for k in ("train", "val", "test") if (root / f"{k}.txt").is_file()}


# ----------------------------------------------------------------------------------------- split


def test_split_fractions_no_overlap_and_a_valid_dataset(tmp_path: Path) -> None:
    root = _folder(tmp_path / "ds")
    result = split_dataset(root, val=0.2, test=0.1, seed=0, names=NAMES)
    lists = _lists(root)
    assert {k: len(v) for k, v in lists.items()} == {"train": 28, "val": 8, "test": 4} == result.counts
    every = [p for v in lists.values() for p in v]
    assert len(every) == len(set(every)) == 40, "each image in exactly one split"
    assert all(p.startswith("./images/") for p in every), "relative to the list: Ultralytics reads './' lines so"
    data = yaml.safe_load(result.data_yaml.read_text())
    assert data["names"] == dict(enumerate(NAMES)) and (data["train"], data["val"], data["test"]) == (
        "train.txt",
        "val.txt",
        "test.txt",
    )
    assert check_dataset(result.data_yaml) == []
    # Stratified: the rare class (5 images of 40) reaches val and test, not only train.
    for split in ("val", "test"):
        rare = [p for p in lists[split] if (root / "labels" / Path(p).with_suffix(".txt").name).read_text().startswith("3 ")]
        assert rare, f"no image of the rare class in {split}"


def test_same_seed_same_split_other_seed_other_split(tmp_path: Path) -> None:
    root = _folder(tmp_path / "ds")
    split_dataset(root, val=0.25, seed=7, names=NAMES)
    first = _lists(root)
    split_dataset(root, val=0.25, seed=7, names=NAMES)
    assert _lists(root) == first
    split_dataset(root, val=0.25, seed=8, names=NAMES)
    assert _lists(root)["val"] != first["val"]
    assert "test" not in _lists(root), "no --test, no test list"


def test_split_labels_next_to_images_and_names_from_classes_txt(tmp_path: Path) -> None:
    root = _folder(tmp_path / "flat", count=12, next_to=True)
    (root / "classes.txt").write_text("\n".join(NAMES) + "\n")
    result = split_dataset(root, val=0.25, seed=0)
    assert result.layout == "labels next to images"
    assert yaml.safe_load(result.data_yaml.read_text())["names"] == dict(enumerate(NAMES))
    assert check_dataset(result.data_yaml) == []


def test_identical_images_stay_in_one_split(tmp_path: Path) -> None:
    root = _folder(tmp_path / "ds", count=20)
    for i in range(3):  # three copies of im001 under other names
        shutil.copy(root / "images/im001.png", root / f"images/copy{i}.png")
        shutil.copy(root / "labels/im001.txt", root / f"labels/copy{i}.txt")
    for seed in range(4):
        result = split_dataset(root, val=0.3, seed=seed, names=NAMES)
        assert result.grouped_duplicates == 3
        where = {split for split, paths in _lists(root).items() for p in paths if "im001" in p or "copy" in p}
        assert len(where) == 1, f"seed {seed}: copies of one image in {where}"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"val": 0.0}, "--val 0.0: must be between 0 and 1"),
        ({"val": 0.6, "test": 0.5}, "--val + --test < 1"),
        ({"val": 0.2}, "no class names found; pass --names"),
        ({"val": 0.2, "names": ["a", "b"]}, "im000.txt:1: class id 3 but 2 names; use 0..1"),
    ],
)
def test_split_mistakes(tmp_path: Path, kwargs: dict[str, object], expected: str) -> None:
    root = _folder(tmp_path / "ds", count=10)
    with pytest.raises(ConfigError, match=expected.replace("+", r"\+")):
        split_dataset(root, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- import


def _scenes(folder: Path, count: int, size: tuple[int, int] = (96, 64)) -> dict[str, list[Label]]:
    """Synthetic images (non-square, to catch a width/height mix-up) and their true pixel boxes."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i in range(count):
        image, labels = render_scene(np.random.default_rng([5, i]), size)
        cv2.imwrite(str(folder / f"s{i}.jpg"), image)
        truth[f"s{i}.jpg"] = labels
    return truth


def _yolo_rows(label: Path) -> np.ndarray:
    text = label.read_text()
    return np.loadtxt(label, ndmin=2).reshape(-1, 5) if text.strip() else np.zeros((0, 5))


def _expected(labels: list[Label], remap: dict[int, int], size: tuple[int, int]) -> np.ndarray:
    w, h = size
    rows = [
        [remap[lb.cls], (lb.x1 + lb.x2) / 2 / w, (lb.y1 + lb.y2) / 2 / h, (lb.x2 - lb.x1) / w, (lb.y2 - lb.y1) / h]
        for lb in labels
    ]
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def test_coco_import_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "coco"
    truth = _scenes(src / "images", 6)
    cat_ids = [3, 7, 11, 90]  # COCO ids have gaps; they become 0..3 in id order
    coco: dict[str, list[dict[str, object]]] = {
        "images": [],
        "annotations": [],
        "categories": [{"id": c, "name": n} for c, n in zip(cat_ids[::-1], ["cross", "triangle", "square", "circle"])],
    }
    ann_id = 0
    for img_id, (name, labels) in enumerate(sorted(truth.items())):
        coco["images"].append({"id": img_id, "file_name": name, "width": 96, "height": 64})
        if img_id == 5:
            continue  # a background image
        for lb in labels:
            ann_id += 1
            bbox = [lb.x1, lb.y1, lb.x2 - lb.x1, lb.y2 - lb.y1]
            coco["annotations"].append(
                {"id": ann_id, "image_id": img_id, "category_id": cat_ids[lb.cls], "bbox": bbox, "iscrowd": 0}
            )
    coco["annotations"].append({"id": 999, "image_id": 0, "category_id": 3, "bbox": [0, 0, 50, 40], "iscrowd": 1})
    coco["images"].append({"id": 77, "file_name": "gone.jpg", "width": 96, "height": 64})
    (src / "annotations").mkdir()
    json_path = src / "annotations" / "instances_default.json"
    json_path.write_text(json.dumps(coco))

    result = import_coco(json_path, tmp_path / "out", val=0.34, seed=0)
    assert result.names == ("circle", "square", "triangle", "cross")
    assert result.skipped == {"crowd annotations": 1, "missing images": 1}
    assert result.images == 6 and result.copied == 0
    out = tmp_path / "out"
    for i, (name, labels) in enumerate(sorted(truth.items())):
        assert (out / "images" / name).stat().st_ino == (src / "images" / name).stat().st_ino, "a hard link, not a copy"
        got = _yolo_rows(out / "labels" / Path(name).with_suffix(".txt"))
        want = _expected(labels, {0: 0, 1: 1, 2: 2, 3: 3}, (96, 64)) if i != 5 else np.zeros((0, 5))
        np.testing.assert_allclose(got, want, atol=2e-6)
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == dict(enumerate(result.names))
    assert sum(result.split.counts.values()) == 6 and check_dataset(out / "data.yaml") == []


def _voc_xml(name: str, labels: list[Label], names: list[str], difficult: int | None = None) -> str:
    objects = "".join(
        f"<object><name>{names[lb.cls]}</name><difficult>{int(i == difficult)}</difficult><bndbox>"
        f"<xmin>{lb.x1 + 1:.4f}</xmin><ymin>{lb.y1 + 1:.4f}</ymin><xmax>{lb.x2 + 1:.4f}</xmax><ymax>{lb.y2 + 1:.4f}</ymax>"
        "</bndbox></object>"
        for i, lb in enumerate(labels)
    )
    return f"<annotation><filename>{name}</filename><size><width>96</width><height>64</height><depth>3</depth></size>{objects}</annotation>"


@pytest.mark.parametrize("skip_difficult", [False, True])
def test_voc_import_round_trip(tmp_path: Path, skip_difficult: bool) -> None:
    src = tmp_path / "VOC"
    truth = _scenes(src / "JPEGImages", 5)
    voc_names = ["zcircle", "square", "triangle", "cross"]  # sorted on import: cross, square, triangle, zcircle
    (src / "Annotations").mkdir()
    for i, (name, labels) in enumerate(sorted(truth.items())):
        (src / "Annotations" / f"{Path(name).stem}.xml").write_text(
            _voc_xml(name, labels, voc_names, difficult=0 if i == 0 else None)
        )
    result = import_voc(src, tmp_path / "out", skip_difficult=skip_difficult, val=0.4, seed=1)
    assert result.names == ("cross", "square", "triangle", "zcircle")
    remap = {0: 3, 1: 1, 2: 2, 3: 0}
    assert result.skipped == ({"difficult objects": 1} if skip_difficult else {})
    for i, (name, labels) in enumerate(sorted(truth.items())):
        kept = labels[1:] if skip_difficult and i == 0 else labels
        got = _yolo_rows(tmp_path / "out" / "labels" / Path(name).with_suffix(".txt"))
        np.testing.assert_allclose(got, _expected(kept, remap, (96, 64)), atol=2e-5)
    assert check_dataset(tmp_path / "out" / "data.yaml") == []


def test_import_cli_prints_a_summary_and_refuses_bad_input(tmp_path: Path) -> None:
    src = tmp_path / "VOC"
    truth = _scenes(src / "JPEGImages", 3)
    (src / "Annotations").mkdir()
    for name, labels in truth.items():
        (src / "Annotations" / f"{Path(name).stem}.xml").write_text(_voc_xml(name, labels, ["a", "b", "c", "d"]))
    proc = run_cli("dataset", "import", "--from", "voc", str(src), "--out", str(tmp_path / "out"), "--copy", "--val", "0.34")
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first.startswith("imported 3 images (0 linked, 3 copied)") and "skipped nothing" in first
    assert second.startswith("split 3 images (images/ + labels/") and "train 2, val 1" in second
    again = run_cli("dataset", "import", "--from", "voc", str(src), "--out", str(tmp_path / "out"))
    assert_clean_failure(again, "already has images/; pick an empty folder")
    assert_clean_failure(
        run_cli("dataset", "import", "--from", "coco", str(tmp_path / "no.json"), "--out", str(tmp_path / "o2")),
        "COCO JSON not found",
    )
    (tmp_path / "bad.json").write_text("{not json")
    assert_clean_failure(
        run_cli("dataset", "import", "--from", "coco", str(tmp_path / "bad.json"), "--out", str(tmp_path / "o3")),
        "not valid JSON",
    )
    assert_clean_failure(
        run_cli("dataset", "import", "--from", "voc", str(tmp_path), "--out", str(tmp_path / "o4")), "no Annotations/ folder"
    )
    bad_split = run_cli("dataset", "import", "--from", "voc", str(src), "--out", str(tmp_path / "o5"), "--val", "1.5")
    assert_clean_failure(bad_split, "--val 1.5: must be between 0 and 1")
    assert not (tmp_path / "o5").exists(), "a bad option is refused before any image is written"


# ----------------------------------------------------------------------------------------- check


def test_check_report_finds_leak_empty_label_and_duplicate_box(tmp_path: Path) -> None:
    root = _folder(tmp_path / "ds", count=20)
    split_dataset(root, val=0.3, seed=0, names=NAMES)
    lists = _lists(root)
    leaked = root / lists["val"][0]
    leaked_label = root / "labels" / f"{leaked.stem}.txt"
    shutil.copy(leaked, root / "images" / "leak.png")  # a val image copied into train under a new name
    if leaked_label.is_file():
        shutil.copy(leaked_label, root / "labels" / "leak.txt")
    (root / "train.txt").write_text((root / "train.txt").read_text() + "./images/leak.png\n")
    labelled = [root / "labels" / f"{Path(p).stem}.txt" for p in lists["train"]]
    boxed = next(lb for lb in labelled if lb.is_file() and lb.read_text())
    boxed.write_text(boxed.read_text() + boxed.read_text().splitlines()[0] + "\n")
    overhang = next(lb for lb in labelled if lb.is_file() and lb.read_text() and lb != boxed)
    overhang.write_text(overhang.read_text() + "0 0.95 0.5 0.2 0.2\n")  # valid numbers, but x2 = 1.05
    report = dataset_report(root / "data.yaml")
    assert report is not None
    (dup,) = report.duplicate_images
    assert dup.across_splits and set(dup.splits) == {"train", "val"}
    assert {p.name for p in dup.paths} == {"leak.png", leaked.name}
    assert len(report.duplicate_boxes) == 1 and report.duplicate_boxes[0].startswith(f"{boxed}:3 repeats line 1")
    assert report.past_edge == (f"{overhang}:{len(overhang.read_text().splitlines())}",), "only the box past the edge"
    by_split = {s.name: s for s in report.splits}
    assert by_split["train"].images + by_split["val"].images == 21
    leaked_text = leaked_label.read_text() if leaked_label.is_file() else ""
    leaked_background = int(not leaked_text)
    assert sum(s.background for s in report.splits) == 2 + leaked_background
    assert sum(s.empty_labels for s in report.splits) == 1 + int(leaked_label.is_file() and not leaked_text)
    rare = 3 + leaked_text.startswith("3 ")  # the rare class: images 0, 8, 16 (and the leaked copy of one)
    assert sum(s.instances[3] for s in report.splits) == rare
    proc = run_cli("dataset", "check", str(root / "data.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "duplicate images: 1 across splits" in proc.stdout and "  3 rare " in proc.stdout
    warnings = [ln for ln in proc.stdout.splitlines() if ln.startswith("warning:")]
    assert any("in more than one split: " in w and "leak.png (train)" in w for w in warnings), proc.stdout
    assert any("1 duplicate box(es)" in w for w in warnings), proc.stdout
    assert any(w.startswith(f"warning: 1 box(es) reach past the image edge: {overhang}:") for w in warnings), proc.stdout
    assert "  of which empty label files" in proc.stdout and "boxes past the image edge: 1" in proc.stdout
    assert_clean_failure(run_cli("dataset", "check", str(root / "data.yaml"), "--strict"), "warning(s) and --strict")


def test_check_prints_the_report_with_problems_too(tmp_path: Path) -> None:
    root = _folder(tmp_path / "ds", count=10)
    split_dataset(root, val=0.3, seed=0, names=NAMES)
    (root / "labels/im001.txt").write_text("1 1.5 0.5 0.2 0.2\n")  # out of range: a problem
    proc = run_cli("dataset", "check", str(root / "data.yaml"))
    assert proc.returncode == 2 and "class: boxes / images" in proc.stdout
    assert "bad label lines (problems)" in proc.stdout
    assert "im001.txt:1: coordinates" in proc.stderr and "1 problem(s)" in proc.stderr.splitlines()[-1]


def test_split_cli(tmp_path: Path) -> None:
    root = _folder(tmp_path / "ds", count=10)
    proc = run_cli("dataset", "split", str(root), "--val", "0.2", "--test", "0.1", "--names", ",".join(NAMES))
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stdout.strip()
        == f"split 10 images (images/ + labels/, 1 background): train 7, val 2, test 1 -> {root / 'data.yaml'}"
    )
    assert_clean_failure(run_cli("dataset", "split", str(root), "--names", "a,,b"), "empty name")
    assert_clean_failure(run_cli("dataset", "split", str(root), "--names-file", str(tmp_path / "none.txt")), "--names-file")


def test_coco_malformed_entry_is_one_line_and_paths_stay_inside_out(tmp_path: Path) -> None:
    truth = _scenes(tmp_path / "src" / "images", 3)
    images = [
        {"id": i, "file_name": str(tmp_path / "src" / "images" / n), "width": 96, "height": 64}
        for i, n in enumerate(sorted(truth))
    ]
    coco = {"images": images, "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "abs.json").write_text(json.dumps(coco))
    result = import_coco(tmp_path / "abs.json", tmp_path / "out", images_dir=tmp_path / "src" / "images", val=0.34)
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == sorted(truth), (
        "absolute names land under out/images"
    )
    assert result.images == 3 and result.boxes == 0
    del coco["images"][1]["id"]
    (tmp_path / "bad.json").write_text(json.dumps(coco))
    proc = run_cli(
        "dataset",
        "import",
        "--from",
        "coco",
        str(tmp_path / "bad.json"),
        "--out",
        str(tmp_path / "o"),
        "--images",
        str(tmp_path / "src" / "images"),
    )
    assert_clean_failure(proc, "malformed COCO entry (KeyError: 'id')")
    assert not (tmp_path / "o").exists()
