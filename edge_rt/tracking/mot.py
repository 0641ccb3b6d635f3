"""MOTChallenge files and tracking scores against ground truth (HOTA, CLEAR MOT, identity metrics).

A tracker's worth is whether each object keeps one id, which a detector benchmark cannot see. The
scores come from TrackEval (the MOTChallenge's own code, here kovalp's maintained `trackeval` fork):
its metric classes run on the per-frame ids and IoU matrices built here in memory, the way its
MOTChallenge dataset class builds them from files (ids relabelled 0..n-1, IoU as similarity).

File format, one box per line (MOTChallenge 2D box, as in MOT17's gt/gt.txt):

    frame,id,bb_left,bb_top,bb_width,bb_height,conf,class,visibility

Frames are 1-based; boxes are in 1-based pixel coordinates (MOTChallenge's: the top-left pixel is
(1, 1)), so reading subtracts 1 and returns edge_rt's 0-based source pixels. In ground truth `conf`
is the "consider" flag (0: ignore this box), `class` and `visibility` (0..1) are informative; in
tracker output `conf` is the box's score and the last columns may be -1. Lines of 6 to 10 numbers
are read; anything else is refused with the line number. Scoring is class-agnostic, as the
MOTChallenge scores one class: the class column is carried, not matched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, MissingDependencyError

MATCH_IOU = 0.5  # CLEAR and identity metrics: a box matches at IoU >= 0.5 (TrackEval's THRESHOLD)


@dataclass(frozen=True, eq=False)
class MotRows:
    """Boxes with identities as columns: frame (N,) 1-based, ids (N,), xyxy (N, 4) 0-based pixels,
    conf (N,), cls (N,) (whatever the file says: -1 when unknown), visibility (N,) 0..1 (1 when unknown)."""

    frame: np.ndarray
    ids: np.ndarray
    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray
    visibility: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.frame)
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4 or len(self.xyxy) != n:
            raise ValueError(f"MotRows.xyxy: expected shape ({n}, 4), got {self.xyxy.shape}")
        for name in ("frame", "ids", "conf", "cls", "visibility"):
            shape = getattr(self, name).shape
            if shape != (n,):
                raise ValueError(f"MotRows.{name}: expected shape ({n},), got {shape}")

    def __len__(self) -> int:
        return len(self.frame)

    @classmethod
    def build(
        cls,
        frame: Iterable[int],
        ids: Iterable[int],
        xyxy: Iterable[Sequence[float]] | np.ndarray,
        conf: Iterable[float] | None = None,
        classes: Iterable[int] | None = None,
        visibility: Iterable[float] | None = None,
    ) -> MotRows:
        """Columns from lists; missing ones get MOTChallenge's defaults (conf 1, class -1, visibility 1)."""
        f = np.asarray(list(frame), np.int64)
        n = len(f)
        return cls(
            f,
            np.asarray(list(ids), np.int64),
            np.asarray(xyxy, np.float64).reshape(n, 4),
            np.ones(n) if conf is None else np.asarray(list(conf), np.float64),
            np.full(n, -1, np.int64) if classes is None else np.asarray(list(classes), np.int64),
            np.ones(n) if visibility is None else np.asarray(list(visibility), np.float64),
        )

    @classmethod
    def empty(cls) -> MotRows:
        return cls.build([], [], np.zeros((0, 4)))

    def select(self, mask: np.ndarray) -> MotRows:
        return MotRows(self.frame[mask], self.ids[mask], self.xyxy[mask], self.conf[mask], self.cls[mask], self.visibility[mask])


