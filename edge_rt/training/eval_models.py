"""The model files ``edge-rt eval`` opens: exports through edge_rt's engines, a ``.pt`` through PyTorch.

Whatever the file, the engine hands raw head outputs to the same letterbox and decoder, so two files
of one model differ in an evaluation only by what their engine computes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..detect.model_info import ModelInfo
from ..engines import Engine, load_engine
from ..errors import ConfigError, MissingDependencyError, ModelError

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
_INT8_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"})


class TorchEngine:
    """A ``.pt`` through PyTorch behind the ``Engine`` protocol, fed by the same letterbox as an export.

    Its input is letterboxed to the smallest stride multiple, as Ultralytics does for a ``.pt``.
    """

    def __init__(self, path: Path, device: str = "auto") -> None:
        try:
            import torch
            from ultralytics import YOLO
        except ImportError as exc:
            raise MissingDependencyError(
                f"evaluating a .pt needs torch and Ultralytics ({exc}); pip install 'edge_rt[train]'"
            ) from None
        try:
            yolo: Any = YOLO(str(path))
        except Exception as exc:  # Ultralytics raises anything from a bad pickle to a KeyError
            raise ModelError(f"model {str(path)!r}: Ultralytics cannot load it ({type(exc).__name__}: {exc})") from None
        if yolo.task != "detect":
            raise ModelError(f"model {str(path)!r}: task {yolo.task!r}; edge-rt eval scores detection models")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device not in ("cpu", "cuda"):
            raise ConfigError(f"--device {device!r}: a .pt runs on cpu or cuda")
        self._torch = torch
        self._device = torch.device(device)
        net = yolo.model.fuse(verbose=False) if hasattr(yolo.model, "fuse") else yolo.model
        self._net = net.to(self._device).float().eval()
        args = getattr(net, "args", {}) or {}
        size = args.get("imgsz", 640) if isinstance(args, dict) else 640
        size = int(size[0]) if isinstance(size, (list, tuple)) else int(size)
        self.device = device
        self.info = ModelInfo(
            names={int(k): str(v) for k, v in yolo.names.items()},
            imgsz=(size, size),
            stride=max(int(net.stride.max()), 32),  # as Ultralytics' PyTorch backend
            batch=None,
            dynamic_shape=True,
            end2end=bool(getattr(net, "end2end", False)),
            input_name="images",
            input_dtype="float32",
        )

    def infer(self, tensor: np.ndarray, plan: np.ndarray | None = None) -> np.ndarray:
        with self._torch.inference_mode():
            out = self._net(self._torch.from_numpy(tensor).to(self._device))
        y = out[0] if isinstance(out, (list, tuple)) else out  # (decoded, raw head outputs) outside export mode
        return np.asarray(y.float().cpu().numpy())

    def close(self) -> None:
        self._net = None


def open_model(model: Path, device: str = "auto", max_batch: int | None = None, imgsz: int | None = None) -> Engine:
    """A ``.pt`` through PyTorch, anything else through edge_rt's own ``load_engine``.

    ``max_batch`` and ``imgsz`` are what the evaluation sends: the TensorRT provider's shape profile is
    built for them, and a native engine refuses them at load when its profiles do not take them.
    """
    model = Path(model)
    if not model.is_file():
        raise ModelError(f"model {str(model)!r}: no such file; pass a .pt, .onnx or TensorRT .engine")
    suffix = model.suffix.lower()
    if suffix == ".pt":
        return TorchEngine(model, device)
    if suffix == ".onnx" or suffix in ENGINE_SUFFIXES:
        return load_engine(model, device, max_batch=max_batch, imgsz=imgsz)
    raise ModelError(f"model {str(model)!r}: unknown format {model.suffix!r}; pass a .pt, .onnx or TensorRT .engine")


def describe_model(path: Path, info: ModelInfo) -> str:
    """What a user deploys: format, precision, static or dynamic shape, and what runs inside the graph."""
    suffix = path.suffix.lower()
    if suffix == ".pt":
        return "pytorch"
    if suffix == ".onnx":
        fmt, precision = "onnx", _onnx_precision(path, info)
    else:
        from ..engines.tensorrt_sidecar import read_sidecar, sidecar_path

        fmt = "tensorrt"
        precision = str(read_sidecar(path).get("precision", "?")) if sidecar_path(path).is_file() else "?"
    parts = [fmt, precision, "dynamic" if info.dynamic_shape else "static"]
    if info.graph_preprocess:
        parts.append("+letterbox")
    if info.graph_nms is not None:
        parts.append("+nms")
    return " ".join(parts)


def _onnx_precision(path: Path, info: ModelInfo) -> str:
    """int8 when the graph quantizes, fp16 when its weights are half, else fp32 (read from the graph)."""
    try:
        import onnx
    except ImportError:
        return "fp16" if info.input_dtype == "float16" else "fp32"
    model = onnx.load(str(path), load_external_data=False)
    if any(node.op_type in _INT8_OPS for node in model.graph.node):
        return "int8"
    half = sum(1 for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16)
    full = sum(1 for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    return "fp16" if info.input_dtype == "float16" or half > full else "fp32"
