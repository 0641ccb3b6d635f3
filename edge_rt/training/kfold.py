"""K-fold cross-validation: how much a small dataset's figures move with the choice of val images.

The train and val images of a data.yaml are pooled (a test split is left alone: every fold's
data.yaml points at it unchanged), dealt into K folds, and for each fold a model is trained on the
other K-1 and evaluated (Ultralytics val of its best.pt) on the held-out one. Folds are written as
image lists (.txt) plus a data.yaml each; images and labels are never copied.

Stratification: a greedy deal, rarest classes first. An image carries several classes, so there is
no single label to stratify on. Images are taken in order of their rarest class (the class with the
fewest images), and each goes to the fold that still wants its classes most, each class's remaining
want counted relative to its share per fold (so one image of a 3-image class outweighs a tenth of a
30-image class), with fold size as one more such class and a hard limit keeping sizes within one
image. Rare classes are dealt while every fold still has room, so they spread as evenly as they can;
stratifying by the rarest class alone would do that too but let the common classes drift, and plain
iterative stratification (Sechidis et al., 2011) balanced the classes no better on synthetic sets
(largest per-class gap between folds 3-5 images against 3-4; 30-60 images, k 2-5, 20 seeds) and left
fold sizes up to 8 images apart. Ties are broken by a generator seeded with ``seed``:
the same seed gives the same folds.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edge_rt.ops.progress import Progress
from edge_rt.training.dataset import label_path, require_valid, split_files

REPORT_KEYS: tuple[str, ...] = ("precision", "recall", "mAP50", "mAP50-95")


@dataclass(frozen=True)
class FoldResult:
    """One fold: its split files, its weights and the val figures of its held-out images."""

    fold: int
    train_images: int
    val_images: int
    data_yaml: Path
    weights: Path
    metrics: Mapping[str, float]
    val_class_images: Mapping[str, int]


@dataclass(frozen=True)
class KFoldResult:
    root: Path
    folds: tuple[FoldResult, ...]
    mean: Mapping[str, float]
    std: Mapping[str, float]
    json_path: Path


def image_classes(image: Path) -> frozenset[int]:
    """Class ids present in an image's label file (none for a background image without one)."""
    label = label_path(image)
    if not label.is_file():
        return frozenset()
    return frozenset(int(float(line.split()[0])) for line in label.read_text().splitlines() if line.strip())


def stratified_folds(labels: Sequence[frozenset[int]], k: int, seed: int = 0) -> list[int]:
    """The fold (0..k-1) of each image: rarest classes dealt first, classes and fold sizes balanced.

    See the module docstring; background images (no class) come last and fill the smaller folds.

    Raises:
        ValueError: k < 2 or fewer images than folds.
    """
    n = len(labels)
    if k < 2:
        raise ValueError(f"folds={k}: need at least 2")
    if n < k:
        raise ValueError(f"folds={k}: only {n} images to share out; use at most {n} folds")
    rng = np.random.default_rng(seed)
    total = Counter(c for s in labels for c in s)
    wanted = {c: np.full(k, total[c] / k) for c in total}  # images of class c each fold still wants
    size = np.zeros(k, dtype=int)
    floor, extra = divmod(n, k)  # `extra` folds get floor + 1 images, the others floor
    tiebreak = rng.permutation(n)
    order = sorted(range(n), key=lambda i: (min((total[c] for c in labels[i]), default=n + 1), tiebreak[i]))
    fold = [-1] * n
    for i in order:
        room = size < floor + (1 if int((size > floor).sum()) < extra else 0)
        # Remaining desire per class, relative to the class's share per fold: a rare class's one
        # image outweighs a common class's tenth, and the fold size counts as one more class.
        score = sum((wanted[c] * k / total[c] for c in labels[i]), (floor + 1 - size) / (floor + 1))
        keys = np.stack([np.round(score, 9), -size, rng.random(k)])
        candidates = np.flatnonzero(room)
        j = int(candidates[np.lexsort(keys[::-1, candidates])[-1]])
        fold[i] = j
        size[j] += 1
        for c in labels[i]:
            wanted[c][j] -= 1
    return fold


def pooled_images(data_yaml: Path) -> tuple[list[Path], dict[int, str], dict[str, Any]]:
    """Train + val images of a data.yaml (each once, in order), its class names and the YAML itself."""
    data_yaml = Path(data_yaml)
    spec = yaml.safe_load(data_yaml.read_text())
    root_raw = spec.get("path")
    root = Path(str(root_raw)) if root_raw else data_yaml.parent
    root = root.resolve() if root.is_absolute() or root.exists() else (data_yaml.parent / root).resolve()
    seen: dict[Path, None] = {}  # an image listed in both splits counts once
    for key in ("train", "val"):
        for image, _ in split_files(root, spec[key], key, data_yaml):
            seen.setdefault(image.resolve(), None)
    names_raw = spec.get("names")
    names = dict(enumerate(names_raw)) if isinstance(names_raw, list) else {int(k): str(v) for k, v in dict(names_raw).items()}
    test = spec.get("test")
    if test:  # written out as absolute paths so every fold's data.yaml finds it
        entries = test if isinstance(test, list) else [test]
        spec["test"] = [str(p if Path(p).is_absolute() else root / p) for p in entries]
        if len(spec["test"]) == 1:
            spec["test"] = spec["test"][0]
    return list(seen), names, spec


