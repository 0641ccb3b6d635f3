"""Activation ranges for INT8, collected one frame at a time: memory does not grow with the frame count.

ONNX Runtime's histogram calibrators (Percentile, Entropy) keep every intermediate tensor of every
frame until the end and then stack them: about 0.45 GB per 640x640 frame for a YOLOv8s, so the
default 64 frames needed ~30 GB (issue 10). Its `CalibMaxIntermediateOutputs` applies to MinMax
only, and in onnxruntime 1.32 (calibrate.py, MinMaxCalibrater.collect_data) a full chunk is cleared
without being merged into the ranges (microsoft/onnxruntime#18893; the fix, PR #20226, was closed). Feeding ORT's histogram calibrator a frame at a time bounds
memory but bins every later frame against an array of edges (numpy's searchsorted path, not the
fast uniform-bin one).

So each pass over the frames holds one inference's activations at a time:
  1. per tensor: min, max and the smallest and largest |x|: this alone is MinMax calibration (the
     default, see int8.Int8Settings), one inference per frame;
  2. percentile only: per tensor, |x| added to a 2048-bin histogram over [min |x|, max |x|].
That is the histogram ORT's Percentile calibrator builds from all frames at once (same bins, same
range), and the thresholds are read from it with ORT's own rule, so the ranges are the ones the
all-in-memory calibration gave (checked on the demo model: within 1e-7). Time is linear in the
frames. The ranges go to `quantize_static` through its calibration cache (a JSON of per-tensor ranges).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..detect.preprocess import Preprocessor
from ..errors import EdgeRtError, ModelError

log = logging.getLogger("edge_rt.export.int8")

METHODS = ("percentile", "minmax")
PERCENTILE = 99.999  # ORT's default for its Percentile calibrator, kept so ranges match it
BINS = 2048


class CalibrationOutOfMemory(EdgeRtError):
    """The machine ran out of memory while calibrating; nothing was written."""

    exit_code = 9


@dataclass
class _Stats:
    lo: float = np.inf
    hi: float = -np.inf
    abs_lo: float = np.inf
    abs_hi: float = 0.0
    hist: np.ndarray | None = None


def _hist_range(s: _Stats) -> tuple[np.float64, np.float64]:
    """[min |x|, max |x|], as float64 so numpy bins in float64 (float32 cannot split a tiny range 2048 ways)."""
    top = s.abs_hi if s.abs_hi > s.abs_lo else s.abs_lo + 1.0  # a constant tensor: one live bin
    return np.float64(s.abs_lo), np.float64(top)


def _batches(frames: Iterable[np.ndarray], pre: Preprocessor, batch: int) -> Iterator[np.ndarray]:
    """Letterboxed input tensors of `batch` frames (a short last group repeats its frames)."""
    group: list[np.ndarray] = []
    for frame in frames:
        group.append(frame)
        if len(group) == batch:
            yield pre(group).tensor
            group = []
    if group:
        yield pre([group[i % len(group)] for i in range(batch)]).tensor


class ActivationRanges:
    """Runs an ONNX model with every float tensor exposed as an output and keeps only statistics."""

    def __init__(self, model: Path, work: Path, imgsz: tuple[int, int], stride: int, batch: int) -> None:
        from onnxruntime.quantization.calibrate import HistogramCalibrater

        # ORT's own choice of tensors (what its quantizer will ask ranges for) and its augmented graph;
        # only the collection is ours.
        cal = HistogramCalibrater(str(model), augmented_model_path=str(work / "augmented.onnx"))
        cal.augment_graph()
        cal.create_inference_session()
        self._session = cal.infer_session
        self._names = [o.name for o in self._session.get_outputs()]
        self._wanted = set(cal.tensors_to_calibrate or ())
        self._input = self._session.get_inputs()[0].name
        self._pre = Preprocessor(imgsz, stride, auto=False, fixed_batch=batch, ring=1)
        self._batch = batch
        self.stats: dict[str, _Stats] = {}
        self.frames = 0

    def _outputs(self, frames: Iterable[np.ndarray], what: str) -> Iterator[dict[str, np.ndarray]]:
        from ..ops.progress import Progress

        total = len(frames) if isinstance(frames, Sized) else getattr(frames, "count", 0)  # CalibrationFrames: an upper bound
        progress = Progress(total if isinstance(total, int) else 0, what)
        for tensor in _batches(frames, self._pre, self._batch):
            progress.update(self._batch)
            try:
                values = self._session.run(None, {self._input: tensor})
            except MemoryError:
                raise CalibrationOutOfMemory(_oom(self.frames)) from None
            except Exception as exc:  # onnxruntime raises its own RuntimeException for a failed allocation
                if "alloc" in str(exc).lower():
                    raise CalibrationOutOfMemory(_oom(self.frames)) from None
                raise ModelError(f"INT8 calibration: ONNX Runtime failed on a frame: {str(exc).splitlines()[0][:200]}") from None
            yield {n: v for n, v in zip(self._names, values) if n in self._wanted}
            del values
        progress.close()

    def collect_ranges(self, frames: Iterable[np.ndarray]) -> None:
        """Pass 1: min, max, min |x|, max |x| per tensor."""
        self.frames = 0
        for outputs in self._outputs(frames, "INT8 calibration frames"):
            self.frames += self._batch
            for name, x in outputs.items():
                s = self.stats.setdefault(name, _Stats())
                if x.size == 0:
                    continue
                lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
                s.lo, s.hi = min(s.lo, lo), max(s.hi, hi)
                a = np.abs(x)
                s.abs_lo, s.abs_hi = min(s.abs_lo, float(np.nanmin(a))), max(s.abs_hi, float(np.nanmax(a)))

    def collect_histograms(self, frames: Iterable[np.ndarray]) -> None:
        """Pass 2: |x| into each tensor's fixed histogram (needs pass 1's ranges)."""
        for outputs in self._outputs(frames, "INT8 calibration histograms"):
            for name, x in outputs.items():
                s = self.stats[name]
                if x.size == 0 or not np.isfinite(s.abs_hi):
                    continue
                try:  # float64 edges: a near-constant tensor (untrained layers have some) still gets 2048 bins
                    h, _ = np.histogram(np.abs(x), bins=BINS, range=_hist_range(s))
                except ValueError:  # a range numpy cannot split: that tensor keeps its min/max range
                    s.abs_hi = np.inf
                    s.hist = None
                    continue
                s.hist = h if s.hist is None else s.hist + h

    def tensors_data(self, method: str) -> Any:
        """ORT's TensorsData: MinMax ranges, or Percentile thresholds read as ORT reads them."""
        from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

        data = {}
        for name, s in self.stats.items():
            lo, hi = (s.lo, s.hi) if np.isfinite(s.lo) else (0.0, 0.0)
            if method == "percentile" and s.hist is not None and s.hist.sum() > 0 and np.isfinite(s.abs_hi):
                edges = np.linspace(*_hist_range(s), BINS + 1).astype(np.float32)
                cdf = np.cumsum(s.hist / s.hist.sum())
                t = float(edges[min(int(np.searchsorted(cdf, PERCENTILE / 100.0)), BINS)])
                lo, hi = max(-t, lo), min(t, hi)  # symmetric threshold, never beyond what was seen
            data[name] = TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32))
        cal = CalibrationMethod.Percentile if method == "percentile" else CalibrationMethod.MinMax
        return TensorsData(cal, data)


