"""Clips of real people walking, with MOT ground truth and the true line crossings, for scoring trackers.

The people are cut out of Ultralytics' own photos (people.py) and walk across the emptied street of
`bus.jpg`, nearer ones lower in the picture, larger, and in front. Each scene stresses one thing a
tracker meets with people, and every scene has people entering and leaving:

- `cross`: pairs walking opposite ways meet at spread-out frames, one passing in front of the other;
- `groups`: groups of two or three walking side by side (overlapping boxes), groups passing groups;
- `stopgo`: people who slow down, stop (some while another passes in front) and walk on faster;
- `line`: people crossing the middle line both ways, pairs passing each other right on it, and some who
  walk up to the line and turn back before it.

A vertical line at x = 0.5 stands in every clip; `<stem>.lines.json` holds how many people truly crossed
it each way (the side of each person's foot point, as edge_rt's lines take it, from the drawn path),
written beside `<stem>.gt.txt` and `<stem>.seqinfo.ini` (the formats of synth_tracks.py, class 1 =
person). Deterministic for a scene and a seed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .people import PeopleKit, Placed, body_height, load_people, place, render, scene_view
from .synth_tracks import TrackBox, TrackClip, write_track_clip

SCENES = ("cross", "groups", "stopgo", "line")
LINE = ((0.5, 0.0), (0.5, 1.0))  # A -> B: `in` is towards the left (A -> B turned 90 degrees clockwise)
_SALT = 3_000_017


@dataclass(frozen=True)
class Walk:
    """One person's path: the foot point at key frames (linear between them; equal points: standing)."""

    cutout: int
    flip: bool
    gain: float
    keys: tuple[tuple[float, float, float], ...]  # (frame, x, y) in pixels, frames ascending
    bob: float  # phase of the few pixels a walker's head goes up and down

    @property
    def first(self) -> float:
        return self.keys[0][0]

    @property
    def last(self) -> float:
        return self.keys[-1][0]

    def at(self, frame: float) -> tuple[float, float, bool]:
        """Foot (x, y) at `frame` and whether the person is moving then."""
        ks = self.keys
        for (f0, x0, y0), (f1, x1, y1) in zip(ks, ks[1:]):
            if f0 <= frame <= f1:
                u = (frame - f0) / max(f1 - f0, 1e-9)
                return x0 + (x1 - x0) * u, y0 + (y1 - y0) * u, (x0, y0) != (x1, y1)
        return ks[-1][1], ks[-1][2], False


def _half_width(kit: PeopleKit, cutout: int, y: float, height: int) -> float:
    c = kit.cutouts[cutout]
    return 0.5 * body_height(y, height) * c.scale * c.bgr.shape[1] / c.bgr.shape[0]


class _Planner:
    """Builds walks for a frame size: speeds in body heights per second, entries and exits just off screen."""

    def __init__(self, kit: PeopleKit, rng: np.random.Generator, size: tuple[int, int], fps: float) -> None:
        self.kit, self.rng, self.fps = kit, rng, fps
        self.width, self.height = size

    def person(self) -> tuple[int, bool, float]:
        return int(self.rng.integers(len(self.kit.cutouts))), bool(self.rng.random() < 0.5), float(self.rng.uniform(0.85, 1.15))

    def ground(self, lo: float = 0.62, hi: float = 0.97) -> float:
        return float(self.rng.uniform(lo, hi)) * self.height

    def speed(self, y: float) -> float:
        """Pixels per frame: 0.55-0.9 body heights per second, as people walk."""
        return float(self.rng.uniform(0.55, 0.9)) * body_height(y, self.height) / self.fps

    def walk(
        self,
        look: tuple[int, bool, float],
        y: float,
        rightwards: bool,
        through: tuple[float, float],
        speed: float,
        drift: float = 0.0,
        stops: tuple[tuple[float, float], ...] = (),
        after: float = 1.0,
    ) -> Walk:
        """Across the frame, passing x = through[0] at frame through[1]; `stops`: (x, frames) standing still;
        `after`: speed factor once past `through`; `drift`: pixels the path descends over the frame's width."""
        cutout, flip, gain = look
        sign = 1.0 if rightwards else -1.0
        margin = _half_width(self.kit, cutout, y + abs(drift), self.height) + 4
        start_x, end_x = (-margin, self.width + margin) if rightwards else (self.width + margin, -margin)
        x_at, t_at = through

        def y_of(x: float) -> float:
            return y + drift * (x - x_at) / self.width

        marks = sorted({start_x, end_x, x_at, *(x for x, _ in stops)}, key=lambda v: sign * v)
        keys: list[tuple[float, float, float]] = []
        t = 0.0
        for i, x in enumerate(marks):
            if i:
                past = sign * (x - x_at) > 0
                t += abs(x - marks[i - 1]) / (speed * (after if past else 1.0))
            keys.append((t, x, y_of(x)))
            pause = next((f for sx, f in stops if sx == x), 0.0)
            if pause:
                t += pause
                keys.append((t, x, y_of(x)))
        t_through = next(k[0] for k in keys if k[1] == x_at)
        shift = t_at - t_through
        return Walk(cutout, flip, gain, tuple((f + shift, x, yy) for f, x, yy in keys), float(self.rng.uniform(0, 2 * math.pi)))


