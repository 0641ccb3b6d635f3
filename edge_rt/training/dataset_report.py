"""``dataset_report``: what is legal but skews training or its figures, for ``edge-rt dataset check``.

Class balance, background images (and empty label files), identical images (in two splits, val
leaks into train), repeated boxes, and boxes that reach past the image edge: Ultralytics checks
only that ``cx cy w h`` lie in [0, 1] and clips the rest, so a box half outside the picture (a
centre/corner mix-up, or pixels divided by the wrong side) trains quietly on the clipped part.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .dataset import SPLITS, _dataset_root, _label_path, _split_images, class_names, file_digest

EDGE_TOLERANCE = 0.005  # of the image side: rounding in converters is far smaller, a real mistake far larger


@dataclass(frozen=True)
class SplitStats:
    """What one split holds, for the class-balance table of ``dataset check``."""

    name: str
    images: int
    background: int  # images with no box: no label file, or an empty one
    empty_labels: int  # label files that exist and hold no box (counted in background too)
    instances: tuple[int, ...]  # boxes per class id
    images_per_class: tuple[int, ...]  # images with at least one box of the class
    bad_lines: int  # label lines check_dataset lists as problems (out of range, bad class, ...)


@dataclass(frozen=True)
class DuplicateImages:
    """Image files with identical bytes. In two splits, val or test leaks into train."""

    paths: tuple[Path, ...]
    splits: tuple[str, ...]  # the split each path is listed in

    @property
    def across_splits(self) -> bool:
        return len(set(self.splits)) > 1


@dataclass(frozen=True)
class DatasetReport:
    """Class balance, background images and duplicates of a dataset, per split."""

    data_yaml: Path
    names: tuple[str, ...]
    splits: tuple[SplitStats, ...]
    duplicate_images: tuple[DuplicateImages, ...]
    duplicate_boxes: tuple[str, ...]  # 'label:line repeats line k', one per repeated box
    past_edge: tuple[str, ...] = ()  # 'label:line', one per box whose cx ± w/2 or cy ± h/2 leaves [0, 1]

    def warnings(self) -> list[str]:
        """What is not wrong enough to stop training but skews it or its figures; one line each."""
        out: list[str] = []
        across = [d for d in self.duplicate_images if d.across_splits]
        within = [d for d in self.duplicate_images if not d.across_splits]
        if across:
            pairs = ", ".join(_duplicate_text(d) for d in across[:3])
            pairs += f" and {len(across) - 3} more" if len(across) > 3 else ""
            out.append(
                f"{len(across)} image(s) in more than one split: {pairs}; the held-out split leaks into train and its "
                "mAP is optimistic: keep each image in one split (edge-rt dataset split keeps identical images together)"
            )
        if within:
            pairs = ", ".join(_duplicate_text(d) for d in within[:3])
            pairs += f" and {len(within) - 3} more" if len(within) > 3 else ""
            out.append(f"{len(within)} image(s) repeated within a split: {pairs}; delete the copies (they weigh twice)")
        if self.duplicate_boxes:
            first = ", ".join(self.duplicate_boxes[:3]) + (
                f" and {len(self.duplicate_boxes) - 3} more" if len(self.duplicate_boxes) > 3 else ""
            )
            out.append(f"{len(self.duplicate_boxes)} duplicate box(es): {first}; delete the repeated lines")
        if self.past_edge:
            first = ", ".join(self.past_edge[:3]) + (f" and {len(self.past_edge) - 3} more" if len(self.past_edge) > 3 else "")
            out.append(
                f"{len(self.past_edge)} box(es) reach past the image edge: {first}; Ultralytics clips them, "
                "so check these labels ('class cx cy w h' with the centre, normalised by width and height)"
            )
        for split in self.splits:
            if split.name == "train" or split.images == 0:
                continue
            missing = [n for n, c in zip(self.names, split.instances) if c == 0]
            if missing and len(missing) < len(self.names):
                out.append(
                    f"no {', '.join(missing)} box in {split.name}: its AP cannot be measured there; move a few such images to {split.name}"
                )
        train = next((s for s in self.splits if s.name == "train"), None)
        if train is not None and max(train.instances, default=0) > 0:
            top = max(train.instances)
            rare = [f"{n} ({c})" for n, c in zip(self.names, train.instances) if c < 0.1 * top]
            if rare:
                out.append(f"rare classes in train: {', '.join(rare)} boxes against {top} for the largest; label more of them")
        return out

    def format(self) -> str:
        """The report as an aligned table plus warnings, for ``edge-rt dataset check``."""
        head = ["", *(s.name for s in self.splits)]
        rows: list[list[str]] = [head]
        rows.append(["images", *(str(s.images) for s in self.splits)])
        rows.append(["background images", *(_share(s.background, s.images) for s in self.splits)])
        rows.append(["  of which empty label files", *(str(s.empty_labels) for s in self.splits)])
        rows.append(["boxes", *(str(sum(s.instances)) for s in self.splits)])
        rows.append(["class: boxes / images", *("" for _ in self.splits)])
        for i, name in enumerate(self.names):
            rows.append([f"  {i} {name}", *(f"{s.instances[i]} / {s.images_per_class[i]}" for s in self.splits)])
        if any(s.bad_lines for s in self.splits):
            rows.append(["bad label lines (problems)", *(str(s.bad_lines) for s in self.splits)])
        widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
        lines = [f"dataset {self.data_yaml}: {len(self.names)} classes"]
        lines += [
            "  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows
        ]
        across = sum(1 for d in self.duplicate_images if d.across_splits)
        lines.append(
            f"duplicate images: {across} across splits, {len(self.duplicate_images) - across} within a split; "
            f"duplicate boxes: {len(self.duplicate_boxes)}; boxes past the image edge: {len(self.past_edge)}"
        )
        lines += [f"warning: {w}" for w in self.warnings()]
        return "\n".join(lines)


def _share(part: int, whole: int) -> str:
    return f"{part} ({100 * part / whole:.0f}%)" if whole else str(part)


def _duplicate_text(dup: DuplicateImages) -> str:
    return " = ".join(f"{p.name} ({s})" for p, s in zip(dup.paths, dup.splits))


def _label_rows(label: Path, nc: int) -> tuple[list[tuple[int, tuple[float, ...], int]], int]:
    """(class, box, line number) of each valid line, and how many lines are not valid boxes."""
    rows: list[tuple[int, tuple[float, ...], int]] = []
    bad = 0
    try:
        text = label.read_text()
    except (OSError, UnicodeDecodeError):
        return rows, 1
    for n, line in enumerate(text.splitlines(), start=1):
        cols = line.split()
        if not cols:
            continue
        try:
            values = [float(c) for c in cols]
        except ValueError:
            bad += 1
            continue
        if len(values) != 5 or values[0] != int(values[0]) or not 0 <= values[0] < nc:
            bad += 1
            continue
        box = tuple(values[1:])
        if any(not 0.0 <= v <= 1.0 for v in box) or box[2] <= 0 or box[3] <= 0:
            bad += 1
            continue
        rows.append((int(values[0]), box, n))
    return rows, bad


def dataset_report(data_yaml: Path) -> DatasetReport | None:
    """Class balance, background images and duplicates per split; None if the YAML cannot be read.

    Lines that are not valid boxes are counted, not described: ``check_dataset`` names them.
    Every image is read once to hash it, so this is slower than ``check_dataset``.
    """
    data_yaml = Path(data_yaml)
    try:
        data = yaml.safe_load(data_yaml.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(data, dict):
        return None
    names = class_names(data)
    root = _dataset_root(data_yaml, data, [])
    if names is None or root is None:
        return None
    nc = len(names)
    stats: list[SplitStats] = []
    by_hash: dict[str, list[tuple[Path, str]]] = {}
    dup_boxes: list[str] = []
    past_edge: list[str] = []
    for key in [k for k in SPLITS if data.get(k)]:
        images = [p for p in _split_images(root, data[key], key, data_yaml, []) if p.is_file()]
        instances = [0] * nc
        per_class = [0] * nc
        background = empty = bad = 0
        for image in images:
            by_hash.setdefault(file_digest(image), []).append((image, key))
            label = _label_path(image)
            if not label.is_file():
                background += 1
                continue
            rows, nbad = _label_rows(label, nc)
            bad += nbad
            if not rows:
                background += 1
                empty += nbad == 0
                continue
            seen: dict[tuple[int, tuple[float, ...]], int] = {}
            for cls, box, line in rows:
                instances[cls] += 1
                if _past_edge(box):
                    past_edge.append(f"{label}:{line}")
                k = (cls, tuple(round(v, 6) for v in box))
                if k in seen:
                    dup_boxes.append(f"{label}:{line} repeats line {seen[k]}")
                else:
                    seen[k] = line
            for cls in {r[0] for r in rows}:
                per_class[cls] += 1
        stats.append(SplitStats(key, len(images), background, empty, tuple(instances), tuple(per_class), bad))
    duplicates = tuple(
        DuplicateImages(tuple(p for p, _ in group), tuple(s for _, s in group)) for group in by_hash.values() if len(group) > 1
    )
    return DatasetReport(data_yaml, names, tuple(stats), duplicates, tuple(dup_boxes), tuple(past_edge))


def _past_edge(box: tuple[float, ...]) -> bool:
    cx, cy, w, h = box
    lo, hi = -EDGE_TOLERANCE, 1 + EDGE_TOLERANCE
    return not (lo <= cx - w / 2 and cx + w / 2 <= hi and lo <= cy - h / 2 and cy + h / 2 <= hi)
