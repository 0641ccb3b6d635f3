"""INT8 for a TensorRT build: the entropy calibrator (TensorRT 10) and the YOLO detect head pinned to float."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..detect.preprocess import Preprocessor
from ..engines.cuda_runtime import check
from ..engines.tensorrt_profiles import Profile
from ..errors import ConfigError, ModelError

log = logging.getLogger("edge_rt.exporters.tensorrt")

_MODEL_INDEX = re.compile(r"(?:^|[/.])model\.(\d+)(?=[/.]|$)")  # "/model.23/cv3.0/..." -> 23


def configure_int8(
    trt: Any,
    cudart: Any,
    config: Any,
    network: Any,
    fp16: bool,
    frames: Sequence[np.ndarray] | None,
    cache: Path,
    profile: Profile,
    stride: int,
    source: str,
) -> Any:
    """INT8 flags, the detect head kept in float, and the calibrator (None for a Q/DQ ONNX).

    TensorRT 10: post-training calibration (entropy calibrator 2) on letterboxed frames, with the
    YOLO detect head kept in float: quantizing its output convolutions, DFL and class sigmoid wipes
    out the class scores (test_int8_engine_keeps_the_head_in_float has the figures). A Q/DQ (explicitly quantized) ONNX needs no
    calibration on any version. TensorRT 11+ removed calibrators: without Q/DQ nodes, a clear error.
    """
    version = trt.__version__
    if has_qdq(trt, network):
        if hasattr(trt.BuilderFlag, "INT8"):
            config.set_flag(trt.BuilderFlag.INT8)  # TensorRT 10 (weak typing) runs Q/DQ only with the flag
        log.info("INT8: the ONNX is explicitly quantized (Q/DQ); no calibration")
        return None
    if not (hasattr(trt.BuilderFlag, "INT8") and hasattr(trt, "IInt8EntropyCalibrator2")):
        raise ModelError(
            f"INT8 on TensorRT {version} needs an explicitly quantized (Q/DQ) ONNX: TensorRT 11 removed calibration; "
            "quantize the ONNX first (e.g. NVIDIA ModelOpt, detect head kept in float) or build FP16"
        )
    if not frames and not cache.is_file():
        raise ConfigError(
            "INT8 needs calibration frames (a folder of images or a video of the cameras' scenes) "
            f"or an existing calibration cache; {str(cache)!r} does not exist"
        )
    config.set_flag(trt.BuilderFlag.INT8)
    names = [network.get_layer(i).name for i in range(network.num_layers)]
    kept = _keep_head_in_float(trt, network, trt.float16 if fp16 else trt.float32)
    if not kept:
        raise ModelError(
            f"model {source!r}: cannot find the YOLO detect head (no '/model.N/' layer names) to keep it in float, "
            "and quantizing it wipes out the class scores; build FP16 instead"
        )
    config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)  # OBEY would fail where no kernel exists
    log.info("INT8: keeping %d layers of the detect head %s in %s", kept, head_prefix(names), "fp16" if fp16 else "fp32")
    dtype = np.dtype(trt.nptype(network.get_input(0).dtype)).name
    shape = profile.opt  # TensorRT 10 calibrates at the opt shape of the first profile
    batches = calibration_batches(frames, shape[0], (shape[2], shape[3]), stride, dtype) if frames else None
    calibrator = _calibrator(trt, cudart, batches, shape[0], int(np.prod(shape)) * np.dtype(dtype).itemsize, cache)
    config.int8_calibrator = calibrator
    return calibrator


def has_qdq(trt: Any, network: Any) -> bool:
    """Whether the ONNX is explicitly quantized (QuantizeLinear/DequantizeLinear layers)."""
    kinds = {getattr(trt.LayerType, n) for n in ("QUANTIZE", "DEQUANTIZE") if hasattr(trt.LayerType, n)}
    return any(network.get_layer(i).type in kinds for i in range(network.num_layers))


# --- the detect head: kept in float in an INT8 engine -----------------------------------------


def model_index(name: str) -> int | None:
    """The Ultralytics module index in a node or layer name (`/model.23/dfl/conv/Conv` -> 23)."""
    m = _MODEL_INDEX.search(name)
    return int(m.group(1)) if m else None


def head_prefix(names: Sequence[str]) -> str | None:
    """`/model.N/` of the detect head: the highest module index (Ultralytics builds the head last)."""
    indices = [i for i in map(model_index, names) if i is not None]
    return f"/model.{max(indices)}/" if indices else None


def head_layers(names: Sequence[str]) -> list[int]:
    """Positions of the layers to keep in float: the head's own, and every unnamed one after its first.

    onnxslim reorders nodes, so the head's P3 branch starts before the neck's last modules
    (/model.17 .. /model.22) are done; those keep their index and stay quantized. Layers with no
    module index after the head starts (parser helpers, the output) belong to the head.
    """
    indices = [model_index(n) for n in names]
    known = [i for i in indices if i is not None]
    if not known:
        return []
    head = max(known)
    first = indices.index(head)
    return [i for i in range(first, len(names)) if indices[i] in (head, None)]


def _keep_head_in_float(trt: Any, network: Any, dtype: Any) -> int:
    """Constrain the detect head's float layers to `dtype` (PREFER: TensorRT warns if it cannot)."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    skip = {trt.LayerType.CONSTANT, trt.LayerType.SHAPE}
    floats = {trt.float32, trt.float16}
    count = 0
    for i in head_layers([layer.name for layer in layers]):
        layer = layers[i]
        if layer.type in skip or layer.num_outputs == 0:
            continue
        tensors = [layer.get_output(j) for j in range(layer.num_outputs)]
        tensors += [t for t in (layer.get_input(j) for j in range(layer.num_inputs)) if t is not None]
        if not all(t.dtype in floats for t in tensors):
            continue  # shape and index arithmetic (TopK indices, Gather positions, casts) stays as it is
        layer.precision = dtype
        for j, tensor in enumerate(tensors[: layer.num_outputs]):
            if not tensor.is_network_output:  # a network output keeps the type the ONNX declares
                layer.set_output_type(j, dtype)
        count += 1
    return count


