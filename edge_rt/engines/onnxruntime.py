"""ONNX Runtime backend: CPU, CUDA or the TensorRT execution provider."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import ConfigError, MissingDependencyError, ModelError
from ..model_info import ModelInfo, info_from_metadata

log = logging.getLogger("edge_rt.engines.onnxruntime")

_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16"}


def choose_providers(device: str, available: list[str]) -> list[str]:
    """The providers for `device`; `auto` takes CUDA when present (TensorRT EP builds engines at start-up,
    so it is chosen only when asked for)."""
    if device == "auto":
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    wanted = _PROVIDERS[device]
    if wanted[0] not in available:
        raise MissingDependencyError(
            f"--device {device}: ONNX Runtime here has no {wanted[0]} (available: {', '.join(available)}); "
            "install the GPU extra: pip install 'edge_rt[gpu]'"
        )
    return [p for p in wanted if p in available]


class OnnxRuntimeEngine:
    def __init__(self, path: Path, device: str = "auto", threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependencyError("onnxruntime is not installed: pip install 'edge_rt[cpu]' (or [gpu])") from None
        if threads is not None and threads < 0:
            raise ConfigError(f"threads must be >= 0, got {threads}")
        providers = choose_providers(device, ort.get_available_providers())
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # ORT raises its own untyped errors for bad files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"model {str(path)!r}: ONNX Runtime cannot load it: {first[:200]}") from None
        inp = self._session.get_inputs()[0]
        out = self._session.get_outputs()[0]
        if inp.type not in _DTYPES:
            raise ModelError(f"model {str(path)!r}: input type {inp.type} is not supported (float32 or float16)")
        meta = self._session.get_modelmeta().custom_metadata_map
        self.info: ModelInfo = info_from_metadata(meta, inp.name, inp.shape, _DTYPES[inp.type], out.shape, str(path))
        self._output_name = out.name
        self.device = self._session.get_providers()[0].replace("ExecutionProvider", "").lower()
        log.info("loaded %s on %s (providers: %s)", path.name, self.device, ", ".join(self._session.get_providers()))

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        return self._session.run([self._output_name], {self.info.input_name: tensor})[0]  # type: ignore[no-any-return]

    def close(self) -> None:
        self._session = None  # type: ignore[assignment]