def write_mot(path: Path, rows: MotRows) -> Path:
    """Write `rows` sorted by frame then id, boxes in MOTChallenge's 1-based pixels."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    order = np.lexsort((rows.ids, rows.frame))
    lines = []
    for i in order:
        x1, y1, x2, y2 = rows.xyxy[i]
        lines.append(
            f"{rows.frame[i]},{rows.ids[i]},{x1 + 1:.2f},{y1 + 1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
            f"{rows.conf[i]:g},{rows.cls[i]},{rows.visibility[i]:.3f}\n"
        )
    path.write_text("".join(lines))
    return path


def read_mot(path: Path, what: str = "--gt") -> MotRows:
    """Read a MOTChallenge file; a missing file or a line that is not MOT format is one ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{what} {str(path)!r}: no such file; expected a MOTChallenge text file (frame,id,left,top,width,height,...)"
        )
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {str(path)!r}: cannot read it as text ({exc})") from None
    values: list[list[float]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.replace(" ", "").split(",") if "," in line else line.split()
        try:
            row = [float(p) for p in parts]
        except ValueError:
            row = []
        if not 6 <= len(row) <= 10 or not np.isfinite(row[:6]).all():
            raise ConfigError(
                f"{what} {str(path)!r}:{number}: {line.strip()[:60]!r} is not a MOTChallenge line "
                "(frame,id,bb_left,bb_top,bb_width,bb_height[,conf,class,visibility])"
            )
        if row[0] < 1 or row[0] != int(row[0]) or row[1] != int(row[1]) or row[4] < 0 or row[5] < 0:
            raise ConfigError(
                f"{what} {str(path)!r}:{number}: frame must be an integer >= 1, id an integer, width and height >= 0"
            )
        defaults = [1.0, -1.0, 1.0]  # conf, class, visibility where the line stops early
        values.append((row + defaults[len(row) - 6 :])[:9])
    if not values:
        raise ConfigError(f"{what} {str(path)!r}: the file holds no boxes")
    a = np.asarray(values, np.float64)
    xyxy = np.stack([a[:, 2] - 1, a[:, 3] - 1, a[:, 2] - 1 + a[:, 4], a[:, 3] - 1 + a[:, 5]], axis=1)
    rows = MotRows(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), xyxy, a[:, 6], a[:, 7].astype(np.int64), a[:, 8])
    check_unique(rows, f"{what} {str(path)!r}")
    return rows


def check_unique(rows: MotRows, where: str) -> None:
    """An id twice in one frame makes every identity metric meaningless (TrackEval refuses it too)."""
    if len(rows) == 0:
        return
    pairs = np.stack([rows.frame, rows.ids], axis=1)
    uniq, counts = np.unique(pairs, axis=0, return_counts=True)
    if (counts > 1).any():
        frame, tid = uniq[np.argmax(counts > 1)]
        raise ConfigError(f"{where}: id {tid} appears twice in frame {frame}; ids must be unique within a frame")


# --------------------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class MotScore:
    """TrackEval's figures for one tracker on one sequence (fractions 0..1; MOTA may be negative).

    HOTA, DetA, AssA, LocA are averaged over TrackEval's 19 IoU thresholds 0.05..0.95; CLEAR (MOTA,
    MOTP, ID switches, fragmentations, mostly tracked/lost) and identity (IDF1) match at IoU 0.5.
    """

    hota: float
    deta: float
    assa: float
    loca: float
    mota: float
    motp: float
    idf1: float
    idp: float
    idr: float
    idsw: int
    frag: int
    mostly_tracked: int
    mostly_lost: int
    tp: int
    fp: int
    fn: int
    frames: int  # frames scored
    gt_boxes: int
    tracker_boxes: int
    gt_ids: int
    tracker_ids: int
    ignored_gt_boxes: int  # conf 0 or under min_visibility: neither counted nor held against a tracker


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (N, 4) xyxy boxes against (M, 4); zero-area boxes score 0, as in TrackEval."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.zeros_like(inter)
    ok = (union > np.finfo(float).eps) & (area_a[:, None] > np.finfo(float).eps)
    out[ok] = inter[ok] / union[ok]
    return out


