"""Line counts of a tracker's output against the true crossings of a people clip (`<stem>.lines.json`).

Two ways of counting the same tracks: edge_rt's line events (tracking/events.py, exactly as `run`
raises them) and the naive count many scripts do on Ultralytics' tracks, one count each time a track's
foot point changes side between two of its boxes. Counting errors of the naive way on good trackers
are what the line events must beat: jitter of a box on the line, and identities swapped as two
people pass each other on it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..tracking.mot import MotRows
from ..tracking.zones import anchor_points, parse_regions, resolve, side_of_line
from ..training.people_clips import lines_file as lines_file  # where the truth lies beside a clip

DIRECTIONS = ("in", "out")


@dataclass(frozen=True)
class LineTruth:
    name: str
    points: tuple[tuple[float, float], tuple[float, float]]
    counts: dict[str, int]  # direction -> true crossings


@dataclass(frozen=True)
class LineCounts:
    """A tracker's counts of one line, both ways, by edge_rt's line events and by naive side changes."""

    events: dict[str, int]
    naive: dict[str, int]


def read_truth(path: Path) -> LineTruth:
    """A `.lines.json` as `edge-rt dataset clip --tracks --people` writes it."""
    try:
        data = json.loads(Path(path).read_text())
        line = data["line"]
        a, b = (tuple(float(v) for v in p) for p in line["points"])
        return LineTruth(str(line["name"]), (a, b), {d: int(data[d]) for d in DIRECTIONS})  # type: ignore[arg-type]
    except FileNotFoundError:
        raise ConfigError(f"--lines {str(path)!r}: no such file") from None
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f"--lines {str(path)!r}: expected the JSON `edge-rt dataset clip --tracks --people` writes (line, in, out)"
        ) from None


def _by_frame(tracks: MotRows, fed: Sequence[int]) -> list[tuple[int, np.ndarray, np.ndarray]]:
    order = np.lexsort((tracks.ids, tracks.frame))
    frame, ids, xyxy = tracks.frame[order], tracks.ids[order], tracks.xyxy[order]
    out = []
    for f in fed:
        lo, hi = np.searchsorted(frame, f), np.searchsorted(frame, f, side="right")
        out.append((f, ids[lo:hi], xyxy[lo:hi]))
    return out


def count_events(tracks: MotRows, fed: Sequence[int], fps: float, size: tuple[int, int], truth: LineTruth) -> dict[str, int]:
    """edge_rt's own line events over these tracks, frame by frame as the runtime feeds them."""
    from ..tracking.events import RegionEvents

    zones, lines = parse_regions("bench", None, {truth.name: [list(p) for p in truth.points]})
    events = RegionEvents(resolve("bench", zones, lines, {0: "object"}))
    out = dict.fromkeys(DIRECTIONS, 0)
    for f, ids, xyxy in _by_frame(tracks, fed):
        n = len(ids)
        _, raised = events.update(
            (f - 1) / fps, ids, xyxy, np.zeros(n, np.int64), np.ones(n, np.float32), np.zeros((n, 0), bool), size
        )
        for e in raised:
            if e.kind == "cross" and e.direction in out:
                out[e.direction] += 1
    return out


def count_naive(tracks: MotRows, fed: Sequence[int], size: tuple[int, int], truth: LineTruth) -> dict[str, int]:
    """One count per change of side of a track's foot point between consecutive boxes of that track."""
    w, h = size
    a, b = np.array(truth.points[0]) * (w, h), np.array(truth.points[1]) * (w, h)
    last: dict[int, bool] = {}
    out = dict.fromkeys(DIRECTIONS, 0)
    for _, ids, xyxy in _by_frame(tracks, fed):
        sides = side_of_line(anchor_points(xyxy, "bottom_center"), a, b, math.hypot(w, h)) > 0
        for tid, positive in zip(ids.tolist(), sides.tolist()):
            if tid in last and last[tid] != positive:
                out["in" if positive else "out"] += 1
            last[tid] = positive
    return out


def count_lines(tracks: MotRows, fed: Sequence[int], fps: float, size: tuple[int, int], truth: LineTruth) -> LineCounts:
    return LineCounts(count_events(tracks, fed, fps, size, truth), count_naive(tracks, fed, size, truth))


def error(counts: dict[str, int], truth: LineTruth) -> int:
    """The larger miss of the two directions."""
    return max(abs(counts[d] - truth.counts[d]) for d in DIRECTIONS)
