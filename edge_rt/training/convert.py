"""Import COCO and Pascal VOC detection labels as an Ultralytics (YOLO) dataset.

Both end in the layout ``edge-rt dataset split`` takes (``images/`` + ``labels/``) and are then
split into a ``data.yaml``. Images are hard-linked, not copied, where the filesystem allows it:
no extra disk for a large dataset, and unlike a symlink a hard link keeps working when the source
folder moves or is not mounted in the training container. Across filesystems they are copied.
"""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from ..errors import ConfigError
from .dataset import IMAGE_SUFFIXES
from .split import SplitResult, check_fractions, split_dataset


@dataclass(frozen=True)
class ImportResult:
    """What an import converted and what it left out, and the split it wrote."""

    source: Path
    fmt: str
    images: int
    boxes: int
    names: tuple[str, ...]
    skipped: dict[str, int]  # reason -> count
    copied: int  # images copied because a hard link was not possible
    split: SplitResult

    def summary(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in self.skipped.items() if n) or "nothing"
        how = f"{self.images - self.copied} linked, {self.copied} copied"
        return (
            f"imported {self.images} images ({how}), {self.boxes} boxes, {len(self.names)} classes from {self.fmt} "
            f"{self.source}; skipped {skipped}"
        )


class _Writer:
    """Places images and label files under ``out``; refuses an ``out`` that already holds images."""

    def __init__(self, out: Path, copy: bool) -> None:
        self.out = Path(out).resolve()
        if (self.out / "images").is_dir() and any((self.out / "images").iterdir()):
            raise ConfigError(f"--out {self.out}: already has images/; pick an empty folder so datasets do not mix")
        self.copy = copy
        self.copied = 0
        self.images = 0
        self.boxes = 0

    def add(self, image: Path, rel: Path, lines: Sequence[str]) -> None:
        dst = self.out / "images" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            raise ConfigError(f"{image}: a second image maps to {dst}; give the images distinct file names")
        if self.copy:
            shutil.copy2(image, dst)
            self.copied += 1
        else:
            try:
                os.link(image, dst)
            except OSError:  # another filesystem, or one without hard links
                shutil.copy2(image, dst)
                self.copied += 1
        label = (self.out / "labels" / rel).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(f"{ln}\n" for ln in lines))  # empty file: a background image, said explicitly
        self.images += 1
        self.boxes += len(lines)


def _yolo_line(cls: int, x1: float, y1: float, x2: float, y2: float, width: float, height: float) -> str | None:
    """A normalised 'class cx cy w h' line for a pixel box clipped to the image; None if nothing is left."""
    x1, x2 = max(0.0, min(x1, width)), max(0.0, min(x2, width))
    y1, y2 = max(0.0, min(y1, height)), max(0.0, min(y2, height))
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        return None
    cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
    return f"{cls} {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"


def _image_size(path: Path) -> tuple[int, int] | None:
    im = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return None if im is None else (int(im.shape[1]), int(im.shape[0]))


# ----------------------------------------------------------------------------------------- COCO


def _coco_images_dir(json_path: Path, images: list[dict[str, Any]]) -> Path:
    """The folder the JSON's file_names are relative to, from the usual COCO layouts."""
    stem = json_path.stem.removeprefix("instances_")
    candidates = [
        json_path.parent / "images",
        json_path.parent.parent / stem,
        json_path.parent.parent / "images",
        json_path.parent,
    ]
    first = next((str(im.get("file_name", "")) for im in images if im.get("file_name")), "")
    for folder in candidates:
        if first and (folder / first).is_file():
            return folder
    raise ConfigError(f"{json_path}: cannot find its images (tried {', '.join(str(c) for c in candidates)}); pass --images DIR")


def _relative(name: str) -> Path:
    """A file name from a label file as a path under the output folder (never outside it)."""
    rel = Path(name)
    return rel if not rel.is_absolute() and ".." not in rel.parts else Path(rel.name)


