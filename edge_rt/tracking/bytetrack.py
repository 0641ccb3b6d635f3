"""ByteTrack (Zhang et al., 2022) that keeps identities by elapsed time, not by frame count.

Same association as Ultralytics' BYTETracker (its defaults: fused IoU-score cost, a second pass
with low-confidence boxes, new tracks confirmed on their second hit), with two changes a live
pipeline needs: the Kalman filter steps by the seconds between the frames this source actually
delivered (kalman.py), and a lost track is kept for `lost_s` seconds rather than N frames, so
identities hold when frames are skipped under load or a camera runs at another rate.

State is kept as columns (one row per track), so a frame with 200 objects costs a few numpy calls
and one assignment per pass, not a Python object per box.
"""

from __future__ import annotations

from dataclasses import dataclass

import lap
import numpy as np

from ..detect.postprocess import Detections
from . import kalman

TENTATIVE, TRACKED, LOST = 0, 1, 2


@dataclass(frozen=True)
class TrackerSettings:
    """ByteTrack's thresholds. `conf` is the run's --conf: boxes at or above it are matched first and
    start new tracks; boxes in [low_conf, conf) only continue tracks (ByteTrack's second pass)."""

    conf: float = 0.25
    low_conf: float = 0.1
    lost_s: float = 1.0  # how long a lost track waits to be found again (Ultralytics: 30 frames at 30 fps)
    match_cost: float = 0.8  # first pass: 1 - IoU * score must be below this (Ultralytics' match_thresh)
    low_match_cost: float = 0.5  # second pass: 1 - IoU below this
    tentative_match_cost: float = 0.7  # a new track's second hit
    publish_tentative: bool = False  # a new track's first box: left out, as Ultralytics and DeepStream do (counted)
    # A new track is confirmed (published, numbered) only once one of its boxes reaches this confidence, as Frigate
    # publishes an object only once its scores pass its threshold. Ultralytics confirms any second box at --conf.
    # On 16 clips of people (people detector, edge-rt bench track) no box 0.4 or more missed every person, while
    # boxes of 0.25-0.4 were mostly background (3733 against 2142): 0.5 cut the tracker's false boxes from 279 to 80
    # a clip and raised the mean IDF1 from 0.587 to 0.649 on 12 of them (0.581 -> 0.617 on the six shapes clips).
    confirm_conf: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.low_conf <= self.conf <= 1:
            raise ValueError(
                f"TrackerSettings: expected 0 <= low_conf <= conf <= 1, got low_conf {self.low_conf}, conf {self.conf}"
            )
        if not 0 <= self.confirm_conf <= 1:
            raise ValueError(f"TrackerSettings.confirm_conf: expected 0..1, got {self.confirm_conf}")
        if self.lost_s < 0:
            raise ValueError(f"TrackerSettings.lost_s: expected >= 0, got {self.lost_s}")


@dataclass(frozen=True)
class EndedTrack:
    """A confirmed track that was lost for longer than lost_s (or cut by a time jump)."""

    track_id: int
    cls: int
    first_t: float  # seconds, on the tracker's clock: when it was first seen
    last_t: float  # when it was last matched to a box
    best_conf: float
    box: tuple[float, float, float, float]  # its last box, source pixels


@dataclass(frozen=True, eq=False)
class TrackResult:
    """What one update decided: `rows` index the input detections that belong to a track (the ones to
    publish), `ids` their track ids; `started` lists ids confirmed on this update."""

    rows: np.ndarray  # (K,) int
    ids: np.ndarray  # (K,) int64
    confirmed: np.ndarray  # (K,) bool: False for a new track's first box
    first_t: np.ndarray  # (K,) when each row's track was first seen
    track_cls: np.ndarray  # (K,) each row's track's class (its most confident over time; the box keeps its own)
    started: frozenset[int]
    ended: tuple[EndedTrack, ...]

    def __post_init__(self) -> None:
        k = len(self.rows)
        for name in ("ids", "confirmed", "first_t", "track_cls"):
            if getattr(self, name).shape != (k,):
                raise ValueError(f"TrackResult.{name}: expected shape ({k},), got {getattr(self, name).shape}")


def box_tuple(row: np.ndarray) -> tuple[float, float, float, float]:
    return (float(row[0]), float(row[1]), float(row[2]), float(row[3]))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy boxes -> (N, M) IoU (2-D temporaries only: 3-D ones cost 4x at 200 x 200)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.result_type(a, b))
    w = np.minimum(a[:, 2:3], b[:, 2]) - np.maximum(a[:, 0:1], b[:, 0])
    h = np.minimum(a[:, 3:4], b[:, 3]) - np.maximum(a[:, 1:2], b[:, 1])
    np.maximum(w, 0, out=w)
    np.maximum(h, 0, out=h)
    inter = np.multiply(w, h, out=w)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b - inter
    return np.divide(inter, np.maximum(union, 1e-9, out=union), out=inter)


