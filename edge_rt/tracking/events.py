"""Zone and line events of one source's tracks: enter, exit, loiter and cross.

Per-track state lives in columns (one row per confirmed track, in id order) so a frame with 200
objects costs a few numpy operations per zone and line; only the events themselves are Python
objects. Debouncing is what keeps counts honest: a zone is entered (or left) only after `inertia`
frames in a row say so, and a line is crossed only once the anchor gets `margin` past it, so an
object that jitters on an edge counts once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .bytetrack import EndedTrack, box_tuple
from .zones import Regions, anchor_points, in_polygon, segment_hit, side_of_line

EVENT_KINDS = ("start", "end", "enter", "exit", "cross", "loiter")
DIRECTIONS = ("in", "out")  # in: towards the side (B - A) turned 90 degrees clockwise points to


@dataclass(frozen=True)
class Event:
    kind: str  # one of EVENT_KINDS
    track_id: int
    cls: int
    conf: float
    box: tuple[float, float, float, float]  # the object's box in this frame (its last box for end/exit of a lost track)
    zone: str | None = None
    line: str | None = None
    direction: str | None = None  # cross: one of DIRECTIONS
    duration_s: float | None = None  # end: the track's life; exit and loiter: time in the zone
    best_conf: float | None = None  # end: the best confidence the track reached


class RegionEvents:
    """Zone membership and line sides of every confirmed track of one source."""

    def __init__(self, regions: Regions) -> None:
        self.regions = regions
        z, n_lines = len(regions.zones), len(regions.lines)
        self._ids = np.zeros(0, np.int64)  # ascending: tracker ids only grow, so new rows are appended
        self._cls = np.zeros(0, np.int64)
        self._inside = np.zeros((0, z), bool)
        self._streak = np.zeros((0, z), np.int32)  # frames in a row that disagree with _inside
        self._since = np.zeros((0, z))  # when the track entered each zone
        self._loitered = np.zeros((0, z), bool)
        self._side = np.zeros((0, n_lines), np.int8)  # -1, +1, or 0 before the anchor left the line's margin
        self._last_pt = np.zeros((0, n_lines, 2))  # where the anchor last was clear of the line, on its side
        self._over = np.zeros((0, n_lines), np.int32)  # boxes in a row past the line's margin on the other side

    def membership(self, xyxy: np.ndarray, cls: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """(N, Z): which zones each box's anchor is in now, class filters applied."""
        w, h = size
        out = np.zeros((len(xyxy), len(self.regions.zones)), bool)
        if not len(xyxy):
            return out
        for j, (zone, allowed) in enumerate(zip(self.regions.zones, self.regions.zone_classes)):
            out[:, j] = in_polygon(anchor_points(xyxy, zone.anchor), [(x * w, y * h) for x, y in zone.points])
            if allowed is not None:
                out[:, j] &= np.isin(cls, list(allowed))
        return out

    def update(
        self,
        t: float,
        ids: np.ndarray,
        xyxy: np.ndarray,
        cls: np.ndarray,
        conf: np.ndarray,
        now_in: np.ndarray,
        size: tuple[int, int],
    ) -> tuple[np.ndarray, list[Event]]:
        """Confirmed tracks seen in this frame (ascending ids) -> their zones (K, Z) after debouncing, and events."""
        idx = self._rows(ids)
        self._cls[idx] = cls
        events: list[Event] = []
        if len(self.regions.zones):
            events += self._zones(t, idx, xyxy, cls, conf, now_in)
        if len(self.regions.lines):
            events += self._lines(idx, xyxy, cls, conf, size)
        return self._inside[idx], events

    def end(self, ended: Iterable[EndedTrack]) -> list[Event]:
        """Tracks the tracker gave up on leave their zones (so zone counts return to zero) and are forgotten."""
        events: list[Event] = []
        gone = np.zeros(len(self._ids), bool)
        for track in ended:
            i = int(np.searchsorted(self._ids, track.track_id))
            if i >= len(self._ids) or self._ids[i] != track.track_id:
                continue
            gone[i] = True
            for j in np.flatnonzero(self._inside[i]):
                events.append(
                    Event(
                        "exit",
                        track.track_id,
                        track.cls,
                        track.best_conf,
                        track.box,
                        zone=self.regions.zones[j].name,
                        duration_s=max(track.last_t - float(self._since[i, j]), 0.0),
                    )
                )
        if gone.any():
            keep = ~gone
            self._ids, self._cls = self._ids[keep], self._cls[keep]
            self._inside, self._streak, self._since = self._inside[keep], self._streak[keep], self._since[keep]
            self._loitered, self._side, self._last_pt = self._loitered[keep], self._side[keep], self._last_pt[keep]
            self._over = self._over[keep]
        return events

    def counts(self) -> dict[str, dict[int, int]]:
        """Objects in each zone now, by class."""
        out: dict[str, dict[int, int]] = {}
        for j, zone in enumerate(self.regions.zones):
            classes, n = np.unique(self._cls[self._inside[:, j]], return_counts=True)
            out[zone.name] = {int(c): int(k) for c, k in zip(classes, n)}
        return out

    def _rows(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id, appending rows for ids seen for the first time."""
        new = ids[ids > self._ids[-1]] if len(self._ids) else ids  # ids only grow: unseen ones are the largest
        if len(new):
            n, z, n_lines = len(new), self._inside.shape[1], self._side.shape[1]
            order = np.argsort(new)
            self._ids = np.concatenate([self._ids, new[order]])
            self._cls = np.concatenate([self._cls, np.zeros(n, np.int64)])
            self._inside = np.concatenate([self._inside, np.zeros((n, z), bool)])
            self._streak = np.concatenate([self._streak, np.zeros((n, z), np.int32)])
            self._since = np.concatenate([self._since, np.zeros((n, z))])
            self._loitered = np.concatenate([self._loitered, np.zeros((n, z), bool)])
            self._side = np.concatenate([self._side, np.zeros((n, n_lines), np.int8)])
            self._last_pt = np.concatenate([self._last_pt, np.zeros((n, n_lines, 2))])
            self._over = np.concatenate([self._over, np.zeros((n, n_lines), np.int32)])
        return np.searchsorted(self._ids, ids)

    def _zones(
        self, t: float, idx: np.ndarray, xyxy: np.ndarray, cls: np.ndarray, conf: np.ndarray, now_in: np.ndarray
    ) -> list[Event]:
        events = []
        inside = self._inside[idx]
        streak = np.where(now_in != inside, self._streak[idx] + 1, 0)
        inertia = np.array([z.inertia for z in self.regions.zones])
        flip = streak >= inertia
        streak[flip] = 0
        self._streak[idx] = streak
        for k, j in zip(*np.nonzero(flip)):
            i, zone = idx[k], self.regions.zones[j]
            tid = int(self._ids[i])
            if inside[k, j]:
                events.append(
                    Event(
                        "exit",
                        tid,
                        int(cls[k]),
                        float(conf[k]),
                        box_tuple(xyxy[k]),
                        zone=zone.name,
                        duration_s=t - float(self._since[i, j]),
                    )
                )
                self._inside[i, j] = self._loitered[i, j] = False
            else:
                events.append(Event("enter", tid, int(cls[k]), float(conf[k]), box_tuple(xyxy[k]), zone=zone.name))
                self._inside[i, j], self._since[i, j] = True, t
        loiter_s = np.array([np.inf if z.loiter_s is None else z.loiter_s for z in self.regions.zones])
        due = self._inside[idx] & ~self._loitered[idx] & (t - self._since[idx] >= loiter_s)
        for k, j in zip(*np.nonzero(due)):
            i = idx[k]
            self._loitered[i, j] = True
            events.append(
                Event(
                    "loiter",
                    int(self._ids[i]),
                    int(cls[k]),
                    float(conf[k]),
                    box_tuple(xyxy[k]),
                    zone=self.regions.zones[j].name,
                    duration_s=t - float(self._since[i, j]),
                )
            )
        return events

    def _lines(self, idx: np.ndarray, xyxy: np.ndarray, cls: np.ndarray, conf: np.ndarray, size: tuple[int, int]) -> list[Event]:
        events = []
        w, h = size
        diagonal = float(np.hypot(w, h))
        for j, (line, allowed) in enumerate(zip(self.regions.lines, self.regions.line_classes)):
            a, b = np.asarray(line.points[0]) * (w, h), np.asarray(line.points[1]) * (w, h)
            pts = anchor_points(xyxy, line.anchor)
            d = side_of_line(pts, a, b, diagonal)
            side = np.where(d > line.margin, 1, np.where(d < -line.margin, -1, 0)).astype(np.int8)
            if allowed is not None:
                side[~np.isin(cls, list(allowed))] = 0
            old = self._side[idx, j]
            over = np.where((side != 0) & (old != 0) & (side != old), self._over[idx, j] + 1, 0)
            self._over[idx, j] = over
            for k in np.flatnonzero(over >= line.inertia):
                i = idx[k]
                self._over[i, j] = 0
                if segment_hit(self._last_pt[i, j], pts[k], a, b):
                    events.append(
                        Event(
                            "cross",
                            int(self._ids[i]),
                            int(cls[k]),
                            float(conf[k]),
                            box_tuple(xyxy[k]),
                            line=line.name,
                            direction=DIRECTIONS[0] if side[k] > 0 else DIRECTIONS[1],
                        )
                    )
            # The side changes once the crossing is counted (or its path passed beyond the line's ends);
            # until then the anchor's last point on the old side stays where the path left it.
            settled = (side != 0) & ((old == 0) | (side == old) | (over >= line.inertia))
            self._side[idx[settled], j] = side[settled]
            self._last_pt[idx[settled], j] = pts[settled]
        return events
