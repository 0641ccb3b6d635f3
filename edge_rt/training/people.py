"""People cut out of real photos: the material the people clips and the people detector are made of.

Trackers tuned on drawn shapes learn shapes: rigid, evenly coloured, never bending. Ultralytics ships two
photos with every install (`bus.jpg`: three people on a pavement; `zidane.jpg`: two men, waist up), so
the people here are real pixels with no download: each is cut out of its photo by GrabCut (OpenCV)
inside a hand-checked box, and the photos with their people painted out are the scenes they walk in.
GrabCut takes about 13 s on 2 cores, so the result is kept in `$EDGE_RT_CACHE/people/` (keyed by the
photos' bytes, the boxes and strokes, and OpenCV's version) and read back in a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import MissingDependencyError

# Boxes (x1, y1, x2, y2) of the people in Ultralytics' assets, checked by eye on 8.4.190's files; `scale`
# makes the waist-up men of zidane.jpg as tall, beside the walkers of bus.jpg, as their half a body would be.
_PEOPLE = {
    "bus.jpg": ((48, 399, 245, 903, 1.0), (221, 405, 344, 857, 1.0), (670, 380, 809, 875, 1.0)),
    "zidane.jpg": ((747, 41, 1142, 712, 0.55), (123, 197, 711, 712, 0.5)),
}
_PAINT_OUT = {"bus.jpg": ((0, 550, 63, 873),)}  # a person cut by the photo's edge: painted out, not used
# GrabCut alone takes blue jeans for the blue bus behind them: strokes along each body (head, trunk, legs) are
# marked as sure person, and the bus's wheel behind the man on the right as sure background. (x, y) pixels.
_BODY = {
    "bus.jpg": (
        (
            ((130, 410), (130, 470), (125, 560), (125, 650)),
            ((110, 680), (90, 800), (80, 875)),
            ((150, 680), (175, 790), (205, 870)),
        ),
        (
            ((285, 420), (285, 480), (285, 560), (280, 650)),
            ((265, 680), (265, 780), (270, 840)),
            ((300, 680), (305, 740), (290, 800)),
        ),
        (((790, 400), (785, 480), (780, 560), (780, 650)), ((775, 690), (745, 780), (705, 850)), ((790, 690), (790, 760))),
    ),
}
_NOT_BODY = {("bus.jpg", 2): ((722, 625, 32),)}  # circles (x, y, r)


@dataclass(frozen=True, eq=False)
class Cutout:
    """One person: BGR pixels and an alpha mask (float 0..1) of the same size, tight around the person.
    `scale` is how tall to draw it relative to a whole-body person standing at the same place."""

    name: str
    bgr: np.ndarray
    alpha: np.ndarray
    scale: float


@dataclass(frozen=True, eq=False)
class PeopleKit:
    cutouts: tuple[Cutout, ...]
    scenes: tuple[np.ndarray, ...]  # the photos with their people painted out, BGR


def assets_dir() -> Path:
    """Ultralytics' assets folder, found without importing Ultralytics (that imports torch: seconds)."""
    import importlib.util

    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "people clips cut people out of the photos Ultralytics ships (bus.jpg, zidane.jpg); pip install 'edge_rt[train]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "assets"


