"""Synthetic video: the shapes of `synth.py` drifting, spinning and bouncing over one background.

Real mp4 files for the demo, the source and recording tests, INT8 calibration and benchmarks; the
labels of every frame come with it (`iter_clip`) for scoring a detector on moving objects.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from .synth import CLASS_NAMES, Label, Shape, draw_shape, random_shape, shape_polygon, textured_background


@dataclass(frozen=True)
class _Mover:
    shape: Shape
    vx: float
    vy: float
    spin: float  # degrees per frame
    reach: float  # farthest outline point from the centre, in pixels, at any rotation


def _reach(shape: Shape) -> float:
    return float(np.hypot(*(shape_polygon(shape) - [shape.cx, shape.cy]).T).max())


def _start_movers(rng: np.random.Generator, background: np.ndarray, objects: int) -> list[_Mover]:
    """Place ``objects`` shapes (every class in turn) apart from each other, with random velocities."""
    height, width = background.shape[:2]
    movers: list[_Mover] = []
    for i in range(objects):
        for _ in range(50):  # the last try is kept even if it overlaps; collisions then part them
            # Larger than in the square training images: a 16:9 frame is shrunk more to fit the model input.
            shape = random_shape(rng, background, cls=i % len(CLASS_NAMES), radius_range=(0.12, 0.2))
            reach = _reach(shape)
            shape = replace(
                shape,
                cx=float(np.clip(shape.cx, reach, width - reach)),
                cy=float(np.clip(shape.cy, reach, height - reach)),
            )
            if all(math.hypot(shape.cx - m.shape.cx, shape.cy - m.shape.cy) > reach + m.reach for m in movers):
                break
        speed = float(rng.uniform(1.0, 3.5))
        heading = float(rng.uniform(0, 2 * math.pi))
        vx, vy = speed * math.cos(heading), speed * math.sin(heading)
        movers.append(_Mover(shape, vx, vy, float(rng.uniform(-3, 3)), reach))
    return movers


def _step(movers: list[_Mover], width: int, height: int) -> list[_Mover]:
    """Advance one frame: bounce off the borders and off each other (equal-mass elastic collisions).

    Shapes may touch and overlap a little (as in the training images), but never pass through each
    other, where the one behind would vanish and its label would describe pixels of another shape.
    """
    vel = [[m.vx, m.vy] for m in movers]
    for i, a in enumerate(movers):
        for j in range(i + 1, len(movers)):
            b = movers[j]
            dx, dy = b.shape.cx - a.shape.cx, b.shape.cy - a.shape.cy
            dist = math.hypot(dx, dy) or 1e-6
            nx, ny = dx / dist, dy / dist
            approach = (vel[i][0] - vel[j][0]) * nx + (vel[i][1] - vel[j][1]) * ny
            if dist < 0.8 * (a.reach + b.reach) and approach > 0:
                vel[i][0] -= approach * nx
                vel[i][1] -= approach * ny
                vel[j][0] += approach * nx
                vel[j][1] += approach * ny
    moved = []
    for m, (vx, vy) in zip(movers, vel, strict=True):
        s = m.shape
        if not m.reach <= s.cx + vx <= width - m.reach:
            vx = -vx
        if not m.reach <= s.cy + vy <= height - m.reach:
            vy = -vy
        s = replace(s, cx=s.cx + vx, cy=s.cy + vy, angle=(s.angle + m.spin) % 360)
        moved.append(replace(m, shape=s, vx=vx, vy=vy))
    return moved


def iter_clip(
    frames: int = 150, size: tuple[int, int] = (640, 360), seed: int = 0, objects: int = 5
) -> Iterator[tuple[np.ndarray, list[Label]]]:
    """Yield ``frames`` (BGR frame, labels) pairs of shapes drifting and spinning over one background.

    Shapes bounce off the borders, so they stay whole, and off each other, so they overlap only a
    little, like the training images; the ground truth then stays fair for scoring a detector.
    """
    rng = np.random.default_rng([seed, 1_000_003])
    width, height = size
    # Textures sized as in a 320 px training image once the frame is shrunk to a 320 px model input.
    background = textured_background(rng, size, texture_scale=max(width, height) / 320)
    movers = _start_movers(rng, background, objects)
    for _ in range(frames):
        image = background.copy()
        labels = [draw_shape(image, m.shape) for m in movers]
        image = np.clip(image.astype(np.int16) + rng.integers(-3, 4, image.shape), 0, 255).astype(np.uint8)
        yield image, labels
        movers = _step(movers, width, height)


def synth_clip(path: Path, frames: int = 150, size: tuple[int, int] = (640, 360), fps: int = 30, seed: int = 0) -> Path:
    """Write a moving-shapes mp4 (mp4v) to ``path``: a real video file for demos and source tests."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), float(fps), tuple(size))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write mp4v video to {path}; is this OpenCV built with FFmpeg?")
    try:
        for image, _ in iter_clip(frames=frames, size=size, seed=seed):
            writer.write(image)
    finally:
        writer.release()
    return path
