"""Pictures of what a source's config and its objects stage see: zones, lines, tracked boxes, events.

Pure functions over BGR uint8 images (each returns a new image and leaves its input alone), OpenCV
only. Zones and lines arrive as in the config, in 0-1 coordinates of the frame, and become pixels
the way the objects stage turns them into pixels (fraction x size), so what is drawn is what counts:
a line's arrow points the way its `in` crossings go (`tracking.zones.side_of_line`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .tracking.zones import LineSpec, ZoneSpec, anchor_points

if TYPE_CHECKING:
    from .tracking.events import Event
    from .tracking.stage import Objects

# BGR, distinct on video and on each other (Ultralytics' palette, reordered for neighbours that differ).
PALETTE = (
    (56, 56, 255), (255, 157, 151), (31, 112, 255), (255, 178, 29), (49, 210, 207), (10, 249, 72),
    (255, 115, 100), (187, 212, 0), (255, 56, 203), (52, 147, 26), (134, 219, 61), (168, 153, 44),
)  # fmt: skip
ZONE_ALPHA = 0.3  # how much of a zone's colour its fill mixes into the frame
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_ANCHOR_WORDS = {"bottom_center": "bottom centre", "center": "centre", "top_center": "top centre"}
_WHITE, _BLACK = (255, 255, 255), (0, 0, 0)


@dataclass(frozen=True)
class Style:
    """Text and stroke sizes that stay legible from a 320x180 clip to a 4K camera."""

    scale: float
    thick: int  # text stroke
    stroke: int  # outlines and lines

    @classmethod
    def for_image(cls, image: np.ndarray) -> Style:
        short = min(image.shape[:2])
        scale = min(max(short / 640, 0.4), 1.3)
        return cls(scale, 1 if scale < 0.8 else 2, max(2, round(short / 240)))


def colour_of(key: int) -> tuple[int, int, int]:
    return PALETTE[key % len(PALETTE)]


def to_pixels(points: Iterable[tuple[float, float]], size: tuple[int, int]) -> np.ndarray:
    """0-1 points -> (N, 2) pixel coordinates of a frame of `size` (w, h), as the objects stage places them."""
    w, h = size
    return np.array([(x * w, y * h) for x, y in points], np.float64).reshape(-1, 2)


def in_direction(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Unit vector (pixels) of a line's `in` side: B - A turned 90 degrees clockwise on screen (y grows down)."""
    d = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    n = np.array([-d[1], d[0]])
    return n / max(float(np.hypot(*n)), 1e-9)  # type: ignore[no-any-return]


def zone_label(zone: ZoneSpec, inside: int | None = None) -> str:
    """`dock`, `aisle [circle] loiter 5s`; with a count of the objects in it: `dock: 2`."""
    text = zone.name if inside is None else f"{zone.name}: {inside}"
    if zone.classes is not None:
        text += f" [{', '.join(map(str, zone.classes))}]"
    if zone.loiter_s is not None:
        text += f" loiter {zone.loiter_s:g}s"
    return text


def anchor_note(zones: Sequence[ZoneSpec], lines: Sequence[LineSpec]) -> str:
    """Which point of a box decides membership and crossings: one anchor for all, or each region's."""
    anchors = {z.name: z.anchor for z in zones} | {ln.name: ln.anchor for ln in lines}
    if len(set(anchors.values())) <= 1:
        return f"anchor: {_ANCHOR_WORDS[next(iter(anchors.values()), 'bottom_center')]}"
    return "anchors: " + ", ".join(f"{name} {_ANCHOR_WORDS[a]}" for name, a in anchors.items())