def _cut(
    image: np.ndarray,
    box: tuple[int, int, int, int],
    body: tuple[tuple[tuple[int, int], ...], ...] = (),
    not_body: tuple[tuple[int, int, int], ...] = (),
) -> np.ndarray:
    """Foreground mask (uint8 0/1) of the person in `box`, by GrabCut seeded with the box and the strokes."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    pad = 20
    cx1, cy1, cx2, cy2 = max(0, x1 - pad), max(0, y1 - pad), min(w, x2 + pad), min(h, y2 + pad)
    crop = np.ascontiguousarray(image[cy1:cy2, cx1:cx2])
    mask = np.full(crop.shape[:2], cv2.GC_BGD, np.uint8)
    mask[y1 - cy1 : y2 - cy1, x1 - cx1 : x2 - cx1] = cv2.GC_PR_FGD
    for stroke in body:
        pts = np.array([(x - cx1, y - cy1) for x, y in stroke], np.int32)
        cv2.polylines(mask, [pts], False, cv2.GC_FGD, 9)
    for x, y, r in not_body:
        cv2.circle(mask, (x - cx1, y - cy1), r, cv2.GC_BGD, -1)
    cv2.setRNGSeed(0)
    cv2.grabCut(crop, mask, (0, 0, 1, 1), np.zeros((1, 65)), np.zeros((1, 65)), 6, cv2.GC_INIT_WITH_MASK)  # rect unused
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg)
    if n > 1:  # the person is the largest piece; stray bits of background go
        fg = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    out = np.zeros((h, w), np.uint8)
    out[cy1:cy2, cx1:cx2] = fg
    return out


def load_people(root: Path | None = None) -> PeopleKit:
    """The five people and the two emptied scenes (from the cache when it has them)."""
    import hashlib
    import os

    from ..engines.base import cache_root

    root = assets_dir() if root is None else Path(root)
    key = hashlib.sha256(repr((_PEOPLE, _BODY, _NOT_BODY, _PAINT_OUT, cv2.__version__)).encode())
    for name in _PEOPLE:
        try:
            key.update((root / name).read_bytes())
        except OSError:
            raise MissingDependencyError(f"{root / name}: missing or unreadable (it ships with Ultralytics)") from None
    cached = cache_root() / "people" / f"{key.hexdigest()[:16]}.npz"
    try:
        with np.load(cached) as z:
            n = int(z["n"])
            cut = tuple(Cutout(str(z[f"name{i}"]), z[f"bgr{i}"], z[f"alpha{i}"], float(z[f"scale{i}"])) for i in range(n))
            return PeopleKit(cut, (z["scene0"], z["scene1"]))
    except (OSError, KeyError, ValueError):
        pass
    kit = _cut_people(root)
    arrays: dict[str, np.ndarray] = {"n": np.array(len(kit.cutouts)), "scene0": kit.scenes[0], "scene1": kit.scenes[1]}
    for i, c in enumerate(kit.cutouts):
        arrays |= {f"name{i}": np.array(c.name), f"bgr{i}": c.bgr, f"alpha{i}": c.alpha, f"scale{i}": np.array(c.scale)}
    try:  # written whole, then renamed: a second process reading it sees all of it or none
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{cached.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, cached)
    except OSError:
        pass  # a read-only home: cut again next time
    return kit


def _cut_people(root: Path) -> PeopleKit:
    cutouts: list[Cutout] = []
    scenes: list[np.ndarray] = []
    for name, people in _PEOPLE.items():
        image = cv2.imread(str(root / name))
        if image is None:
            raise MissingDependencyError(f"{root / name}: missing or unreadable (it ships with Ultralytics)")
        covered = np.zeros(image.shape[:2], np.uint8)
        for i, (x1, y1, x2, y2, scale) in enumerate(people):
            strokes = _BODY.get(name, ())
            fg = _cut(image, (x1, y1, x2, y2), strokes[i] if i < len(strokes) else (), _NOT_BODY.get((name, i), ()))
            covered |= fg
            ys, xs = np.nonzero(fg)
            t, b, left, r = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            alpha = cv2.GaussianBlur(fg[t:b, left:r].astype(np.float32), (3, 3), 0)  # soft edge, as a real matte
            cutouts.append(Cutout(f"{Path(name).stem}-{i}", image[t:b, left:r].copy(), alpha, scale))
        for x1, y1, x2, y2 in _PAINT_OUT.get(name, ()):
            covered[y1:y2, x1:x2] = 1
        hole = cv2.dilate(covered, np.ones((25, 25), np.uint8))
        scenes.append(_fill(image, hole))
    return PeopleKit(tuple(cutouts), tuple(scenes))


def _fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Paint the people out. A hole near an edge of the photo takes the mirror image of the street beside it
    (cv2.inpaint smears a hole this large into a grey blur); one in the middle, or too wide to mirror, is
    inpainted. Edges are feathered."""
    h, w = image.shape[:2]
    out = image.copy()
    n, labels, stats, _ = cv2.connectedComponentsWithStats(hole)
    rest = np.zeros_like(hole)
    for k in range(1, n):
        x, bw = int(stats[k, cv2.CC_STAT_LEFT]), int(stats[k, cv2.CC_STAT_WIDTH])
        part = labels == k
        src = np.arange(w)
        if x + bw <= w // 2 and 2 * (x + bw) - 0 < w:  # left: mirror about the hole's right edge
            src = np.clip(2 * (x + bw) - src, 0, w - 1)
        elif x >= w // 2 and 2 * x - (w - 1) >= 0:  # right: about its left edge
            src = np.clip(2 * x - src, 0, w - 1)
        else:
            rest |= part.astype(np.uint8)
            continue
        out[part] = image[:, src][part]
    if rest.any():
        out = cv2.inpaint(out, rest * 255, 9, cv2.INPAINT_TELEA)
    soft = cv2.GaussianBlur(hole.astype(np.float32), (0, 0), 6)[..., None]
    return (out * soft + image * (1 - soft)).astype(np.uint8)


