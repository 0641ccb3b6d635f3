"""Synthetic clips with true identities, for scoring trackers against ground truth.

`iter_clip` (synth_video.py) keeps its shapes apart so that detector scores stay fair; a tracker needs the
opposite: objects that enter from the edges, cross each other's paths, pass in front of each other
and leave, with the true id of every box. The shapes, sizes and backgrounds are those the demo model
was trained on (`synth.py`), so the detections a tracker gets are realistic for it.

How a clip is made (deterministic for a seed):

- Objects come in pairs that meet: both pass the same point at the same frame on paths 50-165
  degrees apart (head-on passes included). In every third pair the nearer object is a large circle
  or square and the farther one small enough to vanish behind it for a few frames (full occlusion);
  in the others the paths are offset a little, so one covers part of the other. Objects of
  different pairs cross wherever their paths happen to meet.
- Each object moves on a near-straight path (a slow sideways sway of a few pixels), at its own
  steady speed, and spins a little. It is drawn at a fixed depth: the nearer one hides the farther.
- Each gets an id in the order objects first appear (1, 2, ...), never reused.

Files: `synth_track_clip(out)` writes `out` (mp4v), `<stem>.gt.txt` beside it in MOTChallenge
format (see `edge_rt.tracking.mot`): `frame,id,bb_left,bb_top,bb_width,bb_height,1,class,visibility`
with frames from 1, the class column 1-based (1 circle, 2 square, 3 triangle, 4 cross: the demo
model's class + 1, as MOTChallenge counts classes from 1), and the box of the whole object, also when
it is partly hidden, clipped to the frame. `visibility` is the fraction of the object's pixels that
can be seen (MOT16's definition: hidden by a nearer object or outside the frame both count). A box
is written while any of the object is inside the frame, visible or not (MOTChallenge keeps occluded
people in its ground truth too). `<stem>.seqinfo.ini` holds the frame rate, length and size, as
MOTChallenge's seqinfo.ini does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from .synth import CLASS_NAMES, Shape, draw_shape, random_shape, shape_polygon, textured_background

RADIUS = (0.12, 0.2)  # relative to the shorter side, as iter_clip: the demo model detects these well at 320
_FULL_FRONT = (0.18, 0.2)  # the near object of a full occlusion: large and convex
_CONVEX = (0, 1)  # circle, square: they can hide a smaller shape completely (a cross or triangle cannot)
_SEED_SALT = 2_000_003


@dataclass(frozen=True)
class TrackBox:
    """One object in one frame: its true id, class, box (0-based pixels, clipped to the frame) and
    how much of it can be seen. `in_frame` is the fraction of its pixels inside the frame, so that
    occlusion (`visibility` well under `in_frame`) can be told from truncation at an edge."""

    track_id: int
    cls: int
    x1: float
    y1: float
    x2: float
    y2: float
    visibility: float
    in_frame: float


@dataclass(frozen=True)
class TrackClip:
    """What `synth_track_clip` wrote."""

    video: Path
    gt: Path
    seqinfo: Path
    frames: int
    fps: float
    size: tuple[int, int]
    objects: int  # ids 1..objects


@dataclass(frozen=True)
class _Walker:
    """One object's whole life: its look, and where it is at any frame (a straight line plus sway)."""

    shape: Shape  # cx, cy: where the path starts, outside the frame, at frame t0
    depth: float  # larger is nearer the camera: drawn later, hides the others
    t0: float
    vx: float  # pixels per frame
    vy: float
    sway: float  # pixels, sideways
    sway_period: float  # frames
    sway_at: float  # frame at which the sway is zero (the meeting)
    spin: float  # degrees per frame
    reach: float  # farthest outline point from the centre at any angle
    t_end: float  # frame at which it is out of the frame again

    def at(self, frame: float) -> Shape:
        s = frame - self.t0
        speed = math.hypot(self.vx, self.vy)
        px, py = -self.vy / speed, self.vx / speed
        side = self.sway * math.sin(2 * math.pi * (frame - self.sway_at) / self.sway_period)
        return replace(
            self.shape,
            cx=self.shape.cx + self.vx * s + px * side,
            cy=self.shape.cy + self.vy * s + py * side,
            angle=(self.shape.angle + self.spin * s) % 360,
        )


