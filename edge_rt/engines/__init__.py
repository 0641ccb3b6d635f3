"""Backends behind one protocol; each is imported only when chosen."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, ModelError
from .base import Engine

DEVICES = ("auto", "cpu", "cuda", "tensorrt")


def load_engine(model: str | Path, device: str = "auto", threads: int | None = None, max_batch: int | None = None) -> Engine:
    """Pick the backend from the file type, the device from the user.

    `max_batch` is the largest batch the run will send: the TensorRT provider builds its shape
    profile for it (a native engine carries its own profiles).
    """
    path = Path(model)
    if device not in DEVICES:
        raise ConfigError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    if not path.exists():
        raise ModelError(f"model {str(path)!r}: no such file")
    if not path.is_file():
        raise ModelError(f"model {str(path)!r}: not a file")
    if path.suffix.lower() == ".onnx":
        from .onnxruntime import OnnxRuntimeEngine

        return OnnxRuntimeEngine(path, device=device, threads=threads, max_batch=max_batch or 8)
    if path.suffix.lower() in (".engine", ".plan", ".trt"):
        from .tensorrt import TensorRTEngine

        return TensorRTEngine(path, device=device)
    raise ModelError(f"model {str(path)!r}: unknown format {path.suffix!r}; expected .onnx or a TensorRT .engine")


__all__ = ["DEVICES", "Engine", "load_engine"]
