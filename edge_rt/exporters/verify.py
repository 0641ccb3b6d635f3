"""Parity of an export against its source: do they detect the same things on the same frames?"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..detect.postprocess import Detections, Postprocessor, PostprocessSettings
from ..detect.preprocess import make_preprocessor

Detector = Callable[[np.ndarray], Detections]


@dataclass(frozen=True)
class ParityReport:
    frames: int
    reference_boxes: int
    candidate_boxes: int
    matched: int  # pairs of the same class with IoU >= iou
    iou: float
    mean_conf_diff: float
    max_conf_diff: float

    @property
    def match_rate(self) -> float:
        """Matched pairs over the larger of the two box counts: misses and extras both cost."""
        denom = max(self.reference_boxes, self.candidate_boxes)
        return 1.0 if denom == 0 else self.matched / denom

    @property
    def found(self) -> float:
        """Share of the reference's boxes the export matched."""
        return 1.0 if self.reference_boxes == 0 else self.matched / self.reference_boxes

    @property
    def extra(self) -> float:
        """The export's unmatched boxes, per reference box."""
        return (self.candidate_boxes - self.matched) / max(self.reference_boxes, 1)

    def summary(self) -> str:
        return (
            f"{self.frames} frames: reference {self.reference_boxes} boxes, export {self.candidate_boxes}, "
            f"matched {self.matched} at IoU {self.iou:g} -> match rate {self.match_rate:.1%} "
            f"(found {self.found:.1%}, extra {self.extra:.1%}); "
            f"conf diff mean {self.mean_conf_diff:.4f} max {self.max_conf_diff:.4f}"
        )


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(br - tl, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match(ref: Detections, cand: Detections, iou: float = 0.5) -> list[tuple[int, int]]:
    """Greedy one-to-one matching, most confident reference boxes first, same class only."""
    if len(ref) == 0 or len(cand) == 0:
        return []
    ious = _iou(ref.xyxy.astype(np.float64), cand.xyxy.astype(np.float64))
    ious[ref.cls[:, None] != cand.cls[None, :]] = 0
    pairs, used = [], set()
    for i in np.argsort(-ref.conf, kind="stable"):
        order = [j for j in np.argsort(-ious[i]) if j not in used and ious[i, j] >= iou]
        if order:
            used.add(order[0])
            pairs.append((int(i), int(order[0])))
    return pairs


def compare(reference: Detector, candidate: Detector, frames: Iterable[np.ndarray], iou: float = 0.5) -> ParityReport:
    ref_n = cand_n = matched = count = 0
    diffs: list[float] = []
    for frame in frames:
        count += 1
        r, c = reference(frame), candidate(frame)
        pairs = match(r, c, iou)
        ref_n += len(r)
        cand_n += len(c)
        matched += len(pairs)
        diffs.extend(abs(float(r.conf[i]) - float(c.conf[j])) for i, j in pairs)
    return ParityReport(count, ref_n, cand_n, matched, iou, float(np.mean(diffs)) if diffs else 0.0, max(diffs, default=0.0))


def runtime_detector(model: Path, settings: PostprocessSettings, device: str = "cpu", imgsz: int | None = None) -> Detector:
    """edge_rt's own pipeline stages on one frame: what `edge-rt run` would publish."""
    from ..engines import load_engine

    engine = load_engine(model, device, max_batch=1, imgsz=imgsz)  # one frame at a time, at the size compared
    info = engine.info
    size = (imgsz, imgsz) if imgsz else info.imgsz
    pre = make_preprocessor(info, size)
    post = Postprocessor(info.num_classes, info.end2end, settings)

    def detect(frame: np.ndarray) -> Detections:
        prepared = pre([frame])
        return post(engine.infer(prepared.tensor, prepared.plan), prepared.letterboxes)[0]

    return detect


def ultralytics_detector(weights: Path, imgsz: int | tuple[int, int], settings: PostprocessSettings) -> Detector:
    """The original weights through Ultralytics' own predict: the reference an export must match.

    `imgsz` (h, w) goes to Ultralytics as [h, w]: a .pt letterboxes a 1280x720 frame to 384x640 at
    imgsz 640 or [384, 640] alike, which is what a static 384x640 export does.
    """
    from ultralytics import YOLO

    model: Any = YOLO(str(weights), task="detect")  # Ultralytics' return types are unions mypy cannot narrow

    def detect(frame: np.ndarray) -> Detections:
        classes = list(settings.classes) if settings.classes is not None else None
        r = model.predict(
            frame,
            imgsz=imgsz if isinstance(imgsz, int) else list(imgsz),
            conf=settings.conf,
            iou=settings.iou,
            max_det=settings.max_det,
            classes=classes,
            agnostic_nms=settings.agnostic,
            verbose=False,
            device="cpu",
        )[0]
        b = r.boxes
        return Detections(b.xyxy.numpy().astype(np.float32), b.conf.numpy().astype(np.float32), b.cls.numpy().astype(np.int64))

    return detect
