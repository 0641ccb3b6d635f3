"""Backends behind one protocol; each is imported only when chosen.

May import: errors, ops/, detect/ (model_info, letterbox geometry). tests/test_imports.py holds the rule.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, ModelError
from .base import Engine

DEVICES = ("auto", "cpu", "cuda", "tensorrt", "openvino")
OPENVINO_DEVICES = ("openvino:CPU", "openvino:GPU", "openvino:NPU", "openvino:AUTO")  # and GPU.1 etc., as OpenVINO names them
_OPENVINO_SUFFIXES = (".xml",)


def check_device(device: str) -> str:
    """`--device`: one of DEVICES, or `openvino:NAME` for an OpenVINO device."""
    if device in DEVICES or (device.startswith("openvino:") and device.partition(":")[2]):
        return device
    raise ConfigError(f"--device {device!r}: choose one of {', '.join(DEVICES + OPENVINO_DEVICES)}")


def is_openvino(path: Path, device: str) -> bool:
    """An IR (or the folder Ultralytics exports it to) always runs on OpenVINO; an ONNX when the device says so."""
    return path.is_dir() or path.suffix.lower() in _OPENVINO_SUFFIXES or device.startswith("openvino")


DEFAULT_MAX_BATCH = 8  # a caller that does not say what it sends (a probe that only reads the model's facts)


def load_engine(
    model: str | Path,
    device: str = "auto",
    threads: int | None = None,
    max_batch: int | None = None,
    imgsz: int | tuple[int, int] | None = None,
    hint: str = "latency",
    precision: str | None = None,
) -> Engine:
    """Pick the backend from the file type, the device from the user.

    `max_batch` and `imgsz` are the largest batch and the input size (--imgsz) the run will send: the
    TensorRT provider builds its one shape profile for them, and a native engine refuses them at load
    when its own profiles do not cover them (mid-run, either would fail at setInputShape). `hint` is
    OpenVINO's performance hint: `throughput` keeps several requests in flight (the pipeline overlaps
    them), `latency` one. `precision` is OpenVINO's inference precision (f32, bf16, f16); None keeps what the
    export recorded, else the device's default.
    """
    size = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    path = Path(model)
    check_device(device)
    if not path.exists():
        raise ModelError(f"model {str(path)!r}: no such file")
    if is_openvino(path, device):
        if device in ("cuda", "tensorrt"):
            raise ConfigError(f"--device {device}: {path.name} is an OpenVINO model; run it with --device openvino[:GPU|:NPU|:AUTO]")
        from .openvino import OpenVinoEngine

        device = "openvino" if device == "cpu" else device
        return OpenVinoEngine(path, device=device, threads=threads, hint=hint, precision=precision)
    if not path.is_file():
        raise ModelError(f"model {str(path)!r}: not a file")
    if path.suffix.lower() == ".onnx":
        from .onnxruntime import OnnxRuntimeEngine

        return OnnxRuntimeEngine(path, device=device, threads=threads, max_batch=max_batch or DEFAULT_MAX_BATCH, imgsz=size)
    if path.suffix.lower() in (".engine", ".plan", ".trt"):
        from .tensorrt import TensorRTEngine

        return TensorRTEngine(path, device=device, max_batch=max_batch, imgsz=size)
    raise ModelError(
        f"model {str(path)!r}: unknown format {path.suffix!r}; expected .onnx, an OpenVINO .xml or a TensorRT .engine"
    )


__all__ = ["DEFAULT_MAX_BATCH", "DEVICES", "Engine", "check_device", "load_engine"]