def assign(cost: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one pairs with cost below `limit` (lap.lapjv, as Ultralytics): (rows, cols).

    A track and a box that are each other's only candidate belong together in every optimal answer, so
    they are paired directly and only the contested rest goes to the solver: in a scene of 200 objects
    that is most of them."""
    if cost.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ok = cost < limit
    row_n, col_n = ok.sum(axis=1), ok.sum(axis=0)
    alone = ok & (row_n[:, None] == 1) & (col_n[None, :] == 1)
    rows, cols = np.nonzero(alone)
    busy_r = np.flatnonzero((row_n > 0) & ~alone.any(axis=1))
    busy_c = np.flatnonzero((col_n > 0) & ~alone.any(axis=0))
    if len(busy_r) == 1 or len(busy_c) == 1:  # one track with several boxes (or the reverse): the cheapest wins
        sub = cost[np.ix_(busy_r, busy_c)]
        r, c = np.unravel_index(int(np.argmin(sub)), sub.shape)
        rows, cols = np.append(rows, busy_r[r]), np.append(cols, busy_c[c])
    elif len(busy_r) and len(busy_c):
        contested = np.ascontiguousarray(cost[np.ix_(busy_r, busy_c)], dtype=np.float64)
        _, x, _ = lap.lapjv(contested, extend_cost=True, cost_limit=limit)
        hit = np.flatnonzero(x >= 0)
        rows = np.concatenate([rows, busy_r[hit]])
        cols = np.concatenate([cols, busy_c[x[hit]]])
    return rows.astype(np.int64), cols.astype(np.int64)


class ByteTracker:
    """One per source: ids count from 1, one per published object, and are never reused while the tracker lives."""

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self._next_id = 1
        self.unconfirmed = 0  # boxes left out because their track was not confirmed yet
        self._last_t: float | None = None
        self._ids = np.zeros(0, np.int64)
        self._state = np.zeros(0, np.int8)
        self._mean = np.zeros((0, 8))
        self._cov = np.zeros((0, 3, 4))  # kalman.py: four 2x2 blocks
        self._pred_t = np.zeros(0)  # when the filter's estimate is for
        self._first_t = np.zeros(0)
        self._last_seen = np.zeros(0)
        self._best = np.zeros(0)
        self._cls = np.zeros(0, np.int64)  # the track's class: the one with the most confidence over its boxes
        self._votes = np.zeros((0, 1), np.float32)  # (tracks, classes) summed confidence
        self._box = np.zeros((0, 4))

    @property
    def active(self) -> int:
        """Tracks held now (tracked, lost or tentative)."""
        return len(self._ids)

    def update(self, dets: Detections, t: float) -> TrackResult:
        s = self.settings
        ended: list[EndedTrack] = []
        first_update = self._last_t is None
        if self._last_t is not None and t < self._last_t:  # the clock went back (a file restarted): a new scene
            ended += self._drop(np.ones(len(self._ids), bool))
        self._last_t = t

        # As Ultralytics: a lost track stops growing or shrinking (its height velocity is zeroed), and a new
        # track is not moved before its second box (it has no velocity yet, only a widening uncertainty).
        # Over 6 ground-truth clips fed every 2nd frame, the first took HOTA 0.480 -> 0.502, IDF1 0.579 -> 0.620.
        self._mean[self._state == LOST, 7] = 0.0
        dt = np.where(self._state == TENTATIVE, 0.0, t - self._pred_t)
        self._mean, self._cov = kalman.predict(self._mean, self._cov, dt)
        self._pred_t[:] = t
        # Matching in float32: the (tracks x boxes) matrices are most of the cost at 200 objects.
        predicted = kalman.xyah_to_xyxy(self._mean[:, :4]).astype(np.float32)
        xyxy = dets.xyxy.astype(np.float32, copy=False)
        conf = dets.conf.astype(np.float32, copy=False)
        high = np.flatnonzero(conf >= s.conf)
        low = np.flatnonzero((conf >= s.low_conf) & (conf < s.conf))
        det_track = np.full(len(dets), -1, np.int64)  # row -> track index
        was_tentative = self._state == TENTATIVE

        # 1. confirmed tracks (tracked or lost) with the confident boxes; cost fused with the score
        pool = np.flatnonzero(~was_tentative)
        iou = iou_matrix(predicted[pool], xyxy[high])
        r, c = assign(1 - iou * conf[high][None, :], s.match_cost)
        det_track[high[c]] = pool[r]
        free_high = high[det_track[high] < 0]
        # 2. tracks still being followed, with the weak boxes (ByteTrack's idea: an occluded object scores low)
        taken = np.zeros(len(self._ids), bool)
        taken[pool[r]] = True
        rest = np.flatnonzero((self._state == TRACKED) & ~taken)
        r2, c2 = assign(1 - iou_matrix(predicted[rest], xyxy[low]), s.low_match_cost)
        det_track[low[c2]] = rest[r2]
        taken[rest[r2]] = True
        # 3. new tracks from the last frame, with what confident boxes remain: their second hit confirms them
        tentative = np.flatnonzero(was_tentative)
        iou3 = iou_matrix(predicted[tentative], xyxy[free_high])
        r3, c3 = assign(1 - iou3 * conf[free_high][None, :], s.tentative_match_cost)
        det_track[free_high[c3]] = tentative[r3]
        taken[tentative[r3]] = True
        new_rows = free_high[det_track[free_high] < 0]

        matched_rows = np.flatnonzero(det_track >= 0)
        tracks = det_track[matched_rows]
        if len(tracks):
            self._mean[tracks], self._cov[tracks] = kalman.update(
                self._mean[tracks], self._cov[tracks], kalman.xyxy_to_xyah(xyxy[matched_rows])
            )
            self._last_seen[tracks] = t
            self._best[tracks] = np.maximum(self._best[tracks], conf[matched_rows])
            self._vote(tracks, dets.cls[matched_rows], conf[matched_rows])
            self._box[tracks] = xyxy[matched_rows]
        confirmed_now = tracks[was_tentative[tracks]]
        doubtful = confirmed_now[self._best[confirmed_now] < s.confirm_conf]  # no box sure enough yet: wait
        confirmed_now = confirmed_now[self._best[confirmed_now] >= s.confirm_conf]
        self._state[tracks] = TRACKED
        self._state[doubtful] = TENTATIVE
        # Lost: confirmed tracks not seen now; dropped: tentative ones not confirmed, lost ones past lost_s.
        unseen = ~taken
        self._state[unseen & ~was_tentative] = LOST
        expired = unseen & ((was_tentative) | (t - self._last_seen > s.lost_s)) | self._merge_duplicates(
            det_track, xyxy, conf, dets.cls, t
        )
        confirmed_now = confirmed_now[~expired[confirmed_now]]
        self._number(confirmed_now[self._ids[confirmed_now] == 0])
        started = self._ids[confirmed_now]
        if expired.any():
            ended += self._drop(expired)
            det_track[matched_rows] = self._reindex(expired)[det_track[matched_rows]]

        new_first = len(self._ids)
        sure = np.full(len(new_rows), first_update) & (conf[new_rows] >= s.confirm_conf)
        self._add(xyxy[new_rows], conf[new_rows], dets.cls[new_rows], t, confirmed=sure)
        det_track[new_rows] = np.arange(new_first, new_first + len(new_rows))
        if first_update:
            started = np.concatenate([started, self._ids[new_first:][sure]])

        rows = np.flatnonzero(det_track >= 0)
        owner = det_track[rows]
        if not s.publish_tentative:
            keep = self._state[owner] == TRACKED
            self.unconfirmed += int(len(rows) - keep.sum())
            rows, owner = rows[keep], owner[keep]
        return TrackResult(
            rows=rows,
            ids=self._ids[owner].copy(),
            confirmed=self._state[owner] == TRACKED,
            first_t=self._first_t[owner].copy(),
            track_cls=self._cls[owner].copy(),
            started=frozenset(int(i) for i in started),
            ended=tuple(ended),
        )

    def finish(self) -> list[EndedTrack]:
        """The source ended: every confirmed track ends now (a subscriber closes what it opened)."""
        return self._drop(np.ones(len(self._ids), bool))

    def _merge_duplicates(
        self, det_track: np.ndarray, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray, t: float
    ) -> np.ndarray:
        """A lost track lying on a followed one (IoU > 0.85) is the same object twice: the younger of the two
        goes (Ultralytics' remove_duplicate_stracks), or it would come back under a second id. Where the younger
        is the one that took this frame's box, the older takes the box over (Ultralytics drops it: the object
        vanished for a frame, leaving and re-entering its zones). Returns the tracks to remove."""
        out = np.zeros(len(self._ids), bool)
        tracked, lost = np.flatnonzero(self._state == TRACKED), np.flatnonzero(self._state == LOST)
        if not len(tracked) or not len(lost):
            return out
        boxes = kalman.xyah_to_xyxy(self._mean[:, :4])
        pairs = np.argwhere(iou_matrix(boxes[tracked], boxes[lost]) > 0.85)
        for a, b in zip(tracked[pairs[:, 0]], lost[pairs[:, 1]]):
            if out[a] or out[b]:
                continue
            if self._first_t[b] >= self._first_t[a]:
                out[b] = True
                continue
            out[a] = True  # the followed one is younger: the older, lost one takes its box
            rows = np.flatnonzero(det_track == a)
            if len(rows):
                row = rows[:1]
                self._mean[b : b + 1], self._cov[b : b + 1] = kalman.update(
                    self._mean[b : b + 1], self._cov[b : b + 1], kalman.xyxy_to_xyah(xyxy[row])
                )
                self._state[b], self._last_seen[b] = TRACKED, t
                self._vote(np.array([b]), cls[row], conf[row])
                self._best[b], self._box[b] = max(self._best[b], float(conf[row[0]])), xyxy[row[0]]
                det_track[row] = b
        return out

    def _vote(self, tracks: np.ndarray, cls: np.ndarray, conf: np.ndarray) -> None:
        """A detector may call one object a circle in one frame and a square in the next; the track keeps the
        class with the most confidence so far, so zone filters, events and counts do not flicker with it."""
        need = int(cls.max()) + 1 if len(cls) else 0
        if need > self._votes.shape[1]:
            self._votes = np.pad(self._votes, ((0, 0), (0, need - self._votes.shape[1])))
        self._votes[tracks, cls.astype(np.int64)] += conf  # a track takes one box per update: no repeated pairs
        self._cls[tracks] = self._votes[tracks].argmax(axis=1)

    def _reindex(self, removed: np.ndarray) -> np.ndarray:
        """Old track index -> new index after the rows in `removed` were deleted (-1 for deleted)."""
        keep = ~removed
        out = np.full(len(removed), -1, np.int64)
        out[keep] = np.arange(int(keep.sum()))
        return out

    def _drop(self, mask: np.ndarray) -> list[EndedTrack]:
        ended = [
            EndedTrack(
                int(self._ids[i]),
                int(self._cls[i]),
                float(self._first_t[i]),
                float(self._last_seen[i]),
                float(self._best[i]),
                box_tuple(self._box[i]),
            )
            for i in np.flatnonzero(mask & (self._state != TENTATIVE))
        ]
        keep = ~mask
        self._ids, self._state, self._mean, self._cov = self._ids[keep], self._state[keep], self._mean[keep], self._cov[keep]
        self._pred_t, self._first_t, self._last_seen = self._pred_t[keep], self._first_t[keep], self._last_seen[keep]
        self._best, self._cls, self._box, self._votes = self._best[keep], self._cls[keep], self._box[keep], self._votes[keep]
        return ended

    def _number(self, tracks: np.ndarray) -> None:
        """Ids go to tracks when first published, so they count the objects a subscriber sees: a new track
        that is never confirmed (a flicker, a duplicate box) uses none. 0 until then."""
        self._ids[tracks] = np.arange(self._next_id, self._next_id + len(tracks))
        self._next_id += len(tracks)

    def _add(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray, t: float, confirmed: np.ndarray) -> None:
        """New tracks; `confirmed` (N,) bool: the ones published from their first box (a run's first frame)."""
        n = len(xyxy)
        if n == 0:
            return
        mean, cov = kalman.initiate(kalman.xyxy_to_xyah(xyxy))
        self._ids = np.concatenate([self._ids, np.zeros(n, np.int64)])
        first = len(self._ids) - n
        self._number(first + np.flatnonzero(confirmed | self.settings.publish_tentative))  # published now: numbered now
        self._state = np.concatenate([self._state, np.where(confirmed, TRACKED, TENTATIVE).astype(np.int8)])
        self._mean = np.concatenate([self._mean, mean])
        self._cov = np.concatenate([self._cov, cov])
        self._pred_t = np.concatenate([self._pred_t, np.full(n, t)])
        self._first_t = np.concatenate([self._first_t, np.full(n, t)])
        self._last_seen = np.concatenate([self._last_seen, np.full(n, t)])
        self._best = np.concatenate([self._best, conf])
        self._cls = np.concatenate([self._cls, cls.astype(np.int64)])
        self._votes = np.concatenate([self._votes, np.zeros((n, self._votes.shape[1]), np.float32)])
        self._vote(np.arange(len(self._ids) - n, len(self._ids)), cls, conf)
        self._box = np.concatenate([self._box, xyxy])
