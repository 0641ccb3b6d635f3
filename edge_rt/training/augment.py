"""Augmentation presets for fixed edge cameras: night, weather and fisheye views.

A fixed camera sees the same scene in conditions the training photos rarely show: an IR picture at
night, rain, fog, or a wide-angle lens bending the edges. A preset is Ultralytics hyperparameters
(``train_kwargs``) plus, where those have no knob for it, OpenCV transforms run inside Ultralytics'
own training pipeline (``register``), after its mosaic, affine, HSV and flips, before the batch is
formatted. ``edge-rt dataset preview`` builds the same pipeline, so the grid shows what training sees.

Why not Albumentations, which Ultralytics 8.4 takes as ``augmentations=[...]``: its wheel requires
``opencv-python-headless``, a second distribution of the same ``cv2`` package beside the
``opencv-python`` the runtime depends on; pip installs both into one folder, and removing or
upgrading either breaks the other. The four transforms needed here are a few lines of OpenCV each.

Randomness comes from ``random`` and ``numpy.random``, which Ultralytics seeds per data-loader worker.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..errors import ConfigError


def _uniform(bounds: tuple[float, float]) -> float:
    return float(np.random.uniform(bounds[0], bounds[1]))


@dataclass(frozen=True)
class LowLight:
    """Night: most cameras switch to a grey IR picture; darker (gain and gamma), with sensor noise."""

    p: float = 0.6
    grey_p: float = 0.8
    gain: tuple[float, float] = (0.25, 0.6)
    gamma: tuple[float, float] = (1.2, 2.0)
    noise: tuple[float, float] = (2.0, 8.0)  # sensor noise sigma in grey levels

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        if random.random() < self.p:
            labels["img"] = self.apply(labels["img"])
        return labels

    def apply(self, img: np.ndarray) -> np.ndarray:
        grey = random.random() < self.grey_p
        if grey:
            img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        x = (img.astype(np.float32) / 255.0) ** _uniform(self.gamma) * _uniform(self.gain) * 255.0
        sigma = _uniform(self.noise)
        shape = img.shape[:2] + (1,) if grey else img.shape  # a monochrome sensor's noise is grey too
        x = x + np.random.normal(0.0, sigma, shape).astype(np.float32)
        return np.clip(x, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Blur:
    """Rain on the lens, fog and a slow night shutter soften the picture: Gaussian or motion blur."""

    p: float = 0.4
    sigma: tuple[float, float] = (0.8, 2.0)  # Gaussian, in pixels of the training image
    motion_p: float = 0.5
    motion: tuple[float, float] = (0.02, 0.05)  # motion blur length, fraction of the image side

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        if random.random() < self.p:
            labels["img"] = self.apply(labels["img"])
        return labels

    def apply(self, img: np.ndarray) -> np.ndarray:
        if random.random() < self.motion_p:
            k = max(3, int(round(_uniform(self.motion) * min(img.shape[:2]))) | 1)
            kernel = np.zeros((k, k), np.float32)
            c = k // 2
            a = math.radians(_uniform((0.0, 180.0)))
            dx, dy = c * math.cos(a), c * math.sin(a)
            cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1, cv2.LINE_AA)
            return cv2.filter2D(img, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)
        return cv2.GaussianBlur(img, (0, 0), _uniform(self.sigma))


@dataclass(frozen=True)
class Rain:
    """Rain: a dimmer, flatter picture crossed by light, slanted, motion-blurred streaks."""

    p: float = 0.35
    density: tuple[float, float] = (0.001, 0.004)  # streaks per pixel
    length: tuple[float, float] = (0.03, 0.08)  # fraction of the image height
    slant: tuple[float, float] = (-20.0, 20.0)  # degrees from vertical, one angle per image
    dim: tuple[float, float] = (0.7, 0.9)

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        if random.random() < self.p:
            labels["img"] = self.apply(labels["img"])
        return labels

    def apply(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        layer = np.zeros((h, w), np.float32)
        angle = math.radians(_uniform(self.slant))
        length = _uniform(self.length) * h
        dx, dy = length * math.sin(angle), length * math.cos(angle)
        n = int(_uniform(self.density) * h * w)
        xs = np.random.uniform(-abs(dx), w + abs(dx), n)
        ys = np.random.uniform(-length, h, n)
        strength = np.random.uniform(0.3, 0.8, n)
        for x, y, s in zip(xs, ys, strength):
            cv2.line(layer, (int(x), int(y)), (int(x + dx), int(y + dy)), float(s), 1, cv2.LINE_AA)
        streaks = cv2.GaussianBlur(layer, (0, 0), 0.7)[..., None]
        base = img.astype(np.float32) * _uniform(self.dim)
        base = base * 0.85 + base.mean() * 0.15  # overcast: less contrast
        return np.clip(base + (215.0 - base) * streaks, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Fog:
    """Fog: the scene fades into a bright airlight, more with distance (the top of a fixed view)."""

    p: float = 0.35
    density: tuple[float, float] = (0.3, 0.7)  # opacity of the haze at its thickest
    airlight: tuple[float, float] = (180.0, 235.0)

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        if random.random() < self.p:
            labels["img"] = self.apply(labels["img"])
        return labels

    def apply(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        patches = np.random.uniform(0.6, 1.0, (4, 4)).astype(np.float32)
        haze = cv2.resize(patches, (w, h), interpolation=cv2.INTER_CUBIC)
        depth = np.linspace(1.0, 0.6, h, dtype=np.float32)[:, None]  # thicker towards the horizon
        opacity = np.clip(_uniform(self.density) * haze * depth, 0.0, 0.95)[..., None]
        x = img.astype(np.float32) * (1.0 - opacity) + _uniform(self.airlight) * opacity
        return np.clip(x, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Barrel:
    """Fisheye: barrel distortion about the centre; boxes follow their sampled outline.

    An output pixel at normalised radius r shows the source at r * (1 + k r^2): the middle stays,
    the edges are squeezed inwards, and the corners, which show nothing, get Ultralytics' grey 114.
    """

    p: float = 0.7
    k: tuple[float, float] = (0.15, 0.5)
    fill: int = 114
    min_side: float = 2.0  # pixels; a box squeezed below this is dropped
    samples: int = 16  # points per box edge

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        if random.random() >= self.p:
            return labels
        img = labels["img"]
        h, w = img.shape[:2]
        k = _uniform(self.k)
        labels["img"] = self.warp(img, k)
        instances = labels.get("instances")
        if instances is None or not len(instances):
            return labels
        instances.convert_bbox(format="xyxy")
        instances.denormalize(w, h)
        boxes = self.boxes(instances.bboxes, k, w, h)
        segments = instances.segments
        if segments is not None and segments.size:
            segments = self.points(segments.reshape(-1, 2), k, w, h).reshape(segments.shape)
        keypoints = instances.keypoints
        if keypoints is not None:
            keypoints = keypoints.copy()
            keypoints[..., :2] = self.points(keypoints[..., :2].reshape(-1, 2), k, w, h).reshape(keypoints[..., :2].shape)
        instances.update(bboxes=boxes, segments=segments, keypoints=keypoints)
        keep = ((boxes[:, 2] - boxes[:, 0]) >= self.min_side) & ((boxes[:, 3] - boxes[:, 1]) >= self.min_side)
        if not keep.all():
            labels["instances"] = instances[keep]
            labels["cls"] = labels["cls"][keep]
        return labels

    def warp(self, img: np.ndarray, k: float) -> np.ndarray:
        h, w = img.shape[:2]
        cx, cy, radius = (w - 1) / 2, (h - 1) / 2, math.hypot(w / 2, h / 2)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        dx, dy = (xx - cx) / radius, (yy - cy) / radius
        f = 1.0 + k * (dx * dx + dy * dy)
        mx, my = cx + dx * f * radius, cy + dy * f * radius
        return cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(self.fill,) * 3)

    @staticmethod
    def points(xy: np.ndarray, k: float, w: int, h: int) -> np.ndarray:
        """Where source points land: solve r_d (1 + k r_d^2) = r_s for r_d (Newton, monotonic for k > 0)."""
        cx, cy, radius = (w - 1) / 2, (h - 1) / 2, math.hypot(w / 2, h / 2)
        d = (xy.astype(np.float64) - (cx, cy)) / radius
        rs = np.hypot(d[:, 0], d[:, 1])
        rd = rs.copy()
        for _ in range(8):
            rd -= (rd + k * rd**3 - rs) / (1.0 + 3.0 * k * rd**2)
        scale = np.divide(rd, rs, out=np.ones_like(rs), where=rs > 1e-12)
        return (d * scale[:, None] * radius + (cx, cy)).astype(np.float32)

    def boxes(self, xyxy: np.ndarray, k: float, w: int, h: int) -> np.ndarray:
        t = np.linspace(0.0, 1.0, self.samples, dtype=np.float64)
        x1, y1, x2, y2 = (xyxy[:, i : i + 1].astype(np.float64) for i in range(4))
        xs = np.concatenate([x1 + (x2 - x1) * t, x2.repeat(len(t), 1), x1 + (x2 - x1) * t, x1.repeat(len(t), 1)], axis=1)
        ys = np.concatenate([y1.repeat(len(t), 1), y1 + (y2 - y1) * t, y2.repeat(len(t), 1), y1 + (y2 - y1) * t], axis=1)
        moved = self.points(np.stack([xs.ravel(), ys.ravel()], axis=1), k, w, h).reshape(len(xyxy), -1, 2)
        out = np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1)
        return np.clip(out, 0, [w, h, w, h]).astype(np.float32)


@dataclass(frozen=True)
class Preset:
    """One ``--augment`` choice: Ultralytics train arguments and the transforms added to its pipeline."""

    name: str
    purpose: str
    hyp: Mapping[str, Any] = field(default_factory=dict)
    ops: tuple[Any, ...] = ()


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("default", "Ultralytics' own augmentation (mosaic, HSV jitter, scale, translate, left-right flips)"),
        Preset(
            "night",
            "grey IR pictures, low light and sensor noise on 60% of images; brightness varied more",
            {"hsv_v": 0.5},
            (LowLight(),),
        ),
        Preset(
            "weather",
            "fog, rain streaks and Gaussian or motion blur, each on about a third of images; duller colours",
            {"hsv_s": 0.5, "hsv_v": 0.5},
            (Fog(), Rain(), Blur()),
        ),
        Preset(
            "fisheye",
            "wide-angle views: barrel distortion on 70% of images, stronger rotation, shear and perspective",
            {"degrees": 10.0, "shear": 5.0, "perspective": 0.0005, "translate": 0.15, "scale": 0.5},
            (Barrel(),),
        ),
    )
}


def get_preset(preset: str) -> Preset:
    """The named preset; an unknown name is a ConfigError that lists the choices."""
    try:
        return PRESETS[preset]
    except (KeyError, TypeError):
        raise ConfigError(f"--augment {preset!r}: unknown preset; choose one of {', '.join(PRESETS)}") from None


def train_kwargs(preset: str) -> dict[str, Any]:
    """Keyword arguments for Ultralytics' ``YOLO.train`` that this preset sets (a fresh dict).

    Later settings (a ``--cfg`` file, ``KEY=VALUE`` overrides) should be applied over these.
    """
    return dict(get_preset(preset).hyp)


class PresetOps:
    """The preset's transforms as one Ultralytics transform (a callable on its labels dict)."""

    def __init__(self, ops: tuple[Any, ...]) -> None:
        self.ops = ops

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        for op in self.ops:
            labels = op(labels)
        return labels


