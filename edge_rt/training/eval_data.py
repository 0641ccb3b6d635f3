"""What ``edge-rt eval`` scores against: a split's images and their YOLO labels.

Ground truth comes from the split's label files as Ultralytics reads them (``class cx cy w h``,
normalised; an image without a label file is a background image), in image pixels, because the
deployed pipeline reports boxes in image pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import ConfigError
from .dataset import split_files

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class EvalSet:
    """One split of a dataset: its yaml, class names and (image, label file) pairs."""

    data: Path
    split: str
    names: tuple[str, ...]
    items: tuple[tuple[Path, Path], ...]


def _names(data: dict[str, Any], data_yaml: Path) -> tuple[str, ...]:
    names = data.get("names")
    if isinstance(names, dict) and sorted(names, key=str) == sorted(range(len(names)), key=str):
        return tuple(str(names[i]) for i in range(len(names)))
    if isinstance(names, list) and names:
        return tuple(str(n) for n in names)
    nc = data.get("nc")
    if names is None and isinstance(nc, int) and not isinstance(nc, bool) and nc > 0:
        return tuple(str(i) for i in range(nc))
    raise ConfigError(f"{data_yaml}: 'names' must list the class names (a list, or 0..N-1 -> name); see edge-rt dataset check")


def _root(data: dict[str, Any], data_yaml: Path) -> Path:
    """The dataset root as check_dataset resolves it: 'path' (relative to the working directory) or the yaml's folder."""
    raw = data.get("path")
    root = Path(str(raw)) if raw else data_yaml.parent
    if not root.is_dir():
        raise ConfigError(f"{data_yaml}: path {root} is not a folder; fix 'path' (an absolute path is safest)")
    return root.resolve()


def load_split(data_yaml: Path, split: str) -> EvalSet:
    """The images and label files of ``split``; every problem is one ConfigError line naming the fix."""
    if split not in SPLITS:
        raise ConfigError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
    if not data_yaml.is_file():
        raise ConfigError(f"--data {str(data_yaml)!r}: no such file; pass a dataset YAML (Ultralytics format)")
    try:
        data = yaml.safe_load(data_yaml.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{data_yaml}: not valid YAML ({str(exc).splitlines()[0] if str(exc) else exc!r}); fix the syntax"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{data_yaml}: expected a mapping with keys path, train, val, names")
    names = _names(data, data_yaml)
    if not data.get(split):
        present = [s for s in SPLITS if data.get(s)]
        raise ConfigError(
            f"{data_yaml}: no '{split}' split; add '{split}: images/{split}' or use --split {' or '.join(present) or 'val'}"
        )
    try:
        items = split_files(_root(data, data_yaml), data[split], split, data_yaml)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not items:
        raise ConfigError(f"{data_yaml}: the '{split}' split has no images; put images there or fix '{split}'")
    missing = next((image for image, _ in items if not image.is_file()), None)
    if missing is not None:
        raise ConfigError(f"{missing}: listed in '{split}' but missing; remove it from the list or restore the file")
    if not any(label.is_file() and label.stat().st_size > 0 for _, label in items):
        raise ConfigError(
            f"{data_yaml}: the '{split}' split's {len(items)} images have no labelled objects (no label file has a line); "
            "scores need labels: label them or pick another split"
        )
    return EvalSet(data_yaml.resolve(), split, names, tuple(items))


def read_labels(label: Path, width: int, height: int, nc: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes (M,) and xyxy boxes (M, 4) in pixels of a ``width`` x ``height`` image; none when no file.

    Repeated lines count once, as Ultralytics drops duplicate labels.
    """
    if not label.is_file():
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
    rows: list[list[float]] = []
    for n, line in enumerate(label.read_text().splitlines(), start=1):
        cols = line.split()
        if not cols:
            continue
        try:
            values = [float(c) for c in cols]
        except ValueError:
            values = []
        ok = len(values) == 5 and values[0] == int(values[0]) and 0 <= values[0] < nc
        ok = ok and all(0.0 <= v <= 1.0 for v in values[1:]) and values[3] > 0 and values[4] > 0
        if not ok:
            raise ConfigError(
                f"{label}:{n}: {line.strip()!r} is not 'class cx cy w h' with class 0..{nc - 1} and coordinates in [0, 1]; "
                "edge-rt dataset check lists every such line"
            )
        rows.append(values)
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
    arr = np.unique(np.asarray(rows, np.float64), axis=0)
    cx, cy, w, h = arr[:, 1] * width, arr[:, 2] * height, arr[:, 3] * width, arr[:, 4] * height
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
    return arr[:, 0].astype(np.int64), xyxy
