"""Synthetic detection data: shapes on textured backgrounds, as datasets (video: `synth_video.py`).

The project has to train, export and run a detector on a machine with no internet and no GPU, and
its tests need real images and real video. So we draw our own: a few shape classes on textured
backgrounds, written in the Ultralytics layout (``images/{train,val}``, ``labels/{train,val}``,
``data.yaml``). Everything is pure numpy + OpenCV and deterministic for a seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
"""Class id -> name of the synthetic shapes; the demo model is trained on exactly these."""

_MIN_VISIBLE = 0.6  # an occluded shape keeps at least this fraction of its pixels, so its box stays fair
_MIN_CONTRAST = 70.0  # L2 distance in RGB between a shape's fill and the background under it


@dataclass(frozen=True)
class Shape:
    """One object in a scene: what it is, where, how big, and how it looks.

    Kept as plain state (not pixels) so a video can move it a little each frame.
    """

    cls: int
    cx: float
    cy: float
    radius: float  # half the extent of the shape before the aspect stretch, in pixels
    aspect: float  # width / height stretch, near 1
    angle: float  # degrees, counter-clockwise
    color: tuple[int, int, int]  # BGR fill
    shade: float  # 0..1, strength of a linear shading across the shape, for a less flat look


@dataclass(frozen=True)
class Label:
    """A ground-truth box in pixels (x1, y1, x2, y2) for class ``cls``."""

    cls: int
    x1: float
    y1: float
    x2: float
    y2: float

    def yolo(self, width: int, height: int) -> str:
        """Ultralytics label line: class and normalised centre-x, centre-y, width, height."""
        cx = (self.x1 + self.x2) / 2 / width
        cy = (self.y1 + self.y2) / 2 / height
        w = (self.x2 - self.x1) / width
        h = (self.y2 - self.y1) / height
        return f"{self.cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


# --------------------------------------------------------------------------------------- drawing


def _as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """Accept a square size or (width, height)."""
    if isinstance(size, int):
        return size, size
    width, height = size
    return int(width), int(height)


def shape_polygon(shape: Shape) -> np.ndarray:
    """Outline of ``shape`` as an (N, 2) float array of pixel coordinates."""
    if shape.cls == 0:  # circle / ellipse
        t = np.linspace(0.0, 2 * math.pi, 48, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], axis=1)
    elif shape.cls == 1:  # square / mild rectangle
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * 0.85
    elif shape.cls == 2:  # triangle, centred on its centroid
        t = np.deg2rad(np.array([-90.0, 30.0, 150.0]))
        pts = np.stack([np.cos(t), np.sin(t)], axis=1) * 1.1
    elif shape.cls == 3:  # plus-shaped cross, arms 0.36 of the span wide
        a = 0.36
        pts = np.array(
            [[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a]],
            dtype=np.float64,
        )
    else:
        raise ValueError(f"unknown shape class {shape.cls}; expected 0..{len(CLASS_NAMES) - 1}")
    pts = pts * np.array([shape.radius * math.sqrt(shape.aspect), shape.radius / math.sqrt(shape.aspect)])
    rad = math.radians(shape.angle)
    rot = np.array([[math.cos(rad), math.sin(rad)], [-math.sin(rad), math.cos(rad)]])
    return pts @ rot.T + np.array([shape.cx, shape.cy])


def _shape_mask(shape: Shape, width: int, height: int) -> np.ndarray:
    """Boolean pixel mask of ``shape`` (sub-pixel accurate enough for occlusion bookkeeping)."""
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(shape_polygon(shape) * 16).astype(np.int32)], 255, cv2.LINE_8, shift=4)
    return mask > 0


def draw_shape(image: np.ndarray, shape: Shape) -> Label:
    """Paint ``shape`` onto ``image`` in place and return its (image-clipped) box."""
    height, width = image.shape[:2]
    poly = shape_polygon(shape)
    x1, y1 = np.clip(poly.min(axis=0), 0, [width, height])
    x2, y2 = np.clip(poly.max(axis=0), 0, [width, height])
    # Fill on a local patch, then blend with an anti-aliased mask so edges are not jagged.
    ix1, iy1 = int(max(0, math.floor(x1) - 2)), int(max(0, math.floor(y1) - 2))
    ix2, iy2 = int(min(width, math.ceil(x2) + 2)), int(min(height, math.ceil(y2) + 2))
    if ix2 > ix1 and iy2 > iy1:
        ph, pw = iy2 - iy1, ix2 - ix1
        alpha = np.zeros((ph, pw), np.uint8)
        local = np.round((poly - [ix1, iy1]) * 16).astype(np.int32)
        cv2.fillPoly(alpha, [local], 255, cv2.LINE_AA, shift=4)
        yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
        rad = math.radians(shape.angle)
        ramp = (xx - pw / 2) * math.cos(rad) + (yy - ph / 2) * math.sin(rad)
        ramp = ramp / max(1.0, float(np.abs(ramp).max()))
        fill = np.asarray(shape.color, np.float32)[None, None, :] * (1.0 + 0.35 * shape.shade * ramp[..., None])
        a = (alpha.astype(np.float32) / 255.0)[..., None]
        patch = image[iy1:iy2, ix1:ix2].astype(np.float32)
        image[iy1:iy2, ix1:ix2] = np.clip(patch * (1 - a) + fill * a, 0, 255).astype(np.uint8)
    return Label(shape.cls, float(x1), float(y1), float(x2), float(y2))


def textured_background(rng: np.random.Generator, size: int | tuple[int, int], texture_scale: float = 1.0) -> np.ndarray:
    """A BGR background of one random kind (noise, gradient, stripes, checks) plus clutter.

    Clutter (thin lines, small dots, arcs) that is never labelled teaches the model that not every
    edge or blob is an object. ``texture_scale`` enlarges the pattern for frames that are shrunk
    by that factor before the model sees them, so the texture looks the same as in training.
    """
    width, height = _as_size(size)
    kind = rng.integers(0, 4)
    c1 = rng.integers(0, 256, 3).astype(np.float32)
    c2 = rng.integers(0, 256, 3).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == 0:  # coloured noise blurred at a random scale
        cells = 16 * texture_scale
        small = rng.random((max(2, int(height / cells)), max(2, int(width / cells)), 3)).astype(np.float32)
        t = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        bg = c1 + (c2 - c1) * np.clip(t, 0, 1)
    elif kind == 1:  # linear gradient at a random angle
        ang = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(ang) + yy * math.sin(ang)
        t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
        bg = c1 + (c2 - c1) * t[..., None]
    elif kind == 2:  # sinusoidal stripes
        ang = rng.uniform(0, math.pi)
        period = rng.uniform(6, 40) * texture_scale
        t = 0.5 + 0.5 * np.sin((xx * math.cos(ang) + yy * math.sin(ang)) * 2 * math.pi / period)
        bg = c1 + (c2 - c1) * t[..., None]
    else:  # soft checks
        cell = rng.uniform(8, 48) * texture_scale
        t = np.asarray((np.floor(xx / cell) + np.floor(yy / cell)) % 2, dtype=np.float32)
        t = cv2.GaussianBlur(t, (0, 0), 1.0 * texture_scale)
        bg = c1 + (c2 - c1) * t[..., None]
    bg = bg + np.asarray(rng.normal(0, rng.uniform(2, 12), bg.shape), dtype=np.float32)
    image = np.clip(bg, 0, 255).astype(np.uint8)
    scale = min(width, height)
    for _ in range(int(rng.integers(0, 8))):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        what = rng.integers(0, 3)
        if what == 0:
            p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(image, p1, p2, color, int(rng.integers(1, 3)), cv2.LINE_AA)
        elif what == 1:
            cv2.circle(image, p1, int(rng.integers(1, max(2, scale // 60))), color, -1, cv2.LINE_AA)
        else:
            axes = (int(rng.integers(4, max(5, scale // 8))),) * 2
            start = float(rng.uniform(0, 360))
            cv2.ellipse(image, p1, axes, 0, start, start + float(rng.uniform(30, 150)), color, 1, cv2.LINE_AA)
    return image


def _contrasting_color(rng: np.random.Generator, under: np.ndarray) -> tuple[int, int, int]:
    """A saturated-ish colour far enough from the mean background under the shape to be visible."""
    mean = under.reshape(-1, 3).mean(axis=0) if under.size else np.full(3, 128.0)
    best, best_d = (255, 255, 255), -1.0
    for _ in range(12):
        hsv = np.array([[[rng.integers(0, 180), rng.integers(60, 256), rng.integers(60, 256)]]], np.uint8)
        bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float64)
        d = float(np.linalg.norm(bgr - mean))
        if d > best_d:
            best, best_d = (int(bgr[0]), int(bgr[1]), int(bgr[2])), d
        if d >= _MIN_CONTRAST:
            break
    return best


def random_shape(
    rng: np.random.Generator,
    background: np.ndarray,
    cls: int | None = None,
    radius_range: tuple[float, float] = (0.05, 0.2),
) -> Shape:
    """A random shape that fits inside ``background``, coloured to stand out from it.

    ``radius_range`` is relative to the shorter image side.
    """
    height, width = background.shape[:2]
    scale = min(width, height)
    radius = float(scale * rng.uniform(*radius_range))
    aspect = float(rng.uniform(0.75, 1.33))
    margin = radius * 1.25
    cx = float(rng.uniform(margin, max(margin + 1, width - margin)))
    cy = float(rng.uniform(margin, max(margin + 1, height - margin)))
    c = int(rng.integers(0, len(CLASS_NAMES))) if cls is None else cls
    r = int(radius)
    under = background[max(0, int(cy) - r) : int(cy) + r, max(0, int(cx) - r) : int(cx) + r]
    return Shape(
        cls=c,
        cx=cx,
        cy=cy,
        radius=radius,
        aspect=aspect,
        angle=float(rng.uniform(0, 360)),
        color=_contrasting_color(rng, under),
        shade=float(rng.uniform(0, 1)),
    )


def _place_shapes(rng: np.random.Generator, background: np.ndarray, count: int) -> list[Shape]:
    """Pick up to ``count`` shapes so that overlaps leave each one at least 60 % visible.

    Partial occlusion is realistic and wanted; a shape hidden behind another one is not, because its
    label would then describe pixels that show something else.
    """
    height, width = background.shape[:2]
    shapes: list[Shape] = []
    masks: list[np.ndarray] = []
    for _ in range(count * 6):
        if len(shapes) == count:
            break
        cand = random_shape(rng, background)
        cmask = _shape_mask(cand, width, height)
        if not cmask.any():
            continue
        ok = True
        for i, m in enumerate(masks):
            covered = m.copy()
            for later in masks[i + 1 :]:
                covered &= ~later
            remaining = covered & ~cmask
            if remaining.sum() < _MIN_VISIBLE * m.sum():
                ok = False
                break
        if ok:
            shapes.append(cand)
            masks.append(cmask)
    return shapes


def render_scene(
    rng: np.random.Generator,
    size: int | tuple[int, int],
    objects: tuple[int, int] = (1, 6),
) -> tuple[np.ndarray, list[Label]]:
    """One synthetic image (BGR uint8) and its boxes; ``size`` is a side or (width, height)."""
    background = textured_background(rng, size)
    count = int(rng.integers(objects[0], objects[1] + 1))
    shapes = _place_shapes(rng, background, count)
    return finish_frame(rng, background, shapes)


def finish_frame(rng: np.random.Generator, background: np.ndarray, shapes: Sequence[Shape]) -> tuple[np.ndarray, list[Label]]:
    """Draw ``shapes`` in order over a copy of ``background`` and add mild camera-like degradation."""
    image = background.copy()
    labels = [draw_shape(image, s) for s in shapes]
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.5, 1.2)))
    noise = rng.normal(0, float(rng.uniform(0, 6)), image.shape)
    image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return image, labels


# --------------------------------------------------------------------------------------- dataset


def synth_dataset(out: Path, images: int = 400, imgsz: int = 320, seed: int = 0, val_fraction: float = 0.2) -> Path:
    """Write a synthetic shapes dataset under ``out`` in Ultralytics layout; return its data.yaml.

    Image ``i`` is drawn from its own generator seeded with ``(seed, i)``, so a dataset is the same
    on every run and an image's pixels do not depend on how many images are asked for. The first
    ``round(images * val_fraction)`` images form the val split.
    """
    if images < 2:
        raise ValueError(f"images={images}: need at least 2 (one train, one val)")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction}: must be strictly between 0 and 1")
    out = Path(out).resolve()
    n_val = min(images - 1, max(1, round(images * val_fraction)))
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i in range(images):
        rng = np.random.default_rng([seed, i])
        split = "val" if i < n_val else "train"
        image, labels = render_scene(rng, imgsz)
        stem = f"{seed}_{i:05d}"
        cv2.imwrite(str(out / "images" / split / f"{stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        lines = [lb.yolo(imgsz, imgsz) for lb in labels]
        (out / "labels" / split / f"{stem}.txt").write_text("".join(f"{ln}\n" for ln in lines))
    data = {
        "path": str(out),
        "train": "images/train",
        "val": "images/val",
        "nc": len(CLASS_NAMES),
        "names": dict(enumerate(CLASS_NAMES)),
    }
    data_yaml = out / "data.yaml"
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    return data_yaml