def _cross(p: _Planner, frames: int) -> list[Walk]:
    out = []
    for k in range(4):
        t = frames * (0.15 + 0.7 * (k + 0.5) / 4)
        x = float(p.rng.uniform(0.3, 0.7)) * p.width
        y = p.ground(0.66, 0.9)
        y2 = y + float(p.rng.uniform(15, 45)) * float(p.rng.choice([-1, 1]))
        right = bool(p.rng.random() < 0.5)
        out.append(p.walk(p.person(), y, right, (x, t), p.speed(y), drift=float(p.rng.uniform(-40, 40))))
        out.append(p.walk(p.person(), y2, not right, (x, t), p.speed(y2), drift=float(p.rng.uniform(-40, 40))))
    return out


def _groups(p: _Planner, frames: int) -> list[Walk]:
    out = []
    plan = ((0.35, True, 3), (0.35, False, 2), (0.7, True, 2), (0.75, False, 3))
    for when, right, members in plan:
        t, x = frames * when, float(p.rng.uniform(0.35, 0.65)) * p.width
        y = p.ground(0.68, 0.88)
        speed = p.speed(y)
        for m in range(members):
            dy = float(p.rng.uniform(-25, 25)) + (m - members / 2) * 8
            dx = m * float(p.rng.uniform(0.25, 0.45)) * body_height(y, p.height) * (-1 if right else 1)
            after = float(p.rng.uniform(1.3, 1.6)) if m == members - 1 and when > 0.5 else 1.0  # one leaves the group
            out.append(p.walk(p.person(), y + dy, right, (x + dx, t), speed, after=after))
    return out


def _stopgo(p: _Planner, frames: int) -> list[Walk]:
    out = []
    for k in range(3):
        t = frames * (0.2 + 0.6 * (k + 0.5) / 3)
        x = float(p.rng.uniform(0.35, 0.65)) * p.width
        y_far = p.ground(0.62, 0.75)
        y_near = y_far + float(p.rng.uniform(30, 60))
        right = bool(p.rng.random() < 0.5)
        wait = float(p.rng.uniform(0.8, 1.6)) * p.fps
        # the far one stands still while the near one passes in front of it, then walks on faster
        out.append(p.walk(p.person(), y_far, right, (x, t - wait / 2), p.speed(y_far), stops=((x, wait),), after=1.5))
        out.append(p.walk(p.person(), y_near, not right, (x, t), p.speed(y_near) * 1.2, after=0.6))
    return out


def _line(p: _Planner, frames: int) -> list[Walk]:
    mid = LINE[0][0] * p.width
    out = []
    for k in range(3):  # pairs passing each other on the line, one in front of the other
        t = frames * (0.2 + 0.55 * k / 2)
        y = p.ground(0.68, 0.9)
        y2 = y + float(p.rng.uniform(10, 35)) * float(p.rng.choice([-1, 1]))
        right = bool(p.rng.random() < 0.5)
        out.append(p.walk(p.person(), y, right, (mid, t), p.speed(y)))
        out.append(p.walk(p.person(), y2, not right, (mid, t + float(p.rng.uniform(-4, 4))), p.speed(y2)))
    for k in range(2):  # one each way, walking up to the line, standing a moment and turning back
        y = p.ground(0.7, 0.92)
        right = k == 0
        look = p.person()
        speed = p.speed(y)
        short = _half_width(p.kit, look[0], y, p.height) * float(p.rng.uniform(0.3, 0.7))  # the box straddles the line
        turn = mid - short if right else mid + short
        entry = -_half_width(p.kit, look[0], y, p.height) - 4 if right else p.width + _half_width(p.kit, look[0], y, p.height) + 4
        t0 = frames * (0.1 + 0.45 * k)
        t1 = t0 + abs(turn - entry) / speed
        t2 = t1 + p.fps * float(p.rng.uniform(0.5, 1.0))
        keys = ((t0, entry, y), (t1, turn, y), (t2, turn, y), (t2 + abs(turn - entry) / speed, entry, y))
        out.append(Walk(look[0], not look[1] if k else look[1], look[2], keys, float(p.rng.uniform(0, 2 * math.pi))))
    y = p.ground(0.75, 0.95)  # and one who crosses alone
    out.append(p.walk(p.person(), y, True, (mid, frames * 0.6), p.speed(y)))
    return out