def scene_view(scene: np.ndarray, size: tuple[int, int], top: float = 0.35) -> np.ndarray:
    """A `size` (w, h) view of a scene: scaled to the width, the band from `top` of its height down (the
    ground where people walk), or the whole picture scaled to cover."""
    w, h = size
    sh, sw = scene.shape[:2]
    k = max(w / sw, h / sh)
    big = cv2.resize(scene, (max(w, round(sw * k)), max(h, round(sh * k))), interpolation=cv2.INTER_AREA)
    y0 = min(int(top * big.shape[0]), big.shape[0] - h)
    x0 = (big.shape[1] - w) // 2
    return np.ascontiguousarray(big[y0 : y0 + h, x0 : x0 + w])


@dataclass(frozen=True)
class Placed:
    """A cutout drawn at one place: its box in frame pixels (possibly past the frame), the foot point."""

    cutout: int
    flip: bool
    x1: float
    y1: float
    x2: float
    y2: float
    gain: float = 1.0  # brightness: two walkers cut from the same photo look a little different


def place(cutout: Cutout, index: int, foot: tuple[float, float], height: float, flip: bool, gain: float = 1.0) -> Placed:
    """Where `cutout` goes so that its bottom centre stands on `foot` and a whole body would be `height` tall."""
    h = height * cutout.scale
    w = h * cutout.bgr.shape[1] / cutout.bgr.shape[0]
    x, y = foot
    return Placed(index, flip, x - w / 2, y - h, x + w / 2, y, gain)


def render(
    kit: PeopleKit, background: np.ndarray, placed: list[Placed]
) -> tuple[np.ndarray, list[tuple[float, float, float, float, float, float]]]:
    """Draw far to near (in the order given) and return the image and, for each person, its box clipped
    to the frame and (visible, in-frame) fractions of its pixels, MOT16's visibility: hidden by a nearer
    person and outside the frame both count."""
    image = background.astype(np.float32)
    height, width = image.shape[:2]
    owner = np.full((height, width), -1, np.int32)
    totals: list[float] = []
    inside: list[float] = []
    boxes: list[tuple[int, int, int, int]] = []
    for k, p in enumerate(placed):
        c = kit.cutouts[p.cutout]
        w, h = max(1, round(p.x2 - p.x1)), max(1, round(p.y2 - p.y1))
        x1, y1 = round(p.x1), round(p.y1)
        bgr = cv2.resize(c.bgr, (w, h), interpolation=cv2.INTER_AREA if h < c.bgr.shape[0] else cv2.INTER_LINEAR)
        alpha = cv2.resize(c.alpha, (w, h), interpolation=cv2.INTER_LINEAR)
        if p.flip:
            bgr, alpha = bgr[:, ::-1], alpha[:, ::-1]
        solid = alpha > 0.5
        totals.append(float(solid.sum()) or 1.0)
        fx1, fy1, fx2, fy2 = max(0, x1), max(0, y1), min(width, x1 + w), min(height, y1 + h)
        boxes.append((fx1, fy1, fx2, fy2))
        if fx2 <= fx1 or fy2 <= fy1:
            inside.append(0.0)
            continue
        sub = (slice(fy1 - y1, fy2 - y1), slice(fx1 - x1, fx2 - x1))
        a = alpha[sub][..., None]
        region = image[fy1:fy2, fx1:fx2]
        region[:] = region * (1 - a) + bgr[sub].astype(np.float32) * p.gain * a
        seen = solid[sub]
        owner[fy1:fy2, fx1:fx2][seen] = k
        inside.append(float(seen.sum()))
    visible = np.bincount(owner[owner >= 0].ravel(), minlength=len(placed)) if len(placed) else np.zeros(0)
    out = []
    for k, (fx1, fy1, fx2, fy2) in enumerate(boxes):
        out.append((float(fx1), float(fy1), float(fx2), float(fy2), visible[k] / totals[k], inside[k] / totals[k]))
    return np.clip(image, 0, 255).astype(np.uint8), out


