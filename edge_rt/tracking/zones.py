"""Zones (polygons) and lines of a source, in 0-1 coordinates of its frame, and their geometry.

Coordinates are fractions of the frame so a camera whose resolution changes keeps its zones. An
object is placed by one point of its box, its anchor: the bottom centre by default, where a person
or a vehicle touches the ground, so a zone drawn on the floor holds what stands on it, whatever its
height in the picture. Parsing checks everything a config can get wrong before any camera opens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError

ANCHORS = ("bottom_center", "center", "top_center")
MAX_ZONES = 62  # per source: a box's zones travel as bits of one int64 inside the stage
_ZONE_KEYS = ("points", "classes", "loiter_s", "anchor", "inertia")
_LINE_KEYS = ("points", "classes", "anchor", "margin", "inertia")


@dataclass(frozen=True)
class ZoneSpec:
    name: str
    points: tuple[tuple[float, float], ...]  # >= 3 vertices, 0-1
    classes: tuple[str | int, ...] | None = None  # as written; resolve() turns names into ids
    loiter_s: float | None = None  # one `loiter` event once an object has stayed this long
    anchor: str = "bottom_center"
    inertia: int = 2  # consecutive frames an object must be in (or out) before it counts as entered (exited)


@dataclass(frozen=True)
class LineSpec:
    name: str
    points: tuple[tuple[float, float], tuple[float, float]]  # A -> B, 0-1
    classes: tuple[str | int, ...] | None = None
    anchor: str = "bottom_center"
    margin: float = 0.01  # the anchor must get this far past the line (a fraction of the frame diagonal) to count
    inertia: int = 2  # boxes in a row past the margin on the other side before the crossing counts


@dataclass(frozen=True)
class Regions:
    """A source's zones and lines, with class filters as ids (None: every class)."""

    zones: tuple[ZoneSpec, ...] = ()
    lines: tuple[LineSpec, ...] = ()
    zone_classes: tuple[frozenset[int] | None, ...] = ()
    line_classes: tuple[frozenset[int] | None, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.zones or self.lines)


def anchor_points(xyxy: np.ndarray, anchor: str) -> np.ndarray:
    """(N, 4) boxes -> (N, 2) anchor points in pixels."""
    x = (xyxy[:, 0] + xyxy[:, 2]) / 2
    if anchor == "center":
        y = (xyxy[:, 1] + xyxy[:, 3]) / 2
    elif anchor == "top_center":
        y = xyxy[:, 1]
    else:
        y = xyxy[:, 3]
    return np.stack([x, y], axis=1)


def in_polygon(points: np.ndarray, polygon: Sequence[tuple[float, float]]) -> np.ndarray:
    """(N, 2) points inside a polygon (its vertices in order), by ray casting (a point on an edge may fall either way)."""
    x, y = points[:, 0], points[:, 1]
    inside = np.zeros(len(points), bool)
    for (x1, y1), (x2, y2) in zip(polygon, [polygon[-1], *polygon[:-1]]):
        if y1 == y2:
            continue
        crosses = (y1 > y) != (y2 > y)
        x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < x_at)
    return inside


def side_of_line(points: np.ndarray, a: np.ndarray, b: np.ndarray, diagonal: float) -> np.ndarray:
    """Signed distance of (N, 2) points from the line A -> B, as a fraction of the frame diagonal.
    Positive is the side (B - A) points to once turned 90 degrees clockwise on screen (y grows down)."""
    d = b - a
    length = max(math.hypot(float(d[0]), float(d[1])), 1e-9)
    cross = d[0] * (points[:, 1] - a[1]) - d[1] * (points[:, 0] - a[0])
    return cross / length / diagonal  # type: ignore[no-any-return]


def segment_hit(p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    """Does the move from p to q pass between A and B (not beyond the line's ends)?"""
    d, e = b - a, q - p
    denom = d[0] * e[1] - d[1] * e[0]
    if abs(denom) < 1e-12:
        return False
    w = p - a
    s = (w[0] * e[1] - w[1] * e[0]) / denom  # along A -> B
    return bool(-1e-9 <= s <= 1 + 1e-9)


# ----------------------------------------------------------------------------------------- parsing


def _where(source: str, key: str) -> str:
    return f"source {source!r}: {key}"


def _points(source: str, key: str, value: Any, least: int, most: int | None) -> tuple[tuple[float, float], ...]:
    want = f"{least} points" if most == least else f"at least {least} points"
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, (list, tuple)) for p in value):
        raise ConfigError(f"{_where(source, key)}: expected a list of [x, y] points (0-1 of the frame), got {value!r:.80}")
    if len(value) < least or (most is not None and len(value) > most):
        raise ConfigError(f"{_where(source, key)}: needs {want}, got {len(value)}")
    out = []
    for i, p in enumerate(value):
        if len(p) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p):
            raise ConfigError(f"{_where(source, key)}[{i}]: expected [x, y] with two numbers, got {p!r:.60}")
        x, y = float(p[0]), float(p[1])
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ConfigError(
                f"{_where(source, key)}[{i}]: [{x:g}, {y:g}] is outside the frame: coordinates are fractions 0-1 of its width and height"
            )
        out.append((x, y))
    if len(set(out)) < least:
        raise ConfigError(f"{_where(source, key)}: needs {want} that differ, got {len(set(out))} distinct")
    return tuple(out)


