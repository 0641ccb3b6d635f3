"""Split a folder of images and YOLO labels into train/val/test lists and a data.yaml.

Images are not copied: each split is a ``.txt`` list of ``./``-relative paths (Ultralytics reads
those relative to the list file), so a split is cheap to redo and the folder stays one folder.
The split is a pure function of the folder's contents and the seed: files are sorted before they
are shuffled, so the same seed gives the same split on any machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import ConfigError
from .dataset import IMAGE_SUFFIXES, file_digest, label_path


@dataclass(frozen=True)
class SplitResult:
    """Where the split was written and how many images each part got."""

    data_yaml: Path
    counts: dict[str, int]  # split name -> images
    layout: str  # 'images/ + labels/' or 'labels next to images'
    background: int  # images without a box
    grouped_duplicates: int  # identical images kept together in one split


def find_images(root: Path) -> tuple[list[Path], str]:
    """Images under ``root`` and the layout their labels follow, as Ultralytics will look them up.

    ``root/images`` + ``root/labels`` side by side (any sub-folders, mirrored), or images with their
    ``.txt`` next to them. Ultralytics finds a label by replacing the last ``/images/`` of the image
    path with ``/labels/``, so the second layout only works where no folder on the way is named images.
    """
    if (root / "images").is_dir():
        images = sorted(p for p in (root / "images").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if images and not (root / "labels").is_dir():
            raise ConfigError(f"{root}: has images/ but no labels/ beside it; put one YOLO .txt per image in {root / 'labels'}")
        layout = "images/ + labels/"
    else:
        images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        layout = "labels next to images"
        for image in images:
            if label_path(image) != image.with_suffix(".txt"):
                raise ConfigError(
                    f"{image}: a folder on its path is named 'images', so Ultralytics would look for its labels under "
                    f"'labels/', not next to it; rename that folder or use the images/ + labels/ layout"
                )
    if not images:
        raise ConfigError(f"{root}: no images (.jpg, .png, ...) found; pass the folder that holds images/ and labels/")
    return images, layout


def read_names(root: Path, names: Sequence[str] | None = None, names_file: Path | None = None) -> list[str]:
    """Class names: --names, else --names-file, else the folder's data.yaml, else its classes.txt."""
    if names:
        return [n.strip() for n in names]
    if names_file is not None:
        if not names_file.is_file():
            raise ConfigError(f"--names-file {names_file}: not found; pass a text file with one class name per line")
        found = [ln.strip() for ln in names_file.read_text().splitlines() if ln.strip()]
        if not found:
            raise ConfigError(f"--names-file {names_file}: no names in it; write one class name per line")
        return found
    data_yaml = root / "data.yaml"
    if data_yaml.is_file():
        try:
            data = yaml.safe_load(data_yaml.read_text())
        except yaml.YAMLError:
            raise ConfigError(f"{data_yaml}: not valid YAML; fix it or pass --names a,b,c") from None
        raw = data.get("names") if isinstance(data, dict) else None
        if isinstance(raw, list) and raw:
            return [str(n) for n in raw]
        if isinstance(raw, dict) and raw:
            try:
                return [str(raw[i]) for i in range(len(raw))]
            except KeyError:
                raise ConfigError(f"{data_yaml}: names keys must be 0..{len(raw) - 1}; renumber them or pass --names") from None
    for classes in (root / "classes.txt", root / "labels" / "classes.txt"):
        if classes.is_file():
            found = [ln.strip() for ln in classes.read_text().splitlines() if ln.strip()]
            if found:
                return found
    raise ConfigError(f"{root}: no class names found; pass --names a,b,c or --names-file F, or put a classes.txt in {root}")


def _image_classes(label: Path, nc: int) -> set[int]:
    """Class ids in one label file (none for a missing or empty file); a bad id is a ConfigError."""
    if not label.is_file():
        return set()
    try:
        text = label.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{label}: cannot read label file ({exc}); rewrite it as UTF-8 text") from None
    found: set[int] = set()
    for n, line in enumerate(text.splitlines(), start=1):
        cols = line.split()
        if not cols:
            continue
        try:
            cls = int(float(cols[0]))
        except ValueError:
            raise ConfigError(f"{label}:{n}: class {cols[0]!r} is not a number; use 'class cx cy w h'") from None
        if not 0 <= cls < nc:
            raise ConfigError(f"{label}:{n}: class id {cls} but {nc} names; use 0..{nc - 1} or pass the full --names")
        found.add(cls)
    return found


