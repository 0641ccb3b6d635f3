"""One loaded model as Frigate uses it: tensors in, [20, 6] rows out, through edge_rt's own stages.

The tensor Frigate sends is treated as an image of its own size: the letterbox is a no-op when it
already has the model's input size (Frigate's default) and a resize when it has not, and decoding, NMS
and the mapping back to the tensor's pixels are `Postprocessor`'s. So the boxes are the ones
`edge-rt run` finds on the same pixels.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..detect.postprocess import Postprocessor, PostprocessSettings
from ..detect.preprocess import make_preprocessor
from ..engines import Engine, load_engine
from ..runner import check_graph_nms, resolve_batch
from .protocol import TensorRequest, to_rows

DEFAULT_MAX_BATCH = 4  # dynamic-batch models: requests of this many Frigate detectors share one call


@dataclass(frozen=True)
class DetectSettings:
    device: str = "auto"
    # One CPU thread unless asked: ONNX Runtime's pool threads spin between calls, and on a box that also runs
    # Frigate (decoding, motion, its detector processes) they take the CPU its clients need. Measured with the demo
    # model, 2 cores, one kept busy, 4 Frigate-like clients (docs/frigate.md): all cores p50 52-58 ms, p99 94-121 ms;
    # one thread p50 40 ms, p99 51-54 ms. (On an idle machine all cores is 15-25% faster.)
    threads: int | None = 1
    conf: float = 0.25
    iou: float = 0.7
    max_batch: int | None = None  # dynamic-batch models only; a fixed batch is the model's


class ModelRunner:
    """An engine with its preprocess and postprocess; `batch` is the most requests one call takes."""

    def __init__(self, engine: Engine, settings: DetectSettings) -> None:
        info = engine.info
        check_graph_nms(info, settings.conf, settings.iou, agnostic=False)
        self.engine = engine
        self.batch = resolve_batch(engine, settings.max_batch, DEFAULT_MAX_BATCH)
        self._pre = make_preprocessor(info, ring=2)  # one batch in flight: filled, inferred, decoded in turn
        self._post = Postprocessor(info.num_classes, info.end2end, PostprocessSettings(settings.conf, settings.iou))
        self.call_ms = 0.0  # one request's engine call, measured by warm_up()

    @classmethod
    def load(cls, path: Path, settings: DetectSettings) -> ModelRunner:
        engine = load_engine(path, settings.device, settings.threads, settings.max_batch or DEFAULT_MAX_BATCH)
        try:
            runner = cls(engine, settings)
            runner.warm_up()
        except BaseException:
            engine.close()
            raise
        return runner

    def warm_up(self) -> float:
        """Two calls before the first client's (ONNX Runtime's first run allocates, and Frigate waits 200 ms);
        returns the second one's time in ms: what one request costs at the least."""
        h, w = self.engine.info.imgsz
        request = [TensorRequest(np.zeros((h, w, 3), np.uint8), w, h, "nhwc")]
        self.detect(request)
        t0 = time.perf_counter()
        self.detect(request)
        self.call_ms = (time.perf_counter() - t0) * 1000
        return self.call_ms

    def detect(self, requests: Sequence[TensorRequest]) -> list[np.ndarray]:
        """At most `batch` requests -> one engine call -> one [20, 6] array each."""
        prepared = self._pre([r.image for r in requests])
        raw = self.engine.infer(prepared.tensor, prepared.plan)
        found = self._post(raw, prepared.letterboxes)
        return [to_rows(d, r.width, r.height) for d, r in zip(found, requests)]

    def describe(self) -> str:
        info = self.engine.info
        batch = f"batch {info.batch}" if info.batch else f"dynamic batch (up to {self.batch} requests per call)"
        return f"{info.num_classes} classes, input {info.imgsz[1]}x{info.imgsz[0]}, {batch}, on {self.engine.device}"

    def close(self) -> None:
        self.engine.close()