_BUILD = {"cross": _cross, "groups": _groups, "stopgo": _stopgo, "line": _line}


def plan_scene(kit: PeopleKit, scene: str, frames: int, size: tuple[int, int], fps: float, seed: int) -> list[Walk]:
    if scene not in _BUILD:
        raise ValueError(f"scene {scene!r}: choose from {', '.join(SCENES)}")
    rng = np.random.default_rng([seed, SCENES.index(scene), _SALT])
    return _BUILD[scene](_Planner(kit, rng, size, fps), frames)


def iter_people_clip(
    scene: str,
    frames: int = 300,
    size: tuple[int, int] = (1280, 720),
    fps: float = 30.0,
    seed: int = 0,
    kit: PeopleKit | None = None,
) -> Iterator[tuple[np.ndarray, list[TrackBox], dict[int, tuple[float, float]]]]:
    """(BGR frame, true boxes, each walker's foot point) per frame; ids in order of first appearance."""
    kit = load_people() if kit is None else kit
    width, height = size
    walks = plan_scene(kit, scene, frames, size, fps, seed)
    background = scene_view(kit.scenes[0], size)
    rng = np.random.default_rng([seed, _SALT])
    ids: dict[int, int] = {}
    for f in range(frames):
        live = []
        for i, w in enumerate(walks):
            if w.first <= f <= w.last:
                x, y, moving = w.at(f)
                bob = 2.5 * math.sin(w.bob + 2 * math.pi * f / (0.5 * fps)) if moving else 0.0
                live.append(
                    (y, i, x, place(kit.cutouts[w.cutout], w.cutout, (x, y + bob), body_height(y, height), w.flip, w.gain))
                )
        live.sort(key=lambda v: v[0])  # far (higher up) first: the nearer one is drawn over it
        placed: list[Placed] = [v[3] for v in live]
        image, boxes = render(kit, background, placed)
        image = np.clip(image.astype(np.int16) + rng.integers(-3, 4, image.shape), 0, 255).astype(np.uint8)
        out, feet = [], {}
        for (y, i, x, _), (x1, y1, x2, y2, vis, inside) in zip(live, boxes):
            if inside <= 0 or x2 - x1 < 1 or y2 - y1 < 1:
                continue
            tid = ids.setdefault(i, len(ids) + 1)
            out.append(TrackBox(tid, 0, x1, y1, x2, y2, round(vis, 4), round(inside, 4)))
            feet[tid] = (x, y)
        yield image, sorted(out, key=lambda b: b.track_id), feet


def true_crossings(feet: list[dict[int, tuple[float, float]]], size: tuple[int, int]) -> list[dict[str, object]]:
    """Every change of side of a person's foot point across LINE, frame by frame (true paths do not jitter)."""
    from ..tracking.zones import side_of_line

    w, h = size
    a, b = np.array(LINE[0]) * (w, h), np.array(LINE[1]) * (w, h)
    last: dict[int, float] = {}
    out: list[dict[str, object]] = []
    for f, frame in enumerate(feet):
        for tid, (x, y) in frame.items():
            s = float(side_of_line(np.array([[x, y]]), a, b, math.hypot(w, h))[0])
            if s == 0:
                continue
            if tid in last and (s > 0) != (last[tid] > 0):
                out.append({"id": tid, "frame": f + 1, "direction": "in" if s > 0 else "out"})
            last[tid] = s
    return out


def lines_file(video: Path) -> Path:
    """Where a people clip's true crossings go: `<stem>.lines.json` beside it (bench track looks there)."""
    video = Path(video)
    return video.with_name(f"{video.stem}.lines.json")


def people_clip(
    path: Path,
    scene: str = "cross",
    frames: int = 300,
    size: tuple[int, int] = (1280, 720),
    fps: int = 30,
    seed: int = 0,
    kit: PeopleKit | None = None,
) -> TrackClip:
    """Write the clip (mp4v), `<stem>.gt.txt`, `<stem>.seqinfo.ini` and `<stem>.lines.json` beside it."""
    feet: list[dict[int, tuple[float, float]]] = []

    def clip() -> Iterator[tuple[np.ndarray, list[TrackBox]]]:
        for image, boxes, at in iter_people_clip(scene, frames, size, fps, seed, kit):
            feet.append(at)
            yield image, boxes

    made = write_track_clip(path, clip(), frames, size, fps)
    crossings = true_crossings(feet, size)
    lines_file(made.video).write_text(
        json.dumps(
            {
                "scene": scene,
                "seed": seed,
                "line": {"name": "middle", "points": [list(p) for p in LINE]},
                "in": sum(c["direction"] == "in" for c in crossings),
                "out": sum(c["direction"] == "out" for c in crossings),
                "crossings": crossings,
            },
            indent=1,
        )
        + "\n"
    )
    return made
