"""Native TensorRT backend (TensorRT 10+ tensor-name API), imported only when a .engine is chosen.

An engine only runs on the TensorRT version and GPU it was built for, so it travels with a sidecar
JSON (`model.engine.json`): the model metadata plus `tensorrt` and `gpu`. A mismatch is refused
with a message that says how to rebuild, instead of a deserialisation crash.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, MissingDependencyError, ModelError
from ..model_info import ModelInfo, info_from_metadata

log = logging.getLogger("edge_rt.engines.tensorrt")


def sidecar_path(engine_path: Path) -> Path:
    return engine_path.with_name(engine_path.name + ".json")


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise MissingDependencyError("TensorRT engines need cuda-python: pip install 'edge_rt[gpu]'") from None
    return cudart


def _check(result: tuple[Any, ...], what: str) -> Any:
    err, *rest = result
    if int(err) != 0:
        raise ModelError(f"CUDA error in {what}: {err}")
    return rest[0] if len(rest) == 1 else rest


def gpu_name(cudart: Any, device: int = 0) -> str:
    props = _check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name
    return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00")


def check_sidecar(meta: dict[str, Any], trt_version: str, gpu: str, path: Path) -> None:
    """Refuse an engine built elsewhere: TensorRT engines are not portable across versions or GPUs."""
    built_trt, built_gpu = meta.get("tensorrt"), meta.get("gpu")
    if built_trt and built_trt != trt_version:
        raise ModelError(
            f"engine {str(path)!r} was built with TensorRT {built_trt}, this machine has {trt_version}; "
            "rebuild it here: edge-rt export --format engine"
        )
    if built_gpu and built_gpu != gpu:
        raise ModelError(
            f"engine {str(path)!r} was built for GPU {built_gpu!r}, this machine has {gpu!r}; "
            "rebuild it here: edge-rt export --format engine"
        )


class TensorRTEngine:
    def __init__(self, path: Path, device: str = "auto") -> None:
        if device not in ("auto", "tensorrt", "cuda"):
            raise ConfigError(f"--device {device}: a TensorRT engine runs on the GPU; use --device tensorrt or auto")
        try:
            import tensorrt as trt
        except ImportError:
            raise MissingDependencyError("TensorRT is not installed: pip install 'edge_rt[gpu]' (JetPack ships it)") from None
        self._trt = trt
        cudart = self._cudart = _cudart()
        side = sidecar_path(path)
        if not side.is_file():
            raise ModelError(f"engine {str(path)!r}: missing its sidecar {side.name} (names, imgsz, TensorRT version, GPU)")
        try:
            meta = json.loads(side.read_text())
        except ValueError as exc:
            raise ModelError(f"engine sidecar {str(side)!r} is not valid JSON: {exc}") from None
        check_sidecar(meta, trt.__version__, gpu_name(cudart), path)

        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise ModelError(f"engine {str(path)!r}: TensorRT {trt.__version__} cannot deserialise it; rebuild it on this machine")
        self._engine = engine
        self._context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not outputs:
            raise ModelError(f"engine {str(path)!r}: expected one image input and a detection output, got {names}")
        self._input, self._output = inputs[0], outputs[0]
        in_shape = list(engine.get_tensor_shape(self._input))
        out_shape = list(engine.get_tensor_shape(self._output))
        self._in_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._input)))
        self._out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._output)))
        if in_shape[0] == -1:
            self.max_batch = int(engine.get_tensor_profile_shape(self._input, 0)[2][0])
        else:
            self.max_batch = int(in_shape[0])
        str_meta = {k: str(v) for k, v in meta.items() if k in ("names", "imgsz", "stride", "task", "end2end", "batch")}
        shape = [None if d == -1 else d for d in in_shape]
        self.info: ModelInfo = info_from_metadata(
            str_meta, self._input, shape, self._in_dtype.name, [None if d == -1 else d for d in out_shape], str(path)
        )
        self.device = "tensorrt"
        self._stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        log.info("loaded %s: TensorRT %s on %s", path.name, trt.__version__, meta.get("gpu"))

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self._cudart.cudaFree(ptr), "cudaFree")
            ptr = _check(self._cudart.cudaMalloc(nbytes), "cudaMalloc")
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        cudart = self._cudart
        host_in = np.ascontiguousarray(tensor, dtype=self._in_dtype)
        if not self._context.set_input_shape(self._input, host_in.shape):
            raise ModelError(f"engine rejects input shape {host_in.shape} (outside its optimisation profile)")
        out_shape = tuple(self._context.get_tensor_shape(self._output))
        host_out = np.empty(out_shape, self._out_dtype)
        d_in = self._device_buffer(self._input, host_in.nbytes)
        d_out = self._device_buffer(self._output, host_out.nbytes)
        self._context.set_tensor_address(self._input, d_in)
        self._context.set_tensor_address(self._output, d_out)
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(cudart.cudaMemcpyAsync(d_in, host_in.ctypes.data, host_in.nbytes, h2d, self._stream), "copy in")
        if not self._context.execute_async_v3(self._stream):
            raise ModelError("TensorRT execute_async_v3 failed")
        _check(cudart.cudaMemcpyAsync(host_out.ctypes.data, d_out, host_out.nbytes, d2h, self._stream), "copy out")
        _check(cudart.cudaStreamSynchronize(self._stream), "synchronize")
        return host_out

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._buffers.clear()
        if getattr(self, "_stream", None) is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None
