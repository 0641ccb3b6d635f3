"""ONNX export through Ultralytics, so the file keeps the metadata both Ultralytics and edge_rt read."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..detect.model_info import GRAPH_NMS_KEY
from ..errors import ConfigError, MissingDependencyError, ModelError


def _yolo(weights: Path):  # type: ignore[no-untyped-def]
    os.environ.setdefault("YOLO_OFFLINE", "1")
    try:
        from ultralytics import YOLO
    except ImportError:
        raise MissingDependencyError("export needs Ultralytics: pip install 'edge_rt[train]'") from None
    if not weights.is_file():
        raise ModelError(f"weights {str(weights)!r}: no such file")
    try:
        return YOLO(str(weights), task="detect")
    except Exception as exc:  # Ultralytics raises many types for a bad checkpoint
        raise ModelError(f"weights {str(weights)!r}: Ultralytics cannot load them: {str(exc).splitlines()[0][:200]}") from None


def export_onnx(
    weights: Path,
    output: Path,
    imgsz: int | tuple[int, int],
    *,
    half: bool = False,
    dynamic: bool = False,
    batch: int = 1,
    simplify: bool = True,
    nms: tuple[float, float] | None = None,
) -> Path:
    """Export `weights` (.pt) to `output`; fp16 on CPU keeps float32 inputs/outputs (Ultralytics' conversion).

    `nms` = (conf, iou) puts NMS inside the graph (Ultralytics' `nms=True`): the output becomes
    (B, 300, 6), and on a GPU only that crosses back to the host. We record conf and iou in the
    metadata, since a run can raise the threshold but never lower it below the exported one.
    """
    hw = (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))
    if any(v < 32 or v % 32 for v in hw):
        raise ConfigError(f"--imgsz {imgsz}: must be a multiple of 32")
    if batch < 1:
        raise ConfigError(f"--max-batch {batch}: must be >= 1")
    model = _yolo(weights)
    if getattr(model, "task", "detect") != "detect":
        raise ModelError(f"weights {str(weights)!r}: task {model.task!r}; edge_rt exports detection models")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / weights.name
        shutil.copy2(weights, staged)  # Ultralytics writes next to the weights; keep the user's folder clean
        model = _yolo(staged)
        extra: dict[str, object] = {"nms": True, "conf": nms[0], "iou": nms[1]} if nms else {}
        if half:
            extra["half"] = True  # only when asked: Ultralytics 8.4 warns that 'half' is deprecated whenever it is given
        with _quiet("ultralytics"):  # its "export success" and "yolo predict <temp file>" lines are not this export's result
            produced = model.export(
                # Ultralytics takes imgsz=[h, w]; a static export then letterboxes (and calibrates) to that rectangle
                format="onnx",
                imgsz=hw[0] if hw[0] == hw[1] else list(hw),
                dynamic=dynamic,
                batch=batch,
                simplify=simplify,
                device="cpu",
                verbose=False,
                **extra,
            )
        shutil.move(str(produced), output)
    if nms:
        set_metadata(output, {GRAPH_NMS_KEY: repr({"conf": nms[0], "iou": nms[1], "max_batch": batch})})
    return output


@contextmanager
def _quiet(logger_name: str, level: int = logging.WARNING) -> Iterator[None]:
    """Only warnings and errors from `logger_name` while the block runs."""
    logger = logging.getLogger(logger_name)
    before = logger.level
    logger.setLevel(max(level, before))
    try:
        yield
    finally:
        logger.setLevel(before)


def set_metadata(path: Path, values: dict[str, str]) -> None:
    """Add or replace metadata entries of an ONNX file in place."""
    import onnx

    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    meta.update(values)
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
