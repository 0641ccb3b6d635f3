"""Dataset checks, in the Ultralytics layout (``images/<split>``, ``labels/<split>``, ``data.yaml``).

``check_dataset`` exists because Ultralytics reports a bad label file as a warning deep in its log
and trains on without it; we would rather refuse with one line per problem that names the file.
``dataset_report`` (in dataset_report.py) adds what is legal but skews training or its figures.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
SPLITS: tuple[str, ...] = ("train", "val", "test")

_MAX_PROBLEMS = 50  # check_dataset stops listing after this many; a broken export would print thousands


def _label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``/images/`` in the path becomes ``/labels/``, suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def label_path(image: Path) -> Path:
    """Where Ultralytics looks for the label file of ``image`` (see ``_label_path``)."""
    return _label_path(image)


def _split_images(root: Path, entry: Any, key: str, yaml_path: Path, problems: list[str]) -> list[Path]:
    """Images named by one ``train``/``val`` entry (a folder, a .txt list, or a list of those)."""
    entries = entry if isinstance(entry, list) else [entry]
    found: list[Path] = []
    for item in entries:
        if not isinstance(item, str):
            problems.append(f"{yaml_path}: '{key}' entry {item!r} is not a path; write a folder or .txt file path")
            continue
        p = Path(item)
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            imgs = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            if not imgs:
                problems.append(f"{p}: '{key}' folder has no images; put .jpg/.png files there or fix '{key}'")
            elif not _label_path(imgs[0]).parent.is_dir():
                problems.append(
                    f"{p}: no labels folder {_label_path(imgs[0]).parent} for these images; "
                    "create it with one .txt per image (an 'images' folder needs a sibling 'labels')"
                )
            found += imgs
        elif p.is_file() and p.suffix == ".txt":
            for line in p.read_text().splitlines():
                if line.strip():
                    q = Path(line.strip())
                    found.append(q if q.is_absolute() else p.parent / q)
        else:
            problems.append(f"{yaml_path}: '{key}' path {p} does not exist; fix '{key}' or 'path'")
    return found


def split_files(root: Path, entry: Any, key: str, yaml_path: Path) -> list[tuple[Path, Path]]:
    """(image, label file) for each image of one split entry; raises ValueError naming each problem."""
    problems: list[str] = []
    images = _split_images(root, entry, key, yaml_path, problems)
    if problems:
        raise ValueError("; ".join(problems))
    return [(image, _label_path(image)) for image in images]


def _check_label_file(label: Path, nc: int, problems: list[str]) -> None:
    """Append one problem per bad line of an Ultralytics detection label file."""
    try:
        text = label.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{label}: cannot read label file ({exc}); rewrite it as UTF-8 text")
        return
    for n, line in enumerate(text.splitlines(), start=1):
        cols = line.split()
        if not cols:
            continue
        where = f"{label}:{n}"
        if len(cols) != 5:
            problems.append(f"{where}: {len(cols)} columns; expected 5 'class cx cy w h' (normalised)")
            continue
        try:
            values = [float(c) for c in cols]
        except ValueError:
            problems.append(f"{where}: non-numeric value in {line.strip()!r}; use 'class cx cy w h' numbers")
            continue
        cls = values[0]
        if cls != int(cls) or cls < 0:
            problems.append(f"{where}: class id {cols[0]} is not a non-negative integer; use 0..{nc - 1}")
        elif cls >= nc:
            problems.append(f"{where}: class id {int(cls)} >= nc {nc}; use 0..{nc - 1} or add names to data.yaml")
        coords = values[1:]
        if any(not 0.0 <= v <= 1.0 for v in coords):
            problems.append(f"{where}: coordinates {cols[1:]} outside [0, 1]; divide pixels by the image width/height")
        elif coords[2] <= 0 or coords[3] <= 0:
            problems.append(f"{where}: zero-size box {cols[1:]}; remove the line or give it a width and height")


def _dataset_root(data_yaml: Path, data: dict[str, Any], problems: list[str]) -> Path | None:
    """The folder split paths are relative to (``path``, else the YAML's folder); None after a problem."""
    root_raw = data.get("path")
    if root_raw:
        root = Path(str(root_raw))
        if not root.is_absolute():
            # Ultralytics resolves a relative 'path' against the working directory, then its datasets_dir.
            if not root.exists():
                problems.append(
                    f"{data_yaml}: path '{root_raw}' is relative and not found from {Path.cwd()}; write an absolute path"
                )
                return None
            root = root.resolve()
    else:
        root = data_yaml.parent.resolve()
    if not root.is_dir():
        problems.append(f"{data_yaml}: path {root} does not exist; fix 'path'")
        return None
    return root


def require_valid(data_yaml: Path) -> None:
    """Refuse a dataset before training: one line for one problem, else a count and one line each.

    Raises:
        ValueError: the dataset has problems.
    """
    problems = check_dataset(data_yaml)
    if len(problems) == 1:
        raise ValueError(problems[0])  # it names its file (and line) and the fix
    if problems:
        listed = "\n".join(f"  {p}" for p in problems)
        raise ValueError(f"dataset {data_yaml} has {len(problems)} problem(s):\n{listed}")


def check_dataset(data_yaml: Path) -> list[str]:
    """Problems that would make an Ultralytics detection dataset train wrongly; [] means OK.

    Each problem is one line naming the file (and line) and the fix. Images without a label file
    are fine: they are background images.
    """
    data_yaml = Path(data_yaml)
    if not data_yaml.is_file():
        return [f"{data_yaml}: data yaml not found; pass the path of an existing data.yaml"]
    try:
        data = yaml.safe_load(data_yaml.read_text())
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [f"{data_yaml}: not valid YAML ({first}); fix the syntax"]
    if not isinstance(data, dict):
        return [f"{data_yaml}: expected a mapping with keys path, train, val, names; got {type(data).__name__}"]

    problems: list[str] = []
    missing = [k for k in ("train", "val") if not data.get(k)]
    if "names" not in data and "nc" not in data:
        missing.append("names")
    if missing:
        problems.append(f"{data_yaml}: missing key(s) {', '.join(missing)}; add them (see edge_rt.training.synth.synth_dataset)")

    names = data.get("names")
    nc_raw = data.get("nc")
    nc: int | None = None
    if names is not None:
        if isinstance(names, dict):
            if sorted(names, key=str) != sorted(range(len(names)), key=str):
                keys = sorted(names, key=str)
                problems.append(f"{data_yaml}: names keys {keys} must be 0..{len(names) - 1} with no gaps; renumber them")
            else:
                nc = len(names)
        elif isinstance(names, list):
            nc = len(names)
        else:
            problems.append(f"{data_yaml}: names must be a list or a {{id: name}} mapping, got {type(names).__name__}")
    if nc_raw is not None:
        if not isinstance(nc_raw, int) or isinstance(nc_raw, bool) or nc_raw < 1:
            problems.append(f"{data_yaml}: nc={nc_raw!r} must be a positive integer")
        elif nc is not None and nc != nc_raw:
            problems.append(f"{data_yaml}: nc={nc_raw} but {nc} names given; make them match")
        elif nc is None:
            nc = nc_raw
    if nc is not None and nc < 1:
        problems.append(f"{data_yaml}: names is empty; list one name per class")
    if missing:
        return problems

    root = _dataset_root(data_yaml, data, problems)
    if root is None:
        return problems

    for key in [k for k in SPLITS if data.get(k)]:
        for image in _split_images(root, data[key], key, data_yaml, problems):
            if len(problems) > _MAX_PROBLEMS:
                break
            if not image.is_file():
                problems.append(f"{image}: listed in '{key}' but missing; remove it from the list or restore the file")
                continue
            label = _label_path(image)
            if label.is_file() and nc is not None and nc >= 1:
                _check_label_file(label, nc, problems)
    if len(problems) > _MAX_PROBLEMS:
        problems = problems[:_MAX_PROBLEMS] + [f"{data_yaml}: stopped after {_MAX_PROBLEMS} problems; fix these first"]
    return problems


def class_names(data: dict[str, Any]) -> tuple[str, ...] | None:
    """Class names of a loaded data.yaml (a list, an {id: name} mapping, or numbers for a bare nc)."""
    names = data.get("names")
    if isinstance(names, list):
        return tuple(str(n) for n in names)
    if isinstance(names, dict):
        try:
            return tuple(str(names[i]) for i in range(len(names)))
        except KeyError:
            return None
    nc = data.get("nc")
    return tuple(str(i) for i in range(nc)) if isinstance(nc, int) and nc > 0 else None


def file_digest(path: Path) -> str:
    """Content hash of a file, to find identical images under different names."""
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