def _oom(frames: int) -> str:
    return (
        f"INT8 calibration ran out of memory after {frames} frames (one frame's activations must fit; "
        "the frame count does not matter): free memory or export at a smaller --imgsz; nothing was written"
    )


def calibrate(
    model: Path,
    frames: Iterable[np.ndarray],
    work: Path,
    imgsz: tuple[int, int],
    stride: int,
    batch: int = 1,
    method: str = "percentile",
    ranges: ActivationRanges | None = None,
) -> tuple[Path, Any, ActivationRanges]:
    """Ranges for every float tensor of `model` over `frames` (iterated once, twice for percentile).

    Returns the cache file for `quantize_static(calibration_cache_path=...)`, the CalibrationMethod it
    holds, and the collected statistics (pass them back as `ranges` to calibrate another method
    without running pass 1 again).
    """
    from onnxruntime.quantization.calibrate import save_tensors_data

    if method not in METHODS:
        raise ModelError(f"INT8 calibration method {method!r}: choose one of {', '.join(METHODS)}")
    if ranges is None:
        ranges = ActivationRanges(model, work, imgsz, stride, batch)
        ranges.collect_ranges(frames)
        if ranges.frames == 0:
            raise ModelError("INT8 calibration: no frames came through")
    if method == "percentile" and not any(s.hist is not None for s in ranges.stats.values()):
        ranges.collect_histograms(frames)
    data = ranges.tensors_data(method)
    cache = work / f"ranges-{method}.json"
    save_tensors_data(data, cache)
    log.info("INT8: %s ranges of %d tensors from %d frames", method, len(data.data), ranges.frames)
    return cache, data.calibration_method, ranges