def _classes(source: str, key: str, value: Any) -> tuple[str | int, ...] | None:
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items or not all(
        (isinstance(v, int) and not isinstance(v, bool) and v >= 0) or (isinstance(v, str) and v) for v in items
    ):
        raise ConfigError(f"{_where(source, key)}: expected class names or ids, e.g. [person, car], got {value!r:.80}")
    return tuple(items)


def _positive(source: str, key: str, value: Any, integer: bool = False) -> Any:
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{_where(source, key)}: expected a {'whole ' if integer else ''}number > 0, got {value!r:.40}")
    return value


def _entries(source: str, kind: str, value: Any, keys: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise ConfigError(f"{_where(source, kind)}: expected a mapping of NAME: points (or NAME: {{points: ..., classes: ...}})")
    out = []
    for name, body in value.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{_where(source, kind)}: {name!r} is not a name")
        entry = dict(body) if isinstance(body, Mapping) else {"points": body}
        unknown = sorted(set(entry) - set(keys), key=str)
        if unknown:
            raise ConfigError(f"{_where(source, f'{kind}.{name}')}: unknown key {unknown[0]!r} (known: {', '.join(keys)})")
        if "points" not in entry:
            raise ConfigError(f"{_where(source, f'{kind}.{name}')}: missing 'points'")
        anchor = entry.get("anchor", "bottom_center")
        if anchor not in ANCHORS:
            raise ConfigError(f"{_where(source, f'{kind}.{name}.anchor')}: {anchor!r} is not one of {', '.join(ANCHORS)}")
        out.append((name, entry))
    return out


def parse_regions(source: str, zones: Any, lines: Any) -> tuple[tuple[ZoneSpec, ...], tuple[LineSpec, ...]]:
    """The `zones:` and `lines:` of one source entry; every mistake is one line naming the source and key."""
    zone_specs = []
    for name, e in _entries(source, "zones", zones, _ZONE_KEYS):
        key = f"zones.{name}"
        zone_specs.append(
            ZoneSpec(
                name,
                _points(source, f"{key}.points" if "classes" in e else key, e["points"], 3, None),
                _classes(source, f"{key}.classes", e.get("classes")),
                None if e.get("loiter_s") is None else float(_positive(source, f"{key}.loiter_s", e["loiter_s"])),
                e.get("anchor", "bottom_center"),
                int(_positive(source, f"{key}.inertia", e.get("inertia", 2), integer=True)),
            )
        )
    line_specs = []
    for name, e in _entries(source, "lines", lines, _LINE_KEYS):
        key = f"lines.{name}"
        a, b = _points(source, f"{key}.points" if "classes" in e else key, e["points"], 2, 2)
        margin = e.get("margin", 0.01)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 0.5:
            raise ConfigError(
                f"{_where(source, f'{key}.margin')}: expected a fraction of the frame diagonal in [0, 0.5), got {margin!r:.40}"
            )
        line_specs.append(
            LineSpec(
                name,
                (a, b),
                _classes(source, f"{key}.classes", e.get("classes")),
                e.get("anchor", "bottom_center"),
                float(margin),
                int(_positive(source, f"{key}.inertia", e.get("inertia", 2), integer=True)),
            )
        )
    if len(zone_specs) > MAX_ZONES:
        raise ConfigError(f"{_where(source, 'zones')}: {len(zone_specs)} zones; a source takes at most {MAX_ZONES}")
    names = [z.name for z in zone_specs] + [ln.name for ln in line_specs]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ConfigError(
            f"{_where(source, 'zones/lines')}: the name {dup!r} is used twice; each zone and line needs its own name (events name it)"
        )
    return tuple(zone_specs), tuple(line_specs)


def resolve(source: str, zones: Sequence[ZoneSpec], lines: Sequence[LineSpec], names: Mapping[int, str]) -> Regions:
    """Class filters as ids of this model; a name or id it does not have is one line, before cameras open."""
    by_name = {v: k for k, v in names.items()}

    def ids(kind: str, spec: ZoneSpec | LineSpec) -> frozenset[int] | None:
        if spec.classes is None:
            return None
        out = set()
        for c in spec.classes:
            if isinstance(c, int):
                if c not in names:
                    raise ConfigError(
                        f"{_where(source, f'{kind}.{spec.name}.classes')}: class {c} is not in the model (0..{len(names) - 1})"
                    )
                out.add(c)
            elif c in by_name:
                out.add(by_name[c])
            else:
                known = ", ".join(list(by_name)[:12]) + (", ..." if len(by_name) > 12 else "")
                raise ConfigError(
                    f"{_where(source, f'{kind}.{spec.name}.classes')}: the model has no class {c!r} (it has: {known})"
                )
        return frozenset(out)

    return Regions(tuple(zones), tuple(lines), tuple(ids("zones", z) for z in zones), tuple(ids("lines", ln) for ln in lines))
