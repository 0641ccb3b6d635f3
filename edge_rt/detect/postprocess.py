"""Decode YOLO heads, NMS, and map boxes back to source pixels, matching Ultralytics' predict.

Runs on any backend's raw output tensor, so every engine shares one decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .letterbox import Letterbox

MAX_WH = 7680  # per-class box offset for class-aware NMS (Ultralytics' max_wh)
MAX_NMS = 30000  # boxes kept for NMS, by confidence


@dataclass(frozen=True, eq=False)
class Detections:
    """Boxes of one frame as columns: xyxy (N, 4) in source pixels, conf (N,), cls (N,)."""

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ValueError(f"Detections.xyxy: expected shape (N, 4), got {self.xyxy.shape}")
        if self.conf.shape != (n,):
            raise ValueError(f"Detections.conf: expected shape ({n},), got {self.conf.shape}")
        if self.cls.shape != (n,):
            raise ValueError(f"Detections.cls: expected shape ({n},), got {self.cls.shape}")

    def __len__(self) -> int:
        return len(self.xyxy)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


@dataclass(frozen=True)
class PostprocessSettings:
    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    classes: tuple[int, ...] | None = None
    agnostic: bool = False


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thres: float, limit: int) -> np.ndarray:
    """Greedy NMS like torchvision.ops.nms (suppress IoU > threshold), stopping after `limit` keeps."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < limit:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[~(iou > iou_thres)]  # NaN (zero-area pairs) keeps, as torchvision does
    return np.asarray(keep, dtype=np.int64)


def _xywh2xyxy(xywh: np.ndarray) -> np.ndarray:
    out = np.empty_like(xywh)
    half = xywh[:, 2:4] / 2
    out[:, :2] = xywh[:, :2] - half
    out[:, 2:] = xywh[:, :2] + half
    return out


def decode_classic(pred: np.ndarray, nc: int, s: PostprocessSettings) -> np.ndarray:
    """One image of a [4 + nc, anchors] head -> rows (x1, y1, x2, y2, conf, cls) in input pixels."""
    scores = pred[4 : 4 + nc]
    conf = scores.max(0)
    cand = np.flatnonzero(conf > s.conf)
    if cand.size == 0:
        return np.zeros((0, 6), np.float32)
    conf = conf[cand]
    cls = scores[:, cand].argmax(0)
    boxes = _xywh2xyxy(np.ascontiguousarray(pred[:4, cand].T))
    if s.classes is not None:
        keep = np.isin(cls, s.classes)
        boxes, conf, cls = boxes[keep], conf[keep], cls[keep]
    if len(conf) > MAX_NMS:
        top = np.argsort(-conf, kind="stable")[:MAX_NMS]
        boxes, conf, cls = boxes[top], conf[top], cls[top]
    if len(conf) == 0:
        return np.zeros((0, 6), np.float32)
    offset = (cls.astype(np.float32) * (0 if s.agnostic else MAX_WH))[:, None]
    keep = nms(boxes + offset, conf, s.iou, s.max_det)
    return np.concatenate([boxes[keep], conf[keep, None], cls[keep, None].astype(np.float32)], axis=1)


def decode_end2end(pred: np.ndarray, s: PostprocessSettings) -> np.ndarray:
    """One image of an [N, 6] head (NMS already inside the model): threshold and filter only."""
    mask = pred[:, 4] > s.conf
    if s.classes is not None:
        mask &= np.isin(pred[:, 5], s.classes)
    return pred[mask][: s.max_det]


def to_source(rows: np.ndarray, lb: Letterbox) -> Detections:
    """Undo the letterbox and clip to the frame, as Ultralytics' scale_boxes does."""
    if len(rows) == 0:
        return Detections.empty()
    xyxy = rows[:, :4].copy()
    xyxy[:, [0, 2]] -= lb.left
    xyxy[:, [1, 3]] -= lb.top
    xyxy[:, [0, 2]] /= lb.gain_x
    xyxy[:, [1, 3]] /= lb.gain_y
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, lb.src_w)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, lb.src_h)
    return Detections(xyxy, rows[:, 4].astype(np.float32), rows[:, 5].astype(np.int64))


class Postprocessor:
    """Raw batch output -> one Detections per real frame of the batch."""

    def __init__(self, num_classes: int, end2end: bool, settings: PostprocessSettings) -> None:
        self.nc = num_classes
        self.end2end = end2end
        self.settings = settings

    def __call__(self, output: np.ndarray, letterboxes: Sequence[Letterbox]) -> list[Detections]:
        if output.dtype != np.float32:
            output = output.astype(np.float32)
        results = []
        for i, lb in enumerate(letterboxes):
            if self.end2end:
                rows = decode_end2end(output[i], self.settings)
            else:
                rows = decode_classic(output[i], self.nc, self.settings)
            results.append(to_source(rows, lb))
        return results