def draw_regions(
    image: np.ndarray,
    zones: Sequence[ZoneSpec],
    lines: Sequence[LineSpec],
    occupancy: Mapping[str, int] | None = None,
    flash: Iterable[str] = (),
    note: bool = True,
) -> np.ndarray:
    """Every zone (translucent fill, outline, name, class filter, loiter_s) and line (name, ends A and B,
    an arrow to its `in` side); `occupancy` adds each zone's count to its label, `flash` names zones and
    lines to highlight (an event on them this frame), `note` writes the anchor convention bottom left."""
    out = image.copy()
    h, w = out.shape[:2]
    style = Style.for_image(out)
    lit = set(flash)
    polygons = [np.round(to_pixels(z.points, (w, h))).astype(np.int32) for z in zones]
    for j, poly in enumerate(polygons):  # fills first: a label is never washed over by another zone
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [poly], 255)
        sel = mask.astype(bool)
        out[sel] = (out[sel] * (1 - ZONE_ALPHA) + np.array(colour_of(j)) * ZONE_ALPHA).round().astype(np.uint8)
    for j, (zone, poly) in enumerate(zip(zones, polygons)):
        edge = _WHITE if zone.name in lit else colour_of(j)
        cv2.polylines(out, [poly], True, edge, style.stroke * (2 if zone.name in lit else 1), cv2.LINE_AA)
    for k, line in enumerate(lines):
        _line(out, line, colour_of(len(zones) + k), style, line.name in lit)
    for j, (zone, poly) in enumerate(zip(zones, polygons)):
        x, y = poly.min(axis=0)
        count = None if occupancy is None else occupancy.get(zone.name, 0)
        label(out, zone_label(zone, count), (int(x) + style.stroke, int(y) + style.stroke), colour_of(j), style)
    if note and (zones or lines):
        # top left is left to the clip's counters
        panel(out, [anchor_note(zones, lines)], style, corner="bottom_left, bottom_right, top_right", under=image)
    return out


def draw_grid(image: np.ndarray, step: float = 0.1) -> np.ndarray:
    """A 0-1 grid over the frame, every `step`, labelled on the top and left edges: the coordinates that
    zones and lines take, for a source that has none yet."""
    out = image.copy()
    style = Style.for_image(out)
    h, w = out.shape[:2]
    n = round(1 / step)
    for i in range(1, n):
        f = i / n
        x, y = round(f * (w - 1)), round(f * (h - 1))
        thick = 2 if i * 2 == n else 1  # 0.5 stands out
        cv2.line(out, (x, 0), (x, h - 1), _WHITE, thick, cv2.LINE_AA)
        cv2.line(out, (0, y), (w - 1, y), _WHITE, thick, cv2.LINE_AA)
        label(out, f"{f:g}", (x, 0), _BLACK, style, centre=True)
        label(out, f"{f:g}", (0, y), _BLACK, style, centre=True)
    return out


def line_label(line: LineSpec) -> str:
    """`entry`, `gate [car, truck]`."""
    return line.name if line.classes is None else f"{line.name} [{', '.join(map(str, line.classes))}]"


def _line(out: np.ndarray, line: LineSpec, colour: tuple[int, int, int], style: Style, lit: bool) -> None:
    h, w = out.shape[:2]
    a, b = to_pixels(line.points, (w, h))
    n = in_direction(a, b)
    along = (b - a) / max(float(np.hypot(*(b - a))), 1e-9)
    cv2.line(out, _pt(a), _pt(b), _WHITE if lit else colour, style.stroke * (2 if lit else 1), cv2.LINE_AA)
    r = style.stroke + 2
    for p, end, away in ((a, "A", -along), (b, "B", along)):  # the letters sit on the `out` side, clear of the line
        cv2.circle(out, _pt(p), r, colour, -1, cv2.LINE_AA)
        cv2.circle(out, _pt(p), r, _BLACK, 1, cv2.LINE_AA)
        label(out, end, _pt(p + away * r - n * (r + _reach(end, -n, style))), colour, style, centre=True)
    mid = (a + b) / 2
    length = max(30.0, 0.12 * min(h, w))
    tip = np.clip(mid + n * length, [2, 2], [w - 3, h - 3])
    cv2.arrowedLine(out, _pt(mid), _pt(tip), _BLACK, style.stroke + 2, cv2.LINE_AA, tipLength=0.3)
    cv2.arrowedLine(out, _pt(mid), _pt(tip), colour, style.stroke, cv2.LINE_AA, tipLength=0.3)
    label(out, "in", _pt(tip + n * (2 + _reach("in", n, style))), colour, style, centre=True)
    name = line_label(line)
    label(out, name, _pt(mid - n * (r + _reach(name, -n, style))), colour, style, centre=True)


def _reach(text: str, direction: np.ndarray, style: Style) -> float:
    """How far a label's centre must sit from a point, along `direction`, for its box to clear the point."""
    tw, th = _size(text, style)
    return abs(float(direction[0])) * tw / 2 + abs(float(direction[1])) * th / 2 + 2


