"""Accuracy of what is deployed: a model file through edge_rt's own stages, scored like ``yolo val``.

An INT8 ONNX or a TensorRT engine is not the ``.pt`` it came from, so an export is run exactly as
``edge-rt run`` runs it: ``load_engine``, the letterbox of ``detect/preprocess.py``, the decoder and NMS of
``detect/postprocess.py``, boxes mapped back to the image's pixels. A ``.pt`` runs through PyTorch behind
the same letterbox and decoder, so in a comparison only the engine differs. The scores come from
Ultralytics' own code (its validator's prediction matching, ``DetMetrics``/``ap_per_class``,
``ConfusionMatrix``, ``box_iou``) with val's conventions (conf 0.001, IoU 0.7, max_det 300), so they
sit beside ``yolo val``'s numbers. Ultralytics and torch are imported inside functions only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..detect.model_info import ModelInfo
from ..detect.postprocess import Detections, Postprocessor, PostprocessSettings
from ..detect.preprocess import make_preprocessor
from ..engines import Engine
from ..errors import ConfigError, ModelError
from ..ops.progress import Progress
from .eval_data import EvalSet, load_split, read_labels
from .eval_models import describe_model, open_model

VAL_CONF = 0.001  # Ultralytics val's defaults: every box counts towards the PR curve
VAL_IOU = 0.7
VAL_MAX_DET = 300
CONFUSION_CONF = 0.25  # predict's default: the matrix shows what a deployment keeps (at 0.001 every label finds some box)
WARMUP_CALLS = 3  # untimed engine calls before the first timed one (allocations, kernel choice, CUDA graphs)


@dataclass(frozen=True)
class ClassMetrics:
    """One class's row of the report; ``images`` is how many images hold at least one instance."""

    cls: int
    name: str
    images: int
    instances: int
    precision: float
    recall: float
    map50: float
    map50_95: float


@dataclass(frozen=True)
class Speed:
    """Milliseconds per image, medians over the timed batches (all batches, after the warm-up calls)."""

    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float
    batches: int

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms


@dataclass(frozen=True)
class Curves:
    """``ap_per_class``'s curves on its 1000-point grid ``x``, one row per class in ``classes``.

    ``precision[i]`` is precision against recall ``x`` at IoU 0.5 (the PR curve); ``f1[i]`` is F1
    against confidence ``x``.
    """

    classes: tuple[int, ...]
    x: tuple[float, ...]
    precision: tuple[tuple[float, ...], ...]
    f1: tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class EvalResult:
    """Everything one evaluation measured; ``to_dict`` is what ``--json`` writes."""

    model: Path
    kind: str  # e.g. "pytorch", "onnx int8 static", "tensorrt fp16 dynamic"
    device: str
    file_bytes: int
    data: Path
    split: str
    imgsz: tuple[int, int]
    batch: int
    conf: float
    iou: float
    max_det: int
    confusion_conf: float  # the confusion matrix counts boxes at or above this confidence
    names: tuple[str, ...]
    images: int
    instances: int
    precision: float
    recall: float
    map50: float
    map50_95: float
    per_class: tuple[ClassMetrics, ...]
    confusion: tuple[tuple[int, ...], ...]  # [predicted][true], the last row and column are background
    curves: Curves
    speed: Speed
    notes: tuple[str, ...] = ()  # what differed from what was asked (thresholds baked into the graph)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["model"], out["data"] = str(self.model), str(self.data)
        out["speed"]["total_ms"] = self.speed.total_ms
        out["curves"]["x"] = [round(v, 4) for v in self.curves.x]
        for key in ("precision", "f1"):
            out["curves"][key] = [[round(v, 4) for v in row] for row in getattr(self.curves, key)]
        return out


def _imgsz(info: ModelInfo, requested: int | None) -> tuple[int, int]:
    if requested is None or (requested, requested) == info.imgsz:
        return info.imgsz
    if not info.dynamic_shape:
        h, w = info.imgsz
        raise ConfigError(
            f"--imgsz {requested}: this model has a fixed {h}x{w} input; leave --imgsz out or export with dynamic=True"
        )
    if requested < info.stride or requested % info.stride:
        raise ConfigError(f"--imgsz {requested}: must be a positive multiple of the model stride {info.stride}")
    return (requested, requested)


def _batch(info: ModelInfo, requested: int | None) -> int:
    if requested is not None and requested < 1:
        raise ConfigError(f"--batch {requested}: must be >= 1")
    if info.batch is not None:
        if requested is not None and requested != info.batch:
            raise ConfigError(f"--batch {requested}: this model has a fixed batch of {info.batch}; leave --batch out")
        return info.batch
    batch = requested or 1
    if info.max_batch is not None and batch > info.max_batch:
        raise ConfigError(f"--batch {batch}: this model's in-graph NMS handles batches up to {info.max_batch}")
    return batch