def _reach(shape: Shape) -> float:
    """Farthest outline point from the centre: the same at any angle, as the shape spins about it."""
    return float(np.hypot(*(shape_polygon(shape) - [shape.cx, shape.cy]).T).max())


def _travel(x: float, y: float, dx: float, dy: float, width: int, height: int, margin: float) -> float:
    """Distance from (x, y) along the unit direction (dx, dy) to where the path leaves the frame
    grown by `margin` on every side (the point where an object of that reach is wholly outside)."""
    t = math.inf
    for p, d, lo, hi in ((x, dx, -margin, width + margin), (y, dy, -margin, height + margin)):
        if d > 1e-9:
            t = min(t, (hi - p) / d)
        elif d < -1e-9:
            t = min(t, (lo - p) / d)
    return max(0.0, t)


def _look(rng: np.random.Generator, background: np.ndarray, cls: int, radius: float) -> Shape:
    """Colour, aspect, angle and shading as the training images have them; size and class as asked."""
    shape = random_shape(rng, background, cls=cls, radius_range=RADIUS)
    return replace(shape, radius=radius)


def _walker(
    rng: np.random.Generator,
    shape: Shape,
    depth: float,
    meet: tuple[float, float, float],
    heading: float,
    speed: float,
    size: tuple[int, int],
) -> _Walker:
    """An object whose path passes point (x, y) at frame t, heading `heading` (radians)."""
    width, height = size
    x, y, t = meet
    dx, dy = math.cos(heading), math.sin(heading)
    sway = float(rng.uniform(0.0, 0.04)) * min(width, height)
    reach = _reach(shape) + sway
    back = _travel(x, y, -dx, -dy, width, height, reach)
    ahead = _travel(x, y, dx, dy, width, height, reach)
    t0 = t - back / speed
    start = replace(shape, cx=x - dx * back, cy=y - dy * back)
    return _Walker(
        shape=start,
        depth=depth,
        t0=t0,
        vx=dx * speed,
        vy=dy * speed,
        sway=sway,
        sway_period=float(rng.uniform(60, 150)),
        sway_at=t,
        spin=float(rng.uniform(-1.5, 1.5)),
        reach=reach,
        t_end=t + ahead / speed,
    )


def _plan(rng: np.random.Generator, background: np.ndarray, frames: int, objects: int, crossing: float) -> list[_Walker]:
    """Pairs that meet at spread-out frames (plus one lone object when `objects` is odd)."""
    height, width = background.shape[:2]
    side = min(width, height)
    base_speed = (width + 2 * RADIUS[1] * side) / crossing
    pairs = objects // 2
    walkers: list[_Walker] = []
    for k in range(pairs):
        slot = frames * (0.2 + 0.6 * (k + 0.5) / pairs)
        full = k % 3 == 0
        if full:
            near_r = side * float(rng.uniform(*_FULL_FRONT))
            near_cls = int(rng.choice(_CONVEX))
            far_cls = int(rng.integers(0, len(CLASS_NAMES)))
            near = _look(rng, background, near_cls, near_r)
            # small enough to fit inside the near shape's inscribed circle, with room to spare
            inscribed = near_r * (0.85 if near_cls == 1 else 1.0) / math.sqrt(max(near.aspect, 1 / near.aspect))
            far = _look(rng, background, far_cls, 1.0)
            far = replace(far, radius=0.7 * inscribed / max(1e-6, _reach(far) / far.radius))
            offset = 0.0
        else:
            near = _look(rng, background, int(rng.integers(0, len(CLASS_NAMES))), side * float(rng.uniform(*RADIUS)))
            far = _look(rng, background, int(rng.integers(0, len(CLASS_NAMES))), side * float(rng.uniform(*RADIUS)))
            offset = float(rng.uniform(0.4, 0.9)) * min(near.radius, far.radius) * float(rng.choice([-1, 1]))
        best: tuple[float, list[_Walker]] | None = None
        for _ in range(40):  # prefer meetings both objects can reach from outside the frame by their slot
            mx = float(rng.uniform(0.25, 0.75)) * width
            my = float(rng.uniform(0.3, 0.7)) * height
            a = float(rng.uniform(0, 2 * math.pi))
            b = a + math.radians(float(rng.uniform(50, 165))) * float(rng.choice([-1, 1]))
            speeds = [base_speed * float(rng.uniform(0.75, 1.3)) for _ in range(2)]
            nx, ny = -math.sin(b), math.cos(b)  # the far object passes `offset` to the side of the meeting point
            depths = sorted(float(v) for v in rng.random(2))
            pair = [
                _walker(rng, near, depths[1], (mx, my, slot), a, speeds[0], (width, height)),
                _walker(rng, far, depths[0], (mx + nx * offset, my + ny * offset, slot), b, speeds[1], (width, height)),
            ]
            late = max(0.0, -min(w.t0 for w in pair))  # frames the meeting would have to move later
            if best is None or late < best[0]:
                best = (late, pair)
            if late == 0.0:
                break
        assert best is not None
        late, pair = best
        walkers += [_shift(w, late) for w in pair]
    if objects % 2:
        shape = _look(rng, background, int(rng.integers(0, len(CLASS_NAMES))), side * float(rng.uniform(*RADIUS)))
        x, y = float(rng.uniform(0.2, 0.8)) * width, float(rng.uniform(0.2, 0.8)) * height
        heading = float(rng.uniform(0, 2 * math.pi))
        speed = base_speed * float(rng.uniform(0.75, 1.3))
        w = _walker(
            rng, shape, float(rng.random()), (x, y, frames * float(rng.uniform(0.3, 0.7))), heading, speed, (width, height)
        )
        walkers.append(_shift(w, max(0.0, -w.t0)))
    return walkers