def draw_objects(image: np.ndarray, objects: Objects, names: Mapping[int, str], anchor: str = "bottom_center") -> np.ndarray:
    """Boxes coloured by track id (by class when untracked), labelled `label #id conf`, and a dot on
    the point of each box that zones and lines judge (`anchor`)."""
    out = image.copy()
    style = Style.for_image(out)
    dets = objects.dets
    points = anchor_points(dets.xyxy.astype(np.float64), anchor) if len(dets) else np.zeros((0, 2))
    texts = [
        names.get(int(dets.cls[k]), str(int(dets.cls[k])))
        + ("" if objects.track_ids is None else f" #{int(objects.track_ids[k])}")
        + f" {float(dets.conf[k]):.2f}"
        for k in range(len(dets))
    ]
    spots = place_labels(dets.xyxy, [_size(t, style) for t in texts], (out.shape[1], out.shape[0]))
    for k in range(len(dets)):
        x1, y1, x2, y2 = (int(round(float(v))) for v in dets.xyxy[k])
        cls = int(dets.cls[k])
        tid = None if objects.track_ids is None else int(objects.track_ids[k])
        colour = colour_of(cls if tid is None else tid * 7 + 3)  # 7: ids in a row get colours far apart
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, max(1, style.stroke - 1), cv2.LINE_AA)
        label(out, texts[k], spots[k], colour, style)
        cv2.circle(out, _pt(points[k]), style.stroke + 1, colour, -1, cv2.LINE_AA)
        cv2.circle(out, _pt(points[k]), style.stroke + 1, _BLACK, 1, cv2.LINE_AA)
    return out


Rect = tuple[int, int, int, int]  # x1, y1, x2, y2


def _overlap(a: Rect, b: Rect) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def place_labels(xyxy: np.ndarray, sizes: Sequence[tuple[int, int]], frame: tuple[int, int]) -> list[tuple[int, int]]:
    """Top-left corners for each box's label: above its box, else inside its top edge, below it, or inside
    its bottom edge, the first spot (inside the frame) that no label placed before covers; else the least
    covered. Two objects side by side no longer print one label over the other."""
    w, h = frame
    placed: list[Rect] = []
    out: list[tuple[int, int]] = []
    for (bx1, by1, _, by2), (tw, th) in zip(np.asarray(xyxy, np.float64).tolist(), sizes):
        x = min(max(int(round(bx1)), 0), max(w - tw, 0))
        y1, y2 = int(round(by1)), int(round(by2))
        spots = [(x, y1 - th - 4), (x, y1 + 1), (x, y2 + 1), (x, y2 - th - 1)]
        spots = [(sx, min(max(sy, 0), max(h - th, 0))) for sx, sy in spots]
        cover = [sum(_overlap((sx, sy, sx + tw, sy + th), r) for r in placed) for sx, sy in spots]
        best = spots[cover.index(min(cover))]
        placed.append((best[0], best[1], best[0] + tw, best[1] + th))
        out.append(best)
    return out


_EVENT_COLOURS = {"enter": (80, 220, 80), "exit": (80, 80, 230), "cross": (0, 215, 255), "loiter": (255, 160, 0)}


def event_text(event: Event) -> str:
    """What a marker says: `entry: in`, `enter dock`, `exit dock 2.1s`, `loiter dock 5.0s`."""
    if event.kind == "cross":
        return f"{event.line}: {event.direction}"
    text = f"{event.kind} {event.zone}"
    if event.kind in ("exit", "loiter") and event.duration_s is not None:
        text += f" {event.duration_s:.1f}s"
    return text


def draw_events(image: np.ndarray, events: Iterable[Event]) -> np.ndarray:
    """A marker on each object that crossed, entered, exited or loitered: a white frame around its box and
    what happened (its latest two events), in the colour of the latest."""
    out = image.copy()
    style = Style.for_image(out)
    by_track: dict[int, list[Event]] = {}
    for e in events:
        if e.kind in _EVENT_COLOURS:
            by_track.setdefault(e.track_id, []).append(e)
    for group in by_track.values():
        x1, y1, x2, y2 = group[-1].box
        pad = style.stroke + 2
        p1, p2 = _pt((x1 - pad, y1 - pad)), _pt((x2 + pad, y2 + pad))
        cv2.rectangle(out, p1, p2, _WHITE, style.stroke, cv2.LINE_AA)
        text = ", ".join(event_text(e) for e in group[-2:])
        label(out, text, (p1[0], p2[1] + 1), _EVENT_COLOURS[group[-1].kind], style)
    return out


def draw_counters(
    image: np.ndarray,
    occupancy: Mapping[str, int],
    crossings: Mapping[str, tuple[int, int]],
    header: str = "",
    avoid: np.ndarray | None = None,
) -> np.ndarray:
    """Objects in each zone now and each line's in/out crossings so far, top left unless that covers one
    of the `avoid` boxes (xyxy, the objects drawn): then the corner that covers the least of them."""
    out = image.copy()
    rows = [header] if header else []
    rows += [f"{zone}: {n} in zone" for zone, n in occupancy.items()]
    rows += [f"{line}: in {n_in}  out {n_out}" for line, (n_in, n_out) in crossings.items()]
    if rows:
        style = Style.for_image(out)
        corner = "top_left"
        if avoid is not None and len(avoid):
            corner = legend_corner(avoid, [_size(r, style) for r in rows], (out.shape[1], out.shape[0]))
        panel(out, rows, style, corner=corner)
    return out


_CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")


def panel_origin(corner: str, panel_size: tuple[int, int], frame: tuple[int, int]) -> tuple[int, int]:
    """Where `panel` puts a (pw, ph) panel in `corner` of a (w, h) frame."""
    (pw, ph), (w, h) = panel_size, frame
    x = max(0, w - pw - 4) if corner.endswith("right") else min(4, w - pw)
    return x, (min(4, h - ph) if corner.startswith("top") else max(0, h - ph - 4))


def legend_corner(xyxy: np.ndarray, rows: Sequence[tuple[int, int]], frame: tuple[int, int]) -> str:
    """The first corner (top left first) whose legend covers the least box area: a legend hides no box it can avoid."""
    pw, ph = min(max(r[0] for r in rows) + 6, frame[0]), min(sum(r[1] for r in rows) + 6, frame[1])
    boxes = [tuple(int(round(v)) for v in b) for b in np.asarray(xyxy, np.float64).tolist()]

    def covered(corner: str) -> int:
        x, y = panel_origin(corner, (pw, ph), frame)
        return sum(_overlap((x, y, x + pw, y + ph), (b[0], b[1], b[2], b[3])) for b in boxes)

    return min(_CORNERS, key=covered)  # min keeps the first of equals


# ------------------------------------------------------------------------------------------ text


def _pt(p: np.ndarray | Sequence[float]) -> tuple[int, int]:
    return (int(round(float(p[0]))), int(round(float(p[1]))))


def _size(text: str, style: Style) -> tuple[int, int]:
    (tw, th), base = cv2.getTextSize(text, _FONT, style.scale, style.thick)
    return tw + 4, th + base + 3


def label(
    out: np.ndarray, text: str, org: tuple[int, int], colour: tuple[int, int, int], style: Style, centre: bool = False
) -> None:
    """Text on a box of `colour` (in place), its top-left corner (or centre) at `org`, kept inside the frame."""
    h, w = out.shape[:2]
    tw, th = _size(text, style)
    x, y = (org[0] - tw // 2, org[1] - th // 2) if centre else org
    x, y = min(max(x, 0), max(w - tw, 0)), min(max(y, 0), max(h - th, 0))
    cv2.rectangle(out, (x, y), (x + tw - 1, y + th - 1), colour, -1)
    ink = _BLACK if 0.114 * colour[0] + 0.587 * colour[1] + 0.299 * colour[2] > 140 else _WHITE
    base = cv2.getTextSize(text, _FONT, style.scale, style.thick)[1]
    cv2.putText(out, text, (x + 2, y + th - base - 2), _FONT, style.scale, ink, style.thick, cv2.LINE_AA)


def panel(out: np.ndarray, rows: Sequence[str], style: Style, corner: str = "top_left", under: np.ndarray | None = None) -> None:
    """Rows of white text on a darkened box in a corner of the frame (in place). `corner` may be a list
    of candidates "top_left", "top_right", "bottom_left", "bottom_right" (comma-separated): with `under`,
    the picture before anything was drawn, the one that hides the fewest drawn pixels wins."""
    h, w = out.shape[:2]
    sizes = [_size(r, style) for r in rows]
    pw, ph = min(max(s[0] for s in sizes) + 6, w), min(sum(s[1] for s in sizes) + 6, h)

    candidates = [panel_origin(c.strip(), (pw, ph), (w, h)) for c in corner.split(",")]
    if under is not None and len(candidates) > 1:
        drawn = np.any(out != under, axis=2)
        candidates.sort(key=lambda o: int(drawn[o[1] : o[1] + ph, o[0] : o[0] + pw].sum()))  # stable: ties keep the order
    x0, y0 = candidates[0]
    box = out[y0 : y0 + ph, x0 : x0 + pw]
    box[:] = (box * 0.35).astype(np.uint8)
    y = y0 + 3
    for text, (_, th) in zip(rows, sizes):
        base = cv2.getTextSize(text, _FONT, style.scale, style.thick)[1]
        cv2.putText(out, text, (x0 + 5, y + th - base - 2), _FONT, style.scale, _WHITE, style.thick, cv2.LINE_AA)
        y += th
