"""Build a TensorRT engine from an Ultralytics ONNX, with the sidecar the runtime checks on load.

Written for TensorRT 10 (JetPack 6 ships 10.3) and kept correct on TensorRT 11, which removed weak
typing: no `BuilderFlag.FP16/INT8`, no calibrators, no precision-constraint flags. What happens where:

- FP16. TensorRT 10: `BuilderFlag.FP16`. TensorRT 11+: precision must come from the ONNX, so a float32
  ONNX is first converted with ONNX Runtime's float16 converter (float32 inputs and outputs kept, so
  the runtime feeds it the same tensors); an ONNX that is already float16 is built as it is.
- INT8. TensorRT 10: post-training calibration (entropy calibrator 2) on letterboxed frames, with the
  YOLO detect head kept in float — quantizing its output convolutions, DFL and class sigmoid wipes
  out the class scores (see DESIGN.md, "INT8"). A Q/DQ (explicitly quantized) ONNX needs no
  calibration on any version. TensorRT 11+ without Q/DQ nodes: a clear error.

An engine only runs on the TensorRT version and GPU that built it, so the sidecar `<engine>.json`
records both (edge_rt.engines.tensorrt refuses a mismatch) with the model metadata read from the ONNX.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engines.tensorrt import _check, _cudart, gpu_name, sidecar_path
from ..errors import ConfigError, MissingDependencyError, ModelError
from ..model_info import ModelInfo, info_from_metadata
from ..preprocess import Preprocessor

log = logging.getLogger("edge_rt.exporters.tensorrt")

_MODEL_INDEX = re.compile(r"(?:^|[/.])model\.(\d+)(?=[/.]|$)")  # "/model.23/cv3.0/..." -> 23


def _import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependencyError(
            "TensorRT is not installed: pip install 'edge_rt[gpu]' on an x86 GPU box (JetPack ships it on a Jetson)"
        ) from None
    return trt


# --- the detect head: kept in float in an INT8 engine -------------------------------------------


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


# --- shapes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """One optimization profile: [B, 3, H, W] at its smallest, the size tuned for, and its largest."""

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    @property
    def dynamic(self) -> bool:
        return self.min != self.max


def plan_profile(
    input_shape: Sequence[int],
    imgsz: tuple[int, int],
    stride: int,
    min_batch: int | None = None,
    opt_batch: int | None = None,
    max_batch: int | None = None,
    default_batch: int = 1,
) -> Profile:
    """The profile for an input shape (-1 = dynamic). A fixed batch is the only batch its engine takes.

    A dynamic height/width spans every stride multiple up to `imgsz`, because the runtime letterboxes
    dynamic-shape models to the smallest rectangle (384x640 for a 16:9 camera at 640), not the square.
    """
    if len(input_shape) != 4:
        raise ModelError(f"expected a 4-D image input [B, 3, H, W], got {list(input_shape)}")
    if input_shape[1] not in (3, -1):
        raise ModelError(f"expected 3 input channels, got {input_shape[1]}")
    fixed = int(input_shape[0])
    asked = {"min_batch": min_batch, "opt_batch": opt_batch, "max_batch": max_batch}
    for key, value in asked.items():
        if value is not None and value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")
    if fixed > 0:
        wrong = {k: v for k, v in asked.items() if v is not None and v != fixed}
        if wrong:
            bad = ", ".join(f"{k}={v}" for k, v in wrong.items())
            raise ConfigError(
                f"{bad}: this ONNX has a fixed batch of {fixed}, so its engine runs batch {fixed} only; "
                "export the ONNX with dynamic=True for a batch range"
            )
        lo = opt = hi = fixed
    else:
        hi = max_batch or max(opt_batch or 0, min_batch or 0, default_batch, 1)
        lo = min_batch or 1
        opt = opt_batch or hi
        if not lo <= opt <= hi:
            raise ConfigError(f"batch range must satisfy min <= opt <= max, got min={lo} opt={opt} max={hi}")
    h, w = int(input_shape[2]), int(input_shape[3])
    if h > 0 and w > 0:
        return Profile((lo, 3, h, w), (opt, 3, h, w), (hi, 3, h, w))
    th, tw = (h if h > 0 else imgsz[0]), (w if w > 0 else imgsz[1])
    mh, mw = (h if h > 0 else min(stride, th)), (w if w > 0 else min(stride, tw))
    return Profile((lo, 3, mh, mw), (opt, 3, th, tw), (hi, 3, th, tw))


# --- what the runtime reads back ----------------------------------------------------------------


def read_onnx(onnx_path: Path) -> tuple[ModelInfo, dict[str, str]]:
    """The model as the runtime will see it (same rules as loading the ONNX) and its raw metadata.

    Read with ONNX Runtime on the CPU, which both the cpu and gpu extras install (`onnx` may not be).
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("reading the ONNX needs onnxruntime: pip install 'edge_rt[gpu]'") from None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own untyped errors for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"model {str(onnx_path)!r}: not a readable ONNX: {first[:200]}") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or not outputs:
        raise ModelError(f"model {str(onnx_path)!r}: expected one image input, got {[i.name for i in inputs]}")
    dtype = {"tensor(float)": "float32", "tensor(float16)": "float16"}.get(inputs[0].type)
    if dtype is None:
        raise ModelError(f"model {str(onnx_path)!r}: input type {inputs[0].type} is not supported (float32 or float16)")
    meta = dict(session.get_modelmeta().custom_metadata_map)
    info = info_from_metadata(meta, inputs[0].name, inputs[0].shape, dtype, outputs[0].shape, str(onnx_path))
    return info, meta