def _allocate(sizes: list[int], target: int, capacity: list[int], rng: np.random.Generator) -> list[int]:
    """Split ``target`` items over strata in proportion to ``sizes`` (largest remainder), within ``capacity``."""
    total = sum(sizes)
    ideal = [s * target / total if total else 0.0 for s in sizes]
    got = [min(math.floor(x), c) for x, c in zip(ideal, capacity)]
    # Ties in the remainder go to a seeded random order, not to whichever stratum sorts first.
    order = sorted(range(len(sizes)), key=lambda i: (-(ideal[i] - math.floor(ideal[i])), rng.random()))
    while sum(got) < target:
        moved = False
        for i in order:
            if sum(got) >= target:
                break
            if got[i] < capacity[i]:
                got[i] += 1
                moved = True
        if not moved:
            break
    return got


def check_fractions(val: float, test: float) -> None:
    """Refuse split fractions that leave no training images (before any work is done)."""
    if not 0.0 < val < 1.0:
        raise ConfigError(f"--val {val}: must be between 0 and 1 (exclusive), e.g. 0.2")
    if not 0.0 <= test < 1.0 or val + test >= 1.0:
        raise ConfigError(f"--test {test}: must be >= 0 with --val + --test < 1 (got {val + test:g})")


def split_dataset(
    root: Path,
    val: float = 0.2,
    test: float = 0.0,
    seed: int = 0,
    names: Sequence[str] | None = None,
    names_file: Path | None = None,
) -> SplitResult:
    """Write ``train.txt``, ``val.txt`` (``test.txt``) and ``data.yaml`` in ``root``.

    Stratified by class: each image is filed under its rarest class (background images on their
    own), and every stratum is split in the requested fractions, so a rare class reaches val and test
    too. Identical images (same bytes) stay in one split, so val cannot leak into train.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder; pass the folder that holds the images and labels")
    check_fractions(val, test)
    images, layout = find_images(root)
    class_names = read_names(root, names, names_file)
    nc = len(class_names)
    lists = {k: root / f"{k}.txt" for k in ("train", "val", "test")}
    for image in images:
        if label_path(image) in lists.values():
            raise ConfigError(f"{image}: its label file would be overwritten by a split list; rename the image")

    # Identical images form one group that is placed as a whole.
    groups: dict[str, list[Path]] = {}
    for image in images:
        groups.setdefault(file_digest(image), []).append(image)
    members = sorted(groups.values(), key=lambda g: g[0].as_posix())
    classes = [set().union(*(_image_classes(label_path(p), nc) for p in g)) for g in members]
    frequency = [0] * nc
    for found in classes:
        for c in found:
            frequency[c] += 1
    strata: dict[int, list[int]] = {}
    for i, found in enumerate(classes):
        key = min(found, key=lambda c: (frequency[c], c)) if found else -1  # rarest class; -1: background
        strata.setdefault(key, []).append(i)

    n = len(members)
    want = {"val": max(1, round(n * val)), "test": max(1, round(n * test)) if test > 0 else 0}
    if want["val"] + want["test"] >= n:
        need = 2 + (test > 0)
        raise ConfigError(f"{root}: {n} distinct image(s) cannot fill {need} splits; add images or drop --test")
    rng = np.random.default_rng(seed)
    keys = sorted(strata)
    shuffled = {k: [strata[k][j] for j in rng.permutation(len(strata[k]))] for k in keys}
    sizes = [len(shuffled[k]) for k in keys]
    n_val = _allocate(sizes, want["val"], sizes, rng)
    n_test = _allocate(sizes, want["test"], [s - v for s, v in zip(sizes, n_val)], rng)
    assignment: dict[str, list[Path]] = {"train": [], "val": [], "test": []}
    for k, nv, nt in zip(keys, n_val, n_test):
        order = shuffled[k]
        for split, idx in (("val", order[:nv]), ("test", order[nv : nv + nt]), ("train", order[nv + nt :])):
            for i in idx:
                assignment[split] += members[i]

    for split, paths in assignment.items():
        if split == "test" and test <= 0:
            lists[split].unlink(missing_ok=True)
            continue
        lines = sorted(f"./{p.relative_to(root).as_posix()}" for p in paths)
        lists[split].write_text("".join(f"{ln}\n" for ln in lines))
    data_yaml = root / "data.yaml"
    data: dict[str, Any] = {}
    if data_yaml.is_file():
        old = yaml.safe_load(data_yaml.read_text())
        if isinstance(old, dict):  # keep keys we do not own (download, kpt_shape, ...)
            data = {k: v for k, v in old.items() if k not in {"path", "train", "val", "test", "nc", "names"}}
    data = {"path": str(root), "train": "train.txt", "val": "val.txt", **({"test": "test.txt"} if test > 0 else {}), **data}
    data["nc"] = nc
    data["names"] = dict(enumerate(class_names))
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    counts = {k: len(v) for k, v in assignment.items() if k != "test" or test > 0}
    background = sum(len(members[i]) for i in strata.get(-1, []))
    grouped = sum(len(g) - 1 for g in members)
    return SplitResult(data_yaml, counts, layout, background, grouped)