def write_folds(data_yaml: Path, out: Path, k: int, seed: int = 0) -> list[Path]:
    """Write ``out/fold<i>/{train.txt,val.txt,data.yaml}`` for i in 1..k and return the data.yaml paths."""
    images, names, spec = pooled_images(data_yaml)
    folds = stratified_folds([image_classes(im) for im in images], k, seed)
    written = []
    for j in range(k):
        d = Path(out) / f"fold{j + 1}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "train.txt").write_text("".join(f"{im}\n" for im, f in zip(images, folds) if f != j))
        (d / "val.txt").write_text("".join(f"{im}\n" for im, f in zip(images, folds) if f == j))
        fold_spec: dict[str, Any] = {"path": str(d.resolve()), "train": "train.txt", "val": "val.txt"}
        if spec.get("test"):
            fold_spec["test"] = spec["test"]
        fold_spec.update(nc=len(names), names=names)
        (d / "data.yaml").write_text(yaml.safe_dump(fold_spec, sort_keys=False))
        written.append(d / "data.yaml")
    return written


def _fresh_dir(path: Path) -> Path:
    """``path``, or ``path2``, ``path3``... if taken: a second k-fold run never mixes with the first."""
    if not path.exists():
        return path
    n = 2
    while path.with_name(f"{path.name}{n}").exists():
        n += 1
    return path.with_name(f"{path.name}{n}")


def kfold(
    data: Path,
    model: str,
    k: int,
    epochs: int,
    imgsz: int,
    batch: int = 16,
    device: str = "cpu",
    project: Path = Path("runs/train"),
    name: str = "kfold",
    workers: int = 0,
    seed: int = 0,
    **train_options: Any,
) -> KFoldResult:
    """Train and evaluate one model per fold; write ``kfold.json`` with per-fold, mean and std figures.

    ``train_options`` go to :func:`edge_rt.training.train.train` (freeze, patience, overrides, augment).

    Raises:
        ValueError: a bad dataset, or too few images for ``k`` folds.
    """
    from edge_rt.training.train import make_folder, train
    from edge_rt.training.yolo_io import check_model

    data = Path(data)
    require_valid(data)
    check_model(model)
    make_folder(Path(project).resolve(), "--project")
    root = _fresh_dir(Path(project).resolve() / name)
    fold_yamls = write_folds(data, root / "splits", k, seed)
    _, names, _ = pooled_images(data)
    results = []
    with Progress(k, "k-fold") as bar:
        for i, fold_yaml in enumerate(fold_yamls, start=1):
            trained = train(
                fold_yaml,
                model,
                epochs,
                imgsz,
                batch,
                device,
                root,
                f"fold{i}",
                workers,
                seed,
                export_onnx=False,
                **train_options,
            )
            val_list = [Path(p) for p in (fold_yaml.parent / "val.txt").read_text().split()]
            train_count = len((fold_yaml.parent / "train.txt").read_text().split())
            per_class = {names[c]: sum(c in image_classes(p) for p in val_list) for c in sorted(names)}
            results.append(
                FoldResult(i, train_count, len(val_list), fold_yaml, trained.best_weights, dict(trained.metrics), per_class)
            )
            bar.update(note=f"fold {i}: mAP50 {trained.metrics['mAP50']:.3f}")
    mean, std = summarize([r.metrics for r in results])
    json_path = root / "kfold.json"
    report = {
        "data": str(data.resolve()),
        "model": model,
        "k": k,
        "seed": seed,
        "epochs": epochs,
        "imgsz": imgsz,
        "stratification": "greedy by rarest class first, balancing every class present in each image; fold sizes within one",
        "std": "sample standard deviation over folds (ddof=1)",
        "folds": [
            {
                "fold": r.fold,
                "train_images": r.train_images,
                "val_images": r.val_images,
                "data_yaml": str(r.data_yaml),
                "weights": str(r.weights),
                "metrics": dict(r.metrics),
                "val_class_images": dict(r.val_class_images),
            }
            for r in results
        ],
        "summary": {key: {"mean": mean[key], "std": std[key]} for key in mean},
    }
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    return KFoldResult(root, tuple(results), mean, std, json_path)


def summarize(per_fold: Sequence[Mapping[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and sample standard deviation (ddof=1) of each metric over the folds."""
    keys = [key for key in REPORT_KEYS if all(key in m for m in per_fold)]
    mean = {key: float(np.mean([m[key] for m in per_fold])) for key in keys}
    std = {key: float(np.std([m[key] for m in per_fold], ddof=1)) if len(per_fold) > 1 else math.nan for key in keys}
    return mean, std


def format_kfold(result: KFoldResult) -> str:
    """Per-fold rows, then mean ± std, aligned for a terminal or a README."""
    head = ["fold", "train", "val", *REPORT_KEYS]
    rows = [
        [str(r.fold), str(r.train_images), str(r.val_images), *(f"{r.metrics[key]:.3f}" for key in REPORT_KEYS)]
        for r in result.folds
    ]
    rows.append(["mean ± std", "", "", *(f"{result.mean[key]:.3f} ± {result.std[key]:.3f}" for key in REPORT_KEYS)])
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