def _coco_plan(
    json_path: Path, coco: dict[str, Any], images_dir: Path | None
) -> tuple[tuple[str, ...], list[tuple[Path, Path, list[str]]], Counter[str]]:
    """Class names, then (image, path under images/, label lines) per image, and what was skipped."""
    categories = sorted(coco["categories"], key=lambda c: int(c["id"]))
    index = {int(c["id"]): i for i, c in enumerate(categories)}
    names = tuple(str(c["name"]) for c in categories)
    folder = Path(images_dir) if images_dir is not None else _coco_images_dir(json_path, coco["images"])
    if not folder.is_dir():
        raise ConfigError(f"--images {folder}: not a folder; pass the folder of the JSON's images")
    by_image: dict[int, list[dict[str, Any]]] = {}
    skipped: Counter[str] = Counter()
    known = {int(im["id"]) for im in coco["images"]}
    for ann in coco["annotations"]:
        if int(ann.get("image_id", -1)) not in known:
            skipped["annotations of unknown images"] += 1
        else:
            by_image.setdefault(int(ann["image_id"]), []).append(ann)
    plan: list[tuple[Path, Path, list[str]]] = []
    for im in sorted(coco["images"], key=lambda m: str(m["file_name"])):
        path = folder / str(im["file_name"])
        if not path.is_file():
            skipped["missing images"] += 1
            continue
        width, height = im.get("width"), im.get("height")
        if not width or not height:
            size = _image_size(path)
            if size is None:
                skipped["unreadable images"] += 1
                continue
            width, height = size
        lines = []
        for ann in by_image.get(int(im["id"]), []):
            if ann.get("iscrowd"):
                skipped["crowd annotations"] += 1
                continue
            cls = index.get(int(ann.get("category_id", -1)))
            bbox = ann.get("bbox")
            if cls is None or not isinstance(bbox, list) or len(bbox) != 4:
                skipped["annotations without a known category or bbox"] += 1
                continue
            x, y, w, h = (float(v) for v in bbox)
            line = _yolo_line(cls, x, y, x + w, y + h, float(width), float(height))
            if line is None:
                skipped["boxes with no area in the image"] += 1
            else:
                lines.append(line)
        plan.append((path, _relative(str(im["file_name"])), lines))
    return names, plan, skipped


def import_coco(
    json_path: Path,
    out: Path,
    images_dir: Path | None = None,
    copy: bool = False,
    val: float = 0.2,
    test: float = 0.0,
    seed: int = 0,
) -> ImportResult:
    """Convert one COCO instances JSON and its images folder into a split YOLO dataset under ``out``.

    Category ids (COCO's have gaps: 1..90 for 80 classes) become 0..n-1 in id order, names kept;
    crowd annotations (``iscrowd: 1``, a region of many objects) are skipped and counted, as are
    boxes with no area inside the image and annotations of images missing on disk.
    """
    check_fractions(val, test)
    json_path = Path(json_path)
    if not json_path.is_file():
        raise ConfigError(f"{json_path}: COCO JSON not found; pass the instances_*.json file")
    try:
        coco = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{json_path}: not valid JSON ({exc}); pass a COCO instances file") from None
    if not isinstance(coco, dict) or not all(isinstance(coco.get(k), list) for k in ("images", "annotations", "categories")):
        raise ConfigError(f"{json_path}: expected a COCO object with 'images', 'annotations' and 'categories' lists")
    if not coco["categories"]:
        raise ConfigError(f"{json_path}: 'categories' is empty; a detection JSON names its classes there")
    try:
        names, plan, skipped = _coco_plan(json_path, coco, images_dir)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{json_path}: malformed COCO entry ({type(exc).__name__}: {exc}); each image needs id and file_name, "
            "each category id and name, each annotation image_id, category_id and a 4-number bbox"
        ) from None
    writer = _Writer(out, copy)
    for path, rel, lines in plan:
        writer.add(path, rel, lines)
    return _finish(writer, json_path, "coco", names, skipped, val, test, seed)


# ------------------------------------------------------------------------------------------ VOC