# Perspective, shared with people_clips.py (which imports this module, so these live here).
HORIZON = 0.28  # of the frame's height: a person's height in pixels is proportional to how far below it they stand
BODY = 0.95  # a whole body standing at the bottom edge is this fraction of (1 - HORIZON) of the height


def body_height(y: float, height: int) -> float:
    return BODY * max(y - HORIZON * height, 8.0) / (1 - HORIZON)


def people_dataset(
    out: Path, images: int = 600, size: tuple[int, int] = (640, 360), seed: int = 0, val_fraction: float = 0.2
) -> Path:
    """A person detector's training set in Ultralytics' layout: 1-8 people standing anywhere on views of the
    two emptied photos, far ones smaller and behind, some cut by the frame's edges or hidden by others. A
    person is labelled (its whole box, clipped) when at least a fifth of it can be seen. Returns data.yaml."""
    import yaml

    out = Path(out)
    kit = load_people()
    rng = np.random.default_rng([seed, 4_000_037])
    w, h = size
    n_val = max(1, round(images * val_fraction))
    for i in range(images):
        split = "val" if i < n_val else "train"
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        which = int(rng.random() < 0.25)
        bg = scene_view(
            kit.scenes[which], (w, h), top=float(rng.uniform(0.15, 0.5)) if which == 0 else float(rng.uniform(0, 0.3))
        )
        if rng.random() < 0.5:
            bg = bg[:, ::-1]
        bg = np.clip(bg.astype(np.float32) * float(rng.uniform(0.7, 1.25)), 0, 255).astype(np.uint8)
        feet = sorted(
            (float(rng.uniform(-0.05, 1.05)) * w, float(rng.uniform(0.45, 1.1)) * h) for _ in range(int(rng.integers(1, 9)))
        )
        placed = []
        for x, y in sorted(feet, key=lambda p: p[1]):
            k = int(rng.integers(len(kit.cutouts)))
            tall = body_height(y, h) * float(rng.uniform(0.8, 1.2))
            placed.append(place(kit.cutouts[k], k, (x, y), tall, bool(rng.random() < 0.5), float(rng.uniform(0.8, 1.2))))
        image, boxes = render(kit, bg, placed)
        lines = [
            f"0 {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\n"
            for x1, y1, x2, y2, vis, _ in boxes
            if vis >= 0.2 and x2 - x1 >= 2 and y2 - y1 >= 2
        ]
        stem = f"{i:05d}"
        cv2.imwrite(str(out / "images" / split / f"{stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        (out / "labels" / split / f"{stem}.txt").write_text("".join(lines))
    data = {"path": str(out.resolve()), "train": "images/train", "val": "images/val", "names": {0: "person"}}
    data_yaml = out / "data.yaml"
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    return data_yaml