# --- calibration (TensorRT 10) ----------------------------------------------------------------


def calibration_batches(
    frames: Sequence[np.ndarray], batch: int, imgsz: tuple[int, int], stride: int, dtype: str = "float32"
) -> Iterator[np.ndarray]:
    """Letterboxed [batch, 3, H, W] tensors over all frames; the last batch is filled from the first frames.

    Each tensor is a reused buffer, valid until the next one is taken (it is copied to the GPU at once).
    """
    if not frames:
        raise ConfigError("INT8 calibration needs at least one frame")
    pre = Preprocessor(imgsz, stride, auto=False, dtype=dtype, fixed_batch=batch, ring=2)
    count = math.ceil(len(frames) / batch) * batch
    padded = [frames[i % len(frames)] for i in range(count)]
    for i in range(0, count, batch):
        yield pre(list(padded[i : i + batch])).tensor


def _calibrator(trt: Any, cudart: Any, batches: Iterator[np.ndarray] | None, batch: int, nbytes: int, cache: Path) -> Any:
    """An entropy calibrator 2 that copies each batch into one device buffer.

    Without batches it only replays `cache`. An exception inside a callback is kept and re-raised
    after the build (TensorRT would only log it).
    """

    class Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.error: Exception | None = None
            self.seen = 0
            self._device = check(cudart.cudaMalloc(nbytes), "cudaMalloc") if batches is not None else 0

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if batches is None or self.error is not None:
                return None
            try:
                host = np.ascontiguousarray(next(batches))
                if host.nbytes != nbytes:
                    raise ModelError(f"calibration batch {list(host.shape)} has {host.nbytes} bytes, the input needs {nbytes}")
                kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
                check(cudart.cudaMemcpy(self._device, host.ctypes.data, nbytes, kind), "cudaMemcpy (calibration)")
            except StopIteration:
                return None
            except Exception as exc:  # re-raised after build_serialized_network; TensorRT would only log it
                self.error = exc
                return None
            self.seen += batch
            return [int(self._device)]

        def read_calibration_cache(self) -> bytes | None:
            if batches is None and cache.is_file():
                log.info("INT8: reusing calibration cache %s", cache)
                return cache.read_bytes()
            return None  # fresh frames: calibrate on them, never on a stale cache

        def write_calibration_cache(self, data: Any) -> None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(bytes(data))

        def free(self) -> None:
            if self._device:
                cudart.cudaFree(self._device)
                self._device = 0

    return Calibrator()