def _shift(w: _Walker, frames: float) -> _Walker:
    return replace(w, t0=w.t0 + frames, sway_at=w.sway_at + frames, t_end=w.t_end + frames) if frames else w


def _local_mask(shape: Shape, box: tuple[int, int, int, int]) -> np.ndarray:
    """Boolean mask of `shape` over the integer box (x1, y1, x2, y2), which may reach past the frame."""
    x1, y1, x2, y2 = box
    mask = np.zeros((y2 - y1, x2 - x1), np.uint8)
    pts = np.round((shape_polygon(shape) - [x1, y1]) * 16).astype(np.int32)
    cv2.fillPoly(mask, [pts], 255, cv2.LINE_8, shift=4)
    return mask > 0


def _visibility(shapes: list[Shape], width: int, height: int) -> list[tuple[float, float]]:
    """(visible, in-frame) fraction of each shape's pixels; `shapes` are ordered far to near."""
    boxes = []
    for s in shapes:
        poly = shape_polygon(s)
        x1, y1 = np.floor(poly.min(axis=0)).astype(int) - 1
        x2, y2 = np.ceil(poly.max(axis=0)).astype(int) + 1
        boxes.append((int(x1), int(y1), int(x2), int(y2)))
    out = []
    for i, (s, box) in enumerate(zip(shapes, boxes)):
        mask = _local_mask(s, box)
        total = int(mask.sum())
        if total == 0:
            out.append((0.0, 0.0))
            continue
        x1, y1, x2, y2 = box
        inside = np.zeros_like(mask)
        inside[max(0, -y1) : max(0, height - y1), max(0, -x1) : max(0, width - x1)] = True
        seen = mask & inside
        in_frame = int(seen.sum())
        for s2, b2 in zip(shapes[i + 1 :], boxes[i + 1 :]):  # every nearer shape whose box overlaps
            if b2[0] >= x2 or b2[2] <= x1 or b2[1] >= y2 or b2[3] <= y1:
                continue
            seen &= ~_local_mask(s2, box)
        out.append((int(seen.sum()) / total, in_frame / total))
    return out


def default_objects(frames: int) -> int:
    """About one object per second of a 30 frames/s clip: 10 in the default 300 frames."""
    return max(2, round(frames / 30))