def _thresholds(info: ModelInfo, conf: float, iou: float) -> tuple[float, float, tuple[str, ...]]:
    """An NMS inside the graph fixed its thresholds: score at those, and say so."""
    if not 0 <= conf < 1:
        raise ConfigError(f"--conf {conf:g}: must be in [0, 1)")
    if not 0 < iou <= 1:
        raise ConfigError(f"--iou {iou:g}: must be in (0, 1]")
    if info.graph_nms is None:
        return conf, iou, ()
    baked_conf, baked_iou = info.graph_nms
    notes = []
    if conf < baked_conf:
        notes.append(f"conf {conf:g} -> {baked_conf:g}: the NMS inside this model's graph drops boxes below it (mAP reads low)")
        conf = baked_conf
    if abs(iou - baked_iou) > 1e-6:
        notes.append(f"iou {iou:g} -> {baked_iou:g}: the NMS inside this model's graph uses it")
        iou = baked_iou
    return conf, iou, tuple(notes)


class _Scorer:
    """Ultralytics' val bookkeeping over (ground truth, detections) pairs, in image pixels."""

    def __init__(self, names: Sequence[str], confusion_conf: float) -> None:
        import torch
        from ultralytics.models.yolo.detect import DetectionValidator
        from ultralytics.utils.metrics import ConfusionMatrix, DetMetrics, box_iou

        self._torch, self._box_iou = torch, box_iou
        self._match: Any = DetectionValidator.match_predictions  # only reads self.iouv
        self._iouv = _IouThresholds(torch.linspace(0.5, 0.95, 10))
        self.names = dict(enumerate(names))
        self.metrics = DetMetrics(names=self.names)
        self.confusion = ConfusionMatrix(names=self.names)
        self.confusion_conf = confusion_conf
        self.images = 0

    def add(self, name: str, gt_cls: np.ndarray, gt_xyxy: np.ndarray, det: Detections) -> None:
        torch = self._torch
        order = np.argsort(-det.conf, kind="stable")  # the matching expects descending confidence
        boxes = torch.from_numpy(np.ascontiguousarray(det.xyxy[order], np.float32))
        conf = det.conf[order].astype(np.float32)
        pred_cls = det.cls[order].astype(np.float32)
        tcls = torch.from_numpy(gt_cls.astype(np.float32))
        tboxes = torch.from_numpy(gt_xyxy.astype(np.float32))
        if len(gt_cls) and len(pred_cls):
            iou = self._box_iou(tboxes, boxes)
            tp = self._match(self._iouv, torch.from_numpy(pred_cls), tcls, iou).numpy()
        else:
            tp = np.zeros((len(pred_cls), 10), bool)
        self.metrics.update_stats(
            {"tp": tp, "conf": conf, "pred_cls": pred_cls, "target_cls": gt_cls, "target_img": np.unique(gt_cls), "im_name": name}
        )
        detections = {"bboxes": boxes, "conf": torch.from_numpy(conf), "cls": torch.from_numpy(pred_cls)}
        self.confusion.process_batch(detections, {"bboxes": tboxes, "cls": tcls}, conf=self.confusion_conf)
        self.images += 1

    def finish(self) -> tuple[list[float], list[ClassMetrics], Curves, np.ndarray]:
        m: Any = self.metrics
        m.process(plot=False)
        per_class = []
        for i, c in enumerate(m.ap_class_index):
            p, r, ap50, ap = m.class_result(i)
            per_class.append(
                ClassMetrics(
                    int(c),
                    self.names[int(c)],
                    int(m.nt_per_image[c]),
                    int(m.nt_per_class[c]),
                    float(p),
                    float(r),
                    float(ap50),
                    float(ap),
                )
            )
        box = m.box
        curves = Curves(
            classes=tuple(int(c) for c in m.ap_class_index),
            x=tuple(float(v) for v in box.px),
            precision=tuple(tuple(float(v) for v in row) for row in np.asarray(box.prec_values)[: len(per_class)]),
            f1=tuple(tuple(float(v) for v in row) for row in np.asarray(box.f1_curve)[: len(per_class)]),
        )
        return [float(v) for v in m.mean_results()], per_class, curves, self.confusion.matrix


@dataclass(frozen=True)
class _IouThresholds:
    iouv: Any  # torch.Tensor of the 10 IoU thresholds 0.5:0.95, what match_predictions reads


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ConfigError(f"{path}: OpenCV cannot read this image; remove it from the split or re-save it")
    return image


def evaluate(
    model: Path,
    data: Path,
    split: str = "val",
    imgsz: int | None = None,
    batch: int | None = None,
    conf: float = VAL_CONF,
    iou: float = VAL_IOU,
    max_det: int = VAL_MAX_DET,
    device: str = "auto",
    confusion_conf: float = CONFUSION_CONF,
    progress: Callable[[int, str], Progress] | None = None,
    evalset: EvalSet | None = None,
) -> EvalResult:
    """Run ``model`` over a split of ``data`` and score it; the data is checked before the model loads.

    ``progress(total, what)`` makes the progress reporter (default: ``Progress`` on stderr).
    """
    if max_det < 1:
        raise ConfigError(f"--max-det {max_det}: must be >= 1")
    if not 0 <= confusion_conf < 1:
        raise ConfigError(f"--cm-conf {confusion_conf:g}: must be in [0, 1)")
    evalset = evalset or load_split(Path(data), split)
    engine = open_model(Path(model), device, max_batch=batch, imgsz=imgsz)
    try:
        return _run(engine, Path(model), evalset, imgsz, batch, (conf, iou, max_det, confusion_conf), progress or Progress)
    finally:
        engine.close()