def _relabel(ids_per_frame: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Ids -> 0..n-1 over the sequence, as TrackEval's MOTChallenge preprocessing does."""
    present = np.unique(np.concatenate(ids_per_frame)) if ids_per_frame else np.zeros(0, np.int64)
    lookup = {int(v): i for i, v in enumerate(present)}
    return [np.asarray([lookup[int(v)] for v in ids], np.int64) for ids in ids_per_frame], len(present)


def _ignored_tracker_boxes(sim_all: np.ndarray, ignored_gt: np.ndarray) -> np.ndarray:
    """Tracker boxes that match (IoU >= 0.5, one-to-one over all gt) a gt box marked to ignore.

    TrackEval does this for MOT17's distractor classes: a tracker that follows an object the ground
    truth does not count is neither rewarded nor punished for it.
    """
    from scipy.optimize import linear_sum_assignment

    if not ignored_gt.any() or sim_all.shape[1] == 0:
        return np.zeros(0, np.int64)
    scores = sim_all.copy()
    scores[scores < MATCH_IOU - np.finfo(float).eps] = 0
    rows, cols = linear_sum_assignment(-scores)
    matched = scores[rows, cols] > np.finfo(float).eps
    rows, cols = rows[matched], cols[matched]
    return np.asarray(cols[ignored_gt[rows]], np.int64)


def score(gt: MotRows, tracks: MotRows, frames: Iterable[int] | None = None, min_visibility: float = 0.0) -> MotScore:
    """Score `tracks` against `gt` on `frames` (1-based; default every frame either file mentions).

    Only the given frames count, with the ground truth restricted to them: a tracker fed every other
    frame is scored on those. Tracker boxes on other frames are left out. Ground-truth boxes with
    conf 0 or visibility below `min_visibility` are ignored together with the tracker box that matches
    each of them.
    """
    try:
        from trackeval.metrics import CLEAR, HOTA, Identity
    except ImportError:
        raise MissingDependencyError(
            "scoring tracks needs TrackEval: pip install 'edge_rt[train]' (or pip install trackeval)"
        ) from None
    if frames is None:
        last = max(int(gt.frame.max()) if len(gt) else 0, int(tracks.frame.max()) if len(tracks) else 0)
        steps = np.arange(1, last + 1)
    else:
        steps = np.unique(np.asarray(list(frames), np.int64))
    check_unique(tracks, "tracker output")
    gt_by = _split_by_frame(gt, steps)
    tr_by = _split_by_frame(tracks, steps)
    gt_ids, tr_ids, sims = [], [], []
    ignored_total = 0
    for g, t in zip(gt_by, tr_by):
        sim_all = iou_matrix(g.xyxy, t.xyxy)
        ignored = (g.conf == 0) | (g.visibility < min_visibility)
        drop = _ignored_tracker_boxes(sim_all, ignored)
        keep_t = np.ones(len(t), bool)
        keep_t[drop] = False
        ignored_total += int(ignored.sum())
        gt_ids.append(g.ids[~ignored])
        tr_ids.append(t.ids[keep_t])
        sims.append(sim_all[~ignored][:, keep_t])
    gt_rel, n_gt = _relabel(gt_ids)
    tr_rel, n_tr = _relabel(tr_ids)
    n_gt_boxes, n_tr_boxes = sum(len(v) for v in gt_rel), sum(len(v) for v in tr_rel)
    data = {
        "num_timesteps": len(steps),
        "num_gt_ids": n_gt,
        "num_tracker_ids": n_tr,
        "num_gt_dets": n_gt_boxes,
        "num_tracker_dets": n_tr_boxes,
        "gt_ids": gt_rel,
        "tracker_ids": tr_rel,
        "similarity_scores": sims,
    }
    quiet = {"THRESHOLD": MATCH_IOU, "PRINT_CONFIG": False}
    hota = HOTA().eval_sequence(data)
    clear = CLEAR(dict(quiet)).eval_sequence(data)
    ident = Identity(dict(quiet)).eval_sequence(data)
    return MotScore(
        hota=float(np.mean(hota["HOTA"])),
        deta=float(np.mean(hota["DetA"])),
        assa=float(np.mean(hota["AssA"])),
        loca=float(np.mean(hota["LocA"])),
        mota=float(clear["MOTA"]),
        motp=float(clear["MOTP"]),
        idf1=float(ident["IDF1"]),
        idp=float(ident["IDP"]),
        idr=float(ident["IDR"]),
        idsw=int(clear["IDSW"]),
        frag=int(clear["Frag"]),
        mostly_tracked=int(clear["MT"]),
        mostly_lost=int(clear["ML"]),
        tp=int(clear["CLR_TP"]),
        fp=int(clear["CLR_FP"]),
        fn=int(clear["CLR_FN"]),
        frames=len(steps),
        gt_boxes=n_gt_boxes,
        tracker_boxes=n_tr_boxes,
        gt_ids=n_gt,
        tracker_ids=n_tr,
        ignored_gt_boxes=ignored_total,
    )


def _split_by_frame(rows: MotRows, steps: np.ndarray) -> list[MotRows]:
    """One MotRows per step, in the order of `steps` (empty where a frame has no boxes)."""
    order = np.argsort(rows.frame, kind="stable")
    sorted_frames = rows.frame[order]
    lo = np.searchsorted(sorted_frames, steps, side="left")
    hi = np.searchsorted(sorted_frames, steps, side="right")
    return [rows.select(order[a:b]) for a, b in zip(lo, hi)]
