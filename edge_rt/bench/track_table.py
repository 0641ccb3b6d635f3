"""`edge-rt bench track`'s tables: one clip's scores and line counts, and the mean over several clips."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .hardware import host_line
from .track import LABELS, TrackBenchResult
from .track_lines import DIRECTIONS

_FOOT = (
    "HOTA/DetA/AssA: TrackEval, mean over IoU 0.05..0.95; MOTA, IDF1, IDSW at IoU 0.5; ids: track ids the tracker gave; "
    "p50 ms: one update call"
)


def _label(r: TrackBenchResult, tracker: str) -> str:
    return LABELS.get(tracker, f"recorded {Path(r.messages).name}" if tracker == "messages" else tracker)


def _counts(c: dict[str, int]) -> str:
    return "/".join(str(c[d]) for d in DIRECTIONS)


def track_table(r: TrackBenchResult) -> str:
    """Scores in percent (MOTChallenge's habit), ID switches and ids as counts, cost per update; line counts
    in/out where the clip has true crossings."""
    lines = [host_line(r.host)]
    if r.model:
        lines.append(
            f"{r.model} on {r.source}: {r.frames} frames, {r.fps:g} frames/s, {r.size[0]}x{r.size[1]}; "
            f"detector at conf {r.conf:g}: {r.detections_per_frame:.1f} boxes/frame, p50 {r.detect_ms.get('p50', 0):.2f} ms/frame"
        )
    lines.append(f"ground truth {r.gt}: {r.gt_ids} ids, {r.gt_boxes} boxes")
    truth = r.lines
    head = (
        f"{'tracker':<24} {'every':>5} {'frames':>6} {'HOTA':>6} {'DetA':>6} {'AssA':>6} {'MOTA':>6} {'IDF1':>6} "
        f"{'IDSW':>5} {'ids':>5} {'p50 ms':>7}"
    )
    if truth is not None:
        head += f" {'line':>7} {'naive':>7}"
    lines += [head, "-" * len(head)]
    for row in r.rows:
        s = row.score
        cost = f"{row.cost_ms['p50']:7.3f}" if row.cost_ms else f"{'-':>7}"
        text = (
            f"{_label(r, row.tracker):<24} {row.every:>5} {s.frames:>6} {100 * s.hota:6.1f} {100 * s.deta:6.1f} "
            f"{100 * s.assa:6.1f} {100 * s.mota:6.1f} {100 * s.idf1:6.1f} {s.idsw:>5} {s.tracker_ids:>5} {cost}"
        )
        if truth is not None:
            text += f" {_counts(row.lines.events):>7} {_counts(row.lines.naive):>7}" if row.lines else f" {'-':>7} {'-':>7}"
        lines.append(text)
    lines.append(_FOOT)
    if truth is not None:
        lines.append(
            f"line {truth.name!r}: true crossings in/out {_counts(truth.counts)}; line: edge_rt's line events on the tracker's "
            "tracks (as `run` counts); naive: a count per change of side of a track's foot point"
        )
    return "\n".join(lines)


def mean_table(results: Sequence[TrackBenchResult]) -> str:
    """Mean scores over clips, per tracker and frame step; line counts as the summed miss per direction."""
    keys: list[tuple[str, int]] = []
    for r in results:
        keys += [(row.tracker, row.every) for row in r.rows if (row.tracker, row.every) not in keys]
    head = f"{'tracker':<24} {'every':>5} {'clips':>5} {'HOTA':>6} {'IDF1':>6} {'IDP':>6} {'IDR':>6} {'MOTA':>6} {'IDSW':>6} {'FP':>6} {'FN':>6}"
    with_lines = any(r.lines is not None for r in results)
    if with_lines:
        head += f" {'line miss':>10} {'naive miss':>10}"
    out = [f"mean of {len(results)} clips: " + ", ".join(Path(r.source or r.gt).stem for r in results), head, "-" * len(head)]
    for tracker, every in keys:
        rows = [(r, row) for r in results for row in r.rows if (row.tracker, row.every) == (tracker, every)]
        m = {k: float(np.mean([getattr(row.score, k) for _, row in rows])) for k in ("hota", "idf1", "idp", "idr", "mota", "idsw", "fp", "fn")}
        text = (
            f"{LABELS.get(tracker, tracker):<24} {every:>5} {len(rows):>5} {100 * m['hota']:6.1f} {100 * m['idf1']:6.1f} "
            f"{100 * m['idp']:6.1f} {100 * m['idr']:6.1f} {100 * m['mota']:6.1f} {m['idsw']:6.1f} {m['fp']:6.1f} {m['fn']:6.1f}"
        )
        if with_lines:
            counted = [(r.lines, row.lines) for r, row in rows if r.lines is not None and row.lines is not None]
            miss = [sum(abs(c.events[d] - t.counts[d]) for t, c in counted) for d in DIRECTIONS]
            naive = [sum(abs(c.naive[d] - t.counts[d]) for t, c in counted) for d in DIRECTIONS]
            text += f" {'/'.join(map(str, miss)):>10} {'/'.join(map(str, naive)):>10}"
        out.append(text)
    if with_lines:
        out.append("line miss, naive miss: |counted - true| summed over the clips, in/out")
    return "\n".join(out)