def _insert(transforms: Any, ops: tuple[Any, ...]) -> None:
    """Put the ops just before Ultralytics' Format step (the last one), once."""
    items = transforms.transforms
    if any(isinstance(t, PresetOps) for t in items):
        return
    at = len(items) - 1 if items and type(items[-1]).__name__ == "Format" else len(items)
    transforms.insert(at, PresetOps(ops))


class _KeepOps:
    """Stands in for a dataset's ``build_transforms``, so close_mosaic's rebuild keeps the preset's ops."""

    def __init__(self, dataset: Any, ops: tuple[Any, ...]) -> None:
        self.dataset = dataset
        self.ops = ops

    def __call__(self, hyp: Any) -> Any:
        transforms = type(self.dataset).build_transforms(self.dataset, hyp)
        _insert(transforms, self.ops)
        return transforms


def install(dataset: Any, preset: str) -> None:
    """Add the preset's transforms to an Ultralytics training dataset (no-op for val or a preset without any)."""
    ops = get_preset(preset).ops
    if not ops or not getattr(dataset, "augment", False):
        return
    _insert(dataset.transforms, ops)
    if not isinstance(dataset.__dict__.get("build_transforms"), _KeepOps):
        dataset.build_transforms = _KeepOps(dataset, ops)


class _BuildDataset:
    """Wraps a trainer's ``build_dataset``: its training dataset gets the preset's transforms."""

    def __init__(self, build: Any, preset: str) -> None:
        self.build = build
        self.preset = preset

    def __call__(self, img_path: Any, mode: str = "train", batch: int | None = None) -> Any:
        dataset = self.build(img_path, mode, batch)
        if mode == "train":
            install(dataset, self.preset)
        return dataset


class _OnPretrain:
    def __init__(self, preset: str) -> None:
        self.preset = preset

    def __call__(self, trainer: Any) -> None:
        if not isinstance(trainer.build_dataset, _BuildDataset):
            trainer.build_dataset = _BuildDataset(trainer.build_dataset, self.preset)


def register(yolo: Any, preset: str) -> None:
    """Make ``yolo.train`` run the preset's transforms (an Ultralytics callback); a no-op if it has none.

    Call it with ``train_kwargs(preset)`` passed to ``yolo.train``. The callback runs before the
    trainer builds its data loaders, and only in the training process: DDP workers do not see it.
    """
    if get_preset(preset).ops:
        yolo.add_callback("on_pretrain_routine_start", _OnPretrain(preset))
