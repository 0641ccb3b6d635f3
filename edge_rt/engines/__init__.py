"""Backends behind one protocol; each is imported only when chosen."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, ModelError
from .base import Engine

DEVICES = ("auto", "cpu", "cuda", "tensorrt")
DEFAULT_MAX_BATCH = 8  # a caller that does not say what it sends (a probe that only reads the model's facts)


def load_engine(
    model: str | Path,
    device: str = "auto",
    threads: int | None = None,
    max_batch: int | None = None,
    imgsz: int | tuple[int, int] | None = None,
) -> Engine:
    """Pick the backend from the file type, the device from the user.

    `max_batch` and `imgsz` are the largest batch and the input size (--imgsz) the run will send: the
    TensorRT provider builds its one shape profile for them, and a native engine refuses them at load
    when its own profiles do not cover them (mid-run, either would fail at setInputShape).
    """
    size = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    path = Path(model)
    if device not in DEVICES:
        raise ConfigError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    if not path.exists():
        raise ModelError(f"model {str(path)!r}: no such file")
    if not path.is_file():
        raise ModelError(f"model {str(path)!r}: not a file")
    if path.suffix.lower() == ".onnx":
        from .onnxruntime import OnnxRuntimeEngine

        return OnnxRuntimeEngine(path, device=device, threads=threads, max_batch=max_batch or DEFAULT_MAX_BATCH, imgsz=size)
    if path.suffix.lower() in (".engine", ".plan", ".trt"):
        from .tensorrt import TensorRTEngine

        return TensorRTEngine(path, device=device, max_batch=max_batch, imgsz=size)
    raise ModelError(f"model {str(path)!r}: unknown format {path.suffix!r}; expected .onnx or a TensorRT .engine")


__all__ = ["DEVICES", "Engine", "load_engine"]
