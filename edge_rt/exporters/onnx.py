"""ONNX export through Ultralytics, so the file keeps the metadata both Ultralytics and edge_rt read."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

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
    weights: Path, output: Path, imgsz: int, *, half: bool = False, dynamic: bool = False, batch: int = 1, simplify: bool = True
) -> Path:
    """Export `weights` (.pt) to `output`; fp16 on CPU keeps float32 inputs/outputs (Ultralytics' conversion)."""
    if imgsz % 32:
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
        produced = model.export(format="onnx", imgsz=imgsz, half=half, dynamic=dynamic, batch=batch, simplify=simplify, device="cpu", verbose=False)
        shutil.move(str(produced), output)
    return output