def _voc_objects(xml_path: Path) -> tuple[ET.Element, list[tuple[str, bool, tuple[float, float, float, float]]]]:
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise ConfigError(f"{xml_path}: not valid XML ({exc}); fix or remove it") from None
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if not name or box is None:
            raise ConfigError(f"{xml_path}: an <object> without <name> or <bndbox>; fix the annotation")
        try:
            coords = tuple(float(box.findtext(k) or "") for k in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError:
            raise ConfigError(f"{xml_path}: <bndbox> of '{name}' needs numeric xmin, ymin, xmax, ymax in pixels") from None
        difficult = (obj.findtext("difficult") or "0").strip() in {"1", "true"}
        objects.append((name, difficult, (coords[0], coords[1], coords[2], coords[3])))
    return root, objects


def _voc_image(src: Path, xml_path: Path, root: ET.Element) -> Path | None:
    folder = src / "JPEGImages" if (src / "JPEGImages").is_dir() else xml_path.parent
    filename = (root.findtext("filename") or "").strip()
    if filename and (folder / filename).is_file():
        return folder / filename
    for suffix in sorted(IMAGE_SUFFIXES):
        if (folder / (xml_path.stem + suffix)).is_file():
            return folder / (xml_path.stem + suffix)
    return None


def import_voc(
    src: Path,
    out: Path,
    skip_difficult: bool = False,
    names: Sequence[str] | None = None,
    copy: bool = False,
    val: float = 0.2,
    test: float = 0.0,
    seed: int = 0,
) -> ImportResult:
    """Convert a Pascal VOC folder (``Annotations/*.xml`` + ``JPEGImages/``) into a split YOLO dataset.

    Class names are every ``<name>`` found, sorted, unless ``names`` fixes them (objects of other
    classes are then skipped and counted). VOC pixel coordinates are 1-based: a box becomes
    ``xmin-1 .. xmax-1``, as Ultralytics' own VOC conversion does. ``difficult`` objects are kept
    unless ``skip_difficult`` (the VOC benchmark ignores them; a detector still sees them in the field).
    """
    check_fractions(val, test)
    src = Path(src)
    annotations = src / "Annotations"
    if not annotations.is_dir():
        raise ConfigError(f"{src}: no Annotations/ folder; pass a VOC root holding Annotations/*.xml and JPEGImages/")
    xmls = sorted(annotations.glob("*.xml"))
    if not xmls:
        raise ConfigError(f"{annotations}: no .xml files; pass a VOC root with annotations")
    parsed = [(x, *_voc_objects(x)) for x in xmls]
    if names:
        class_names = tuple(n.strip() for n in names)
    else:
        class_names = tuple(sorted({name for _, _, objs in parsed for name, _, _ in objs}))
        if not class_names:
            raise ConfigError(f"{annotations}: no <object> in any file; nothing to learn from")
    index = {n: i for i, n in enumerate(class_names)}
    skipped: Counter[str] = Counter()
    plan: list[tuple[Path, Path, list[str]]] = []
    for xml_path, root, objects in parsed:
        image = _voc_image(src, xml_path, root)
        if image is None:
            skipped["missing images"] += 1
            continue
        try:
            width = float(root.findtext("size/width") or 0)
            height = float(root.findtext("size/height") or 0)
        except ValueError:
            raise ConfigError(f"{xml_path}: non-numeric <size>; write the image width and height in pixels") from None
        if width <= 0 or height <= 0:
            size = _image_size(image)
            if size is None:
                skipped["unreadable images"] += 1
                continue
            width, height = float(size[0]), float(size[1])
        lines = []
        for name, difficult, (x1, y1, x2, y2) in objects:
            if name not in index:
                skipped["objects of other classes"] += 1
            elif difficult and skip_difficult:
                skipped["difficult objects"] += 1
            elif (line := _yolo_line(index[name], x1 - 1, y1 - 1, x2 - 1, y2 - 1, width, height)) is None:
                skipped["boxes with no area in the image"] += 1
            else:
                lines.append(line)
        plan.append((image, Path(image.name), lines))
    writer = _Writer(out, copy)
    for path, rel, lines in plan:
        writer.add(path, rel, lines)
    return _finish(writer, src, "voc", class_names, skipped, val, test, seed)


def _finish(
    writer: _Writer, source: Path, fmt: str, names: Sequence[str], skipped: Counter[str], val: float, test: float, seed: int
) -> ImportResult:
    if writer.images == 0:
        raise ConfigError(f"{source}: no image could be imported ({', '.join(f'{n} {w}' for w, n in skipped.items())})")
    split = split_dataset(writer.out, val=val, test=test, seed=seed, names=list(names))
    return ImportResult(Path(source), fmt, writer.images, writer.boxes, tuple(names), dict(skipped), writer.copied, split)