def _run(
    engine: Engine,
    model: Path,
    evalset: EvalSet,
    imgsz: int | None,
    batch_size: int | None,
    thresholds: tuple[float, float, int, float],
    progress: Callable[[int, str], Progress],
) -> EvalResult:
    conf, iou, max_det, confusion_conf = thresholds
    info = engine.info
    if info.num_classes != len(evalset.names):
        raise ConfigError(
            f"model {model.name} has {info.num_classes} classes {list(info.names.values())} but {evalset.data} names "
            f"{len(evalset.names)} {list(evalset.names)}; evaluate it on the dataset it was trained for"
        )
    size = _imgsz(info, imgsz)
    batch = _batch(info, batch_size)
    conf, iou, notes = _thresholds(info, conf, iou)
    if [info.names.get(i) for i in range(info.num_classes)] != list(evalset.names):
        notes += (f"class names differ: model {list(info.names.values())}, data {list(evalset.names)}; scored by class id",)
    pre = make_preprocessor(info, size, ring=2)
    post = Postprocessor(info.num_classes, info.end2end, PostprocessSettings(conf, iou, max_det))
    confusion_conf = max(confusion_conf, conf)
    scorer = _Scorer(evalset.names, confusion_conf)
    times: list[tuple[float, float, float]] = []
    items = evalset.items
    bar = progress(len(items), f"eval {model.name}")
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        frames = [_read_image(image) for image, _ in chunk]
        truth = [
            read_labels(label, frame.shape[1], frame.shape[0], len(evalset.names)) for (_, label), frame in zip(chunk, frames)
        ]
        if start == 0:
            warm = pre(frames)
            for _ in range(WARMUP_CALLS):
                engine.infer(warm.tensor, warm.plan)
        t0 = time.perf_counter_ns()
        prepared = pre(frames)
        t1 = time.perf_counter_ns()
        output = engine.infer(prepared.tensor, prepared.plan)
        t2 = time.perf_counter_ns()
        detections = post(output, prepared.letterboxes)
        t3 = time.perf_counter_ns()
        n = len(chunk)
        times.append(((t1 - t0) / n / 1e6, (t2 - t1) / n / 1e6, (t3 - t2) / n / 1e6))
        for (image, _), (gt_cls, gt_xyxy), det in zip(chunk, truth, detections):
            scorer.add(image.name, gt_cls, gt_xyxy, det)
        bar.update(n)
    bar.close()
    (mp, mr, map50, map50_95), per_class, curves, matrix = scorer.finish()
    med = np.median(np.asarray(times), axis=0)
    return EvalResult(
        model=model,
        kind=describe_model(model, info),
        device=engine.device,
        file_bytes=model.stat().st_size,
        data=evalset.data,
        split=evalset.split,
        imgsz=size,
        batch=batch,
        conf=conf,
        iou=iou,
        max_det=max_det,
        confusion_conf=confusion_conf,
        names=evalset.names,
        images=scorer.images,
        instances=sum(c.instances for c in per_class),
        precision=mp,
        recall=mr,
        map50=map50,
        map50_95=map50_95,
        per_class=tuple(per_class),
        confusion=tuple(tuple(int(v) for v in row) for row in np.rint(matrix)),
        curves=curves,
        speed=Speed(float(med[0]), float(med[1]), float(med[2]), len(times)),
        notes=notes,
    )


def compare(models: Sequence[Path], data: Path, split: str = "val", **kwargs: Any) -> tuple[EvalResult, ...]:
    """Evaluate several files of one model on the same split, one after another on this machine.

    Every file is checked to exist before the first is evaluated, so a typo fails in a second, not
    after the other evaluations.
    """
    if len(models) < 2:
        raise ConfigError(f"--compare takes two or more models, got {len(models)}")
    for m in models:
        if not Path(m).is_file():
            raise ModelError(f"model {str(m)!r}: no such file; pass a .pt, .onnx or TensorRT .engine")
    evalset = load_split(Path(data), split)
    return tuple(evaluate(Path(m), evalset.data, split, evalset=evalset, **kwargs) for m in models)


def results_json(results: Sequence[EvalResult] | EvalResult) -> Mapping[str, Any]:
    """The ``--json`` document: one result, or ``{"models": [...]}`` for a comparison."""
    if isinstance(results, EvalResult):
        return results.to_dict()
    return {"models": [r.to_dict() for r in results]}