def model_fields(info: ModelInfo, imgsz: tuple[int, int], batch: int) -> dict[str, Any]:
    """The sidecar's model keys, as edge_rt.engines.tensorrt reads them back (str(value) is a literal)."""
    return {
        "names": {str(k): v for k, v in info.names.items()},
        "imgsz": [int(imgsz[0]), int(imgsz[1])],
        "stride": int(info.stride),
        "task": info.task,
        "batch": int(batch),
        "end2end": bool(info.end2end),
    }


def make_sidecar(
    info: ModelInfo,
    profile: Profile,
    tensorrt: str,
    gpu: str,
    precision: str,
    metadata: Mapping[str, Any] | None = None,
    onnx_name: str | None = None,
) -> dict[str, Any]:
    """Model keys (from the ONNX, or `metadata`) and the build facts, which `metadata` cannot override."""
    return {
        **model_fields(info, (profile.opt[2], profile.opt[3]), profile.max[0]),
        **dict(metadata or {}),
        "tensorrt": tensorrt,  # edge_rt.engines.tensorrt.check_sidecar refuses another version
        "gpu": gpu,  # ... or another GPU (cudaGetDeviceProperties name)
        "precision": precision,
        "min_batch": profile.min[0],
        "opt_batch": profile.opt[0],
        "max_batch": profile.max[0],
        "built_ns": time.time_ns(),
        **({"onnx": onnx_name} if onnx_name else {}),
    }


# --- calibration (TensorRT 10) ------------------------------------------------------------------


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
            self._device = _check(cudart.cudaMalloc(nbytes), "cudaMalloc") if batches is not None else 0

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
                _check(cudart.cudaMemcpy(self._device, host.ctypes.data, nbytes, kind), "cudaMemcpy (calibration)")
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


# --- TensorRT 11: FP16 lives in the ONNX --------------------------------------------------------


def fp16_onnx_bytes(onnx_path: Path) -> bytes | None:
    """The ONNX with float16 weights and compute but float32 inputs/outputs; None if already float16.

    For TensorRT 11+, which builds what the graph says (strong typing) instead of `BuilderFlag.FP16`.
    """
    try:
        import onnx
        from onnxruntime.transformers import float16
    except ImportError:
        raise MissingDependencyError(
            "FP16 on TensorRT 11+ converts the ONNX to float16 first, which needs onnx and onnxruntime: "
            "pip install onnx onnxruntime (or export an FP16 ONNX and build it with fp16 off)"
        ) from None
    model = onnx.load(str(onnx_path))
    f16 = onnx.TensorProto.FLOAT16
    if any(t.data_type == f16 for t in model.graph.initializer) or any(
        i.type.tensor_type.elem_type == f16 for i in model.graph.input
    ):
        return None
    converted = float16.convert_float_to_float16(model, keep_io_types=True)
    return bytes(converted.SerializeToString())