def iter_track_clip(
    frames: int = 300,
    size: tuple[int, int] = (640, 360),
    seed: int = 0,
    objects: int | None = None,
    crossing: float = 150.0,
) -> Iterator[tuple[np.ndarray, list[TrackBox]]]:
    """Yield (BGR frame, boxes with true ids) for each frame; frame i of the file is MOT frame i + 1.

    `crossing` is about how many frames an object takes to cross the frame's width (each object's
    speed varies by -25%..+30% around it); `objects` defaults to `default_objects(frames)`.
    """
    width, height = size
    n = default_objects(frames) if objects is None else objects
    if n < 1 or frames < 1 or crossing <= 0:
        raise ValueError(f"frames={frames}, objects={n}, crossing={crossing}: each must be positive")
    rng = np.random.default_rng([seed, _SEED_SALT])
    background = textured_background(rng, size, texture_scale=max(width, height) / 320)
    walkers = sorted(_plan(rng, background, frames, n, crossing), key=lambda w: w.depth)  # far to near
    ids: dict[int, int] = {}  # walker -> id, given when it first shows: ids 1..n in order of appearance
    for f in range(frames):
        live = [i for i, w in enumerate(walkers) if w.t0 <= f <= w.t_end]
        shapes = [walkers[i].at(f) for i in live]
        image = background.copy()
        labels = [draw_shape(image, s) for s in shapes]
        boxes = []
        for i, s, lb, (vis, inside) in zip(live, shapes, labels, _visibility(shapes, width, height)):
            if lb.x2 - lb.x1 < 1 or lb.y2 - lb.y1 < 1 or inside == 0:
                continue
            tid = ids.setdefault(i, len(ids) + 1)
            boxes.append(TrackBox(tid, s.cls, lb.x1, lb.y1, lb.x2, lb.y2, round(vis, 4), round(inside, 4)))
        image = np.clip(image.astype(np.int16) + rng.integers(-3, 4, image.shape), 0, 255).astype(np.uint8)
        yield image, sorted(boxes, key=lambda b: b.track_id)


def synth_track_clip(
    path: Path,
    frames: int = 300,
    size: tuple[int, int] = (640, 360),
    fps: int = 30,
    seed: int = 0,
    objects: int | None = None,
    crossing: float = 150.0,
) -> TrackClip:
    """Write the clip (mp4v) to `path`, its ground truth to `<stem>.gt.txt` and `<stem>.seqinfo.ini` beside it."""
    return write_track_clip(path, iter_track_clip(frames, size, seed, objects, crossing), frames, size, fps)


def write_track_clip(
    path: Path, clip: Iterable[tuple[np.ndarray, list[TrackBox]]], frames: int, size: tuple[int, int], fps: int
) -> TrackClip:
    """Frames to `path` (mp4v), their true boxes to `<stem>.gt.txt` (MOTChallenge's class column: cls + 1) and
    `<stem>.seqinfo.ini`: the files of every clip with ground truth (shapes here, people in people_clips.py)."""
    from ..tracking.mot import MotRows, write_mot

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), float(fps), tuple(size))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write mp4v video to {path}; is this OpenCV built with FFmpeg?")
    rows: list[tuple[int, TrackBox]] = []
    try:
        for f, (image, boxes) in enumerate(clip):
            writer.write(image)
            rows += [(f + 1, b) for b in boxes]
    finally:
        writer.release()
    gt = write_mot(
        gt_path(path),
        MotRows.build(
            [f for f, _ in rows],
            [b.track_id for _, b in rows],
            [(b.x1, b.y1, b.x2, b.y2) for _, b in rows],
            classes=[b.cls + 1 for _, b in rows],
            visibility=[b.visibility for _, b in rows],
        ),
    )
    seqinfo = path.with_name(f"{path.stem}.seqinfo.ini")
    seqinfo.write_text(
        f"[Sequence]\nname={path.stem}\nimDir={path.name}\nframeRate={fps}\nseqLength={frames}\n"
        f"imWidth={size[0]}\nimHeight={size[1]}\nimExt={path.suffix}\n"
    )
    return TrackClip(path, gt, seqinfo, frames, float(fps), (int(size[0]), int(size[1])), len({b.track_id for _, b in rows}))


def gt_path(video: Path) -> Path:
    """Where `synth_track_clip` puts a clip's ground truth: `<stem>.gt.txt` beside it."""
    video = Path(video)
    return video.with_name(f"{video.stem}.gt.txt")
