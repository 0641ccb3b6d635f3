"""Which optimization profile of a native engine runs a batch, and whether a run fits the engine at all:
pure arithmetic over the ranges the engine reports, testable without TensorRT or a GPU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..detect.model_info import ModelInfo
from ..errors import ModelError
from .tensorrt_sidecar import rebuild_command


@dataclass(frozen=True)
class ProfileRange:
    """The batch sizes one optimization profile takes, and the largest input (h, w) it letterboxes to:
    the image's own size for a plain engine, the plan's new_h/new_w for a graph-preprocess one."""

    index: int
    min_batch: int
    max_batch: int
    max_hw: tuple[int, int] | None = None  # None: fixed by the model (its imgsz), or not read


def choose_profile(batch: int, profiles: Sequence[ProfileRange]) -> tuple[ProfileRange, int]:
    """The profile for `batch` and the batch it runs at (padded up to the profile's smallest, if need be).

    An exact per-batch profile wins; otherwise the one that pads least, then the narrowest range.
    """
    if batch < 1:
        raise ModelError(f"batch of {batch} frames: expected at least one")
    fits = [(max(batch, p.min_batch), p.max_batch - p.min_batch, p.index, p) for p in profiles if batch <= p.max_batch]
    if not fits:
        largest = max((p.max_batch for p in profiles), default=0)
        raise ModelError(
            f"batch {batch} is outside its optimisation profiles (largest batch {largest}); rebuild with --max-batch {batch}"
        )
    run, _, _, best = min(fits, key=lambda f: f[:3])
    return best, run


def plan_problem(plan: Sequence[int], lo: Sequence[int], hi: Sequence[int]) -> str | None:
    """Why a letterbox plan falls outside the values the engine was built for, or None."""
    names = ("new_h", "new_w", "pad_top", "pad_left", "pad_bottom", "pad_right")
    for i, (v, a, b) in enumerate(zip(plan, lo, hi)):
        if not a <= v <= b:
            what = names[i] if i < len(names) else f"value {i}"
            return f"letterbox {what}={v} is outside the engine's range {a}..{b}"
    return None


def check_run_fits(
    info: ModelInfo,
    profiles: Sequence[ProfileRange],
    batch: int | None,
    imgsz: tuple[int, int] | None,
    meta: Mapping[str, Any],
    path: Path,
) -> None:
    """Refuse at load, in one line, a run the engine's profiles do not take; mid-run it would fail at the
    first full batch (choose_profile) or the first frame (setInputShape).

    `batch` is the largest the run asks for (one per source, or --max-batch): a fixed-batch model runs
    its own batch whatever that is, and an in-graph NMS caps it (runner.resolve_batch says so).
    """
    if batch is not None and info.batch is None and profiles:
        run = min(batch, info.max_batch) if info.max_batch else batch
        largest = max(p.max_batch for p in profiles)
        if run > largest:
            again = rebuild_command({**meta, "max_batch": run}, path)
            raise ModelError(
                f"engine {path.name}: its profiles take batches up to {largest}, this run sends up to {run} "
                f"(one frame per source, or --max-batch); run with --max-batch {largest}, or rebuild it: {again}"
            )
    sizes = [p.max_hw for p in profiles if p.max_hw is not None]
    if imgsz is not None and sizes:
        h, w = min(s[0] for s in sizes), min(s[1] for s in sizes)
        if imgsz[0] > h or imgsz[1] > w:
            again = rebuild_command({**meta, "imgsz": list(imgsz)}, path)
            raise ModelError(
                f"engine {path.name}: built for inputs up to {h}x{w}, --imgsz {imgsz[0]}x{imgsz[1]} is larger; "
                f"run with --imgsz {min(h, w)} or less, or rebuild it: {again}"
            )