# --- the build ----------------------------------------------------------------------------------


def _make_logger(trt: Any) -> Any:
    """Routes TensorRT's messages to logging and keeps the last error for our own message."""
    sev = trt.ILogger.Severity
    levels = {
        sev.INTERNAL_ERROR: logging.ERROR,
        sev.ERROR: logging.ERROR,
        sev.WARNING: logging.WARNING,
        sev.INFO: logging.DEBUG,
        sev.VERBOSE: logging.DEBUG,
    }

    class Logger(trt.ILogger):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.last_error = ""

        def log(self, severity: Any, msg: str) -> None:
            level = levels.get(severity, logging.INFO)
            if level < logging.WARNING and not log.isEnabledFor(level):
                return  # the builder is chatty; skip the formatting when nobody listens
            if level >= logging.ERROR:
                self.last_error = msg.strip().splitlines()[0] if msg.strip() else msg
            log.log(level, "TensorRT: %s", msg)

    return Logger()


def _parse(trt: Any, parser: Any, onnx_path: Path, data: bytes | None) -> None:
    ok = parser.parse(data, str(onnx_path)) if data is not None else parser.parse_from_file(str(onnx_path))
    if ok:
        return
    errors = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = getattr(err, "node_name", None)
        where = node() if callable(node) else err.node()
        errors.append(f"{err.desc()} (node {where})")
    first = errors[0] if errors else "unknown parser error"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    raise ModelError(f"model {str(onnx_path)!r}: TensorRT {trt.__version__} cannot parse it: {first}{more}")


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


def _has_qdq(trt: Any, network: Any) -> bool:
    kinds = {getattr(trt.LayerType, n) for n in ("QUANTIZE", "DEQUANTIZE") if hasattr(trt.LayerType, n)}
    return any(network.get_layer(i).type in kinds for i in range(network.num_layers))


def _has_half(trt: Any, network: Any) -> bool:
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if any(layer.get_output(j).dtype == trt.float16 for j in range(layer.num_outputs)):
            return True
    return False


def _write_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


ENGINE_SUFFIXES = (".engine", ".plan", ".trt")  # what edge_rt.engines.load_engine recognises


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    *,
    fp16: bool = True,
    int8: bool = False,
    calibration_frames: Sequence[np.ndarray] | None = None,
    calibration_cache: Path | None = None,
    min_batch: int | None = None,
    opt_batch: int | None = None,
    max_batch: int | None = None,
    imgsz: tuple[int, int] | None = None,
    workspace_gb: float = 4.0,
    timing_cache: Path | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Build `engine_path` and its sidecar `<engine_path>.json` from an Ultralytics detection ONNX.

    Batches: a fixed-batch ONNX builds for that batch only (asking for another is a ConfigError);
    a dynamic one for min..max (defaults 1..the ONNX's export batch), tuned for opt (default max).
    `imgsz` sets the largest input of a dynamic-shape ONNX (default: its export size).
    INT8 (TensorRT 10) calibrates on `calibration_frames` (BGR images, see exporters.calibration) and
    writes `calibration_cache` (default `<engine>.calib`); with no frames it replays that cache.
    `timing_cache` is read if present and written back, which makes rebuilds much faster.
    `metadata` adds keys to the sidecar (or replaces model keys read from the ONNX, e.g. names).
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise ModelError(f"model {str(onnx_path)!r}: no such file")
    if onnx_path.suffix.lower() != ".onnx":
        raise ModelError(f"model {str(onnx_path)!r}: a TensorRT engine is built from an .onnx file")
    if engine_path.suffix.lower() not in ENGINE_SUFFIXES:
        raise ConfigError(f"engine {str(engine_path)!r}: name it *.engine (or .plan, .trt) so edge-rt run recognises it")
    if not workspace_gb > 0:
        raise ConfigError(f"workspace_gb must be > 0, got {workspace_gb}")
    calib_cache = Path(calibration_cache) if calibration_cache else engine_path.with_name(engine_path.name + ".calib")

    trt = _import_tensorrt()
    version = str(trt.__version__)
    cudart = _cudart()
    count = cudart.cudaGetDeviceCount()
    if int(count[0]) != 0 or not count[1]:
        raise MissingDependencyError(f"no CUDA GPU visible ({count[0]}): a TensorRT engine is built on the GPU it will run on")
    gpu = gpu_name(cudart)
    info, onnx_meta = read_onnx(onnx_path)

    onnx_bytes = None
    if fp16 and not int8 and not hasattr(trt.BuilderFlag, "FP16"):
        onnx_bytes = fp16_onnx_bytes(onnx_path)
        if onnx_bytes is not None:
            log.info("TensorRT %s has no FP16 flag: converted %s to float16 (float32 inputs/outputs)", version, onnx_path.name)
    logger = _make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode since TensorRT 10
    parser = trt.OnnxParser(network, logger)  # owns the weights: keep it alive until the build is done
    _parse(trt, parser, onnx_path, onnx_bytes)
    if network.num_inputs != 1:
        names = [network.get_input(i).name for i in range(network.num_inputs)]
        raise ModelError(f"model {str(onnx_path)!r}: expected one image input, got {names}")
    inp = network.get_input(0)

    if imgsz is not None and not info.dynamic_shape and tuple(imgsz) != tuple(info.imgsz):
        raise ConfigError(f"imgsz {list(imgsz)}: this ONNX has a fixed input size {list(info.imgsz)}")
    exported = onnx_meta.get("batch", "")
    default_batch = info.batch or (int(exported) if exported.isdigit() else 1)
    shape = [int(d) for d in inp.shape]
    profile = plan_profile(shape, imgsz or info.imgsz, info.stride, min_batch, opt_batch, max_batch, default_batch)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if any(d < 0 for d in shape):
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(inp.name, profile.min, profile.opt, profile.max)
        config.add_optimization_profile(opt_profile)
    _load_timing_cache(config, timing_cache)
    if fp16 and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)
    calibrator = None
    if int8:
        calibrator = _configure_int8(
            trt, cudart, config, network, fp16, calibration_frames, calib_cache, profile, info.stride, str(onnx_path)
        )
    precision = "int8" if int8 else "fp16" if (fp16 or _has_half(trt, network)) else "fp32"

    log.info("building %s engine, TensorRT %s on %s, input %s..%s", precision, version, gpu, list(profile.min), list(profile.max))
    started = time.perf_counter()
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()
    if calibrator is not None and calibrator.error is not None:
        raise calibrator.error
    if serialized is None:
        why = f": {logger.last_error}" if logger.last_error else " (see the TensorRT log above)"
        raise ModelError(f"TensorRT {version} could not build an engine from {str(onnx_path)!r}{why}")
    if calibrator is not None and calibrator.seen:
        log.info("INT8: calibrated on %d frames; cache written to %s", calibrator.seen, calib_cache)
    _save_timing_cache(config, timing_cache)

    _write_atomic(engine_path, serialized)
    sidecar = make_sidecar(info, profile, version, gpu, precision, metadata, onnx_path.name)
    _write_atomic(sidecar_path(engine_path), (json.dumps(sidecar, indent=2) + "\n").encode())
    log.info("wrote %s (%.1f MB) in %.0f s", engine_path, engine_path.stat().st_size / 1e6, time.perf_counter() - started)
    return engine_path


def _configure_int8(
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
    """INT8 flags, the detect head kept in float, and the calibrator (None for a Q/DQ ONNX)."""
    version = trt.__version__
    if _has_qdq(trt, network):
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


def _load_timing_cache(config: Any, path: Path | None) -> None:
    data = b""
    if path is not None and Path(path).is_file():
        data = Path(path).read_bytes()
    try:
        cache = config.create_timing_cache(data)
        if cache is None or not config.set_timing_cache(cache, False):
            raise ValueError("rejected")
    except Exception as exc:  # noqa: BLE001 - TensorRT raises untyped errors for a foreign cache
        if not data:
            raise
        log.warning("timing cache %s is from another TensorRT or GPU (%s); starting a new one", path, exc)
        config.set_timing_cache(config.create_timing_cache(b""), False)
    else:
        if data:
            log.info("using timing cache %s", path)


def _save_timing_cache(config: Any, path: Path | None) -> None:
    if path is None:
        return
    cache = config.get_timing_cache()
    if cache is not None:
        _write_atomic(Path(path), cache.serialize())
