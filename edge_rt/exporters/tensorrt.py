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

Shapes: one optimization profile per batch size (1, 2, 4, ... max), each exact on the batch axis, so
the runtime runs every batch on kernels tuned for it. A graph-preprocess ONNX (`edge_rt_preprocess`
metadata: uint8 frames and a letterbox plan in) takes any camera size, and its plan is a shape
tensor whose value range each profile states (`set_shape_input`).

An engine only runs on the TensorRT version and GPU that built it, so the sidecar `<engine>.json`
records both (edge_rt.engines.tensorrt refuses a mismatch) with the model metadata read from the ONNX.
"""

from __future__ import annotations

import ast
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

from ..engines.cuda_runtime import check, gpu_name, load_cudart
from ..engines.tensorrt_sidecar import plan_input_name, sidecar_path
from ..errors import ConfigError, MissingDependencyError, ModelError
from ..model_info import GRAPH_PREPROCESS_KEY, ModelInfo, info_from_metadata
from ..preprocess import Preprocessor, plan_letterbox

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


# --- shapes ----------------------------------------------------------------------------------

FRAME_MIN, FRAME_OPT, FRAME_MAX = (32, 32), (720, 1280), (2160, 3840)  # camera frames of graph-preprocess models


@dataclass(frozen=True)
class Profile:
    """One optimization profile: the image input at its smallest, the shape tuned for, and its largest.

    [B, 3, H, W] for plain models; [B, H, W, 3] frames for graph-preprocess models, whose `plan`
    holds the (min, opt, max) values of the letterbox plan, a shape tensor (`set_shape_input`).
    """

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]
    plan: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None

    @property
    def dynamic(self) -> bool:
        return self.min != self.max


def batch_range(
    fixed: int, min_batch: int | None, opt_batch: int | None, max_batch: int | None, default_batch: int = 1
) -> tuple[int, int, int]:
    """(min, opt, max) batch: a fixed batch is the only batch its engine takes; else min..max tuned for opt."""
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
        return fixed, fixed, fixed
    hi = max_batch or max(opt_batch or 0, min_batch or 0, default_batch, 1)
    lo = min_batch or 1
    opt = opt_batch or hi
    if not lo <= opt <= hi:
        raise ConfigError(f"batch range must satisfy min <= opt <= max, got min={lo} opt={opt} max={hi}")
    return lo, opt, hi


def plan_profile(
    input_shape: Sequence[int],
    imgsz: tuple[int, int],
    stride: int,
    min_batch: int | None = None,
    opt_batch: int | None = None,
    max_batch: int | None = None,
    default_batch: int = 1,
) -> Profile:
    """The whole range for an input shape (-1 = dynamic); `batch_profiles` splits it per batch size.

    A dynamic height/width spans every stride multiple up to `imgsz`, because the runtime letterboxes
    dynamic-shape models to the smallest rectangle (384x640 for a 16:9 camera at 640), not the square.
    """
    if len(input_shape) != 4:
        raise ModelError(f"expected a 4-D image input [B, 3, H, W], got {list(input_shape)}")
    if input_shape[1] not in (3, -1):
        raise ModelError(f"expected 3 input channels, got {input_shape[1]}")
    lo, opt, hi = batch_range(int(input_shape[0]), min_batch, opt_batch, max_batch, default_batch)
    h, w = int(input_shape[2]), int(input_shape[3])
    if h > 0 and w > 0:
        return Profile((lo, 3, h, w), (opt, 3, h, w), (hi, 3, h, w))
    th, tw = (h if h > 0 else imgsz[0]), (w if w > 0 else imgsz[1])
    mh, mw = (h if h > 0 else min(stride, th)), (w if w > 0 else min(stride, tw))
    return Profile((lo, 3, mh, mw), (opt, 3, th, tw), (hi, 3, th, tw))


def letterbox_plan(frame_hw: tuple[int, int], inner_hw: tuple[int, int], stride: int, auto: bool) -> tuple[int, ...]:
    """(new_h, new_w, top, left, bottom, right): what `preprocess` feeds a graph-preprocess model."""
    lb, (ph, pw) = plan_letterbox(frame_hw, inner_hw, stride, auto)
    return (lb.new_h, lb.new_w, lb.top, lb.left, ph - lb.new_h - lb.top, pw - lb.new_w - lb.left)


def plan_frames_profile(
    input_shape: Sequence[int],
    inner_hw: tuple[int, int],
    stride: int,
    dynamic_inner: bool,
    min_batch: int | None = None,
    opt_batch: int | None = None,
    max_batch: int | None = None,
    default_batch: int = 1,
    max_frame: tuple[int, int] = FRAME_MAX,
) -> Profile:
    """The range of a graph-preprocess model: frames [B, H, W, 3] of any camera size, and its plan values.

    Pads are bounded by how the letterbox centres a frame: at most half the inner size, or half a
    stride when the inner size follows the frame (dynamic). Loose bounds cost device memory, because
    TensorRT sizes activations for the largest padded input the plan values allow.
    """
    if len(input_shape) != 4 or int(input_shape[3]) not in (3, -1):
        raise ModelError(f"expected camera frames [B, H, W, 3], got {list(input_shape)}")
    lo, opt, hi = batch_range(int(input_shape[0]), min_batch, opt_batch, max_batch, default_batch)
    fh, fw = int(input_shape[1]), int(input_shape[2])
    small = (fh if fh > 0 else FRAME_MIN[0], fw if fw > 0 else FRAME_MIN[1])
    large = (fh if fh > 0 else max_frame[0], fw if fw > 0 else max_frame[1])
    mid = (fh if fh > 0 else min(FRAME_OPT[0], large[0]), fw if fw > 0 else min(FRAME_OPT[1], large[1]))
    h, w = inner_hw
    ph, pw = (stride // 2, stride // 2) if dynamic_inner else ((h + 1) // 2, (w + 1) // 2)
    plan_lo, plan_hi = (1, 1, 0, 0, 0, 0), (h, w, ph, pw, ph, pw)
    plan_opt = letterbox_plan(mid, inner_hw, stride, dynamic_inner)
    return Profile((lo, *small, 3), (opt, *mid, 3), (hi, *large, 3), (plan_lo, plan_opt, plan_hi))


def batch_sizes(lo: int, opt: int, hi: int) -> list[int]:
    """The batch of each profile: min, the powers of two between, opt and max (1, 2, 4, 8 for 1..8)."""
    sizes = {lo, opt, hi}
    b = 1
    while b < hi:
        if b > lo:
            sizes.add(b)
        b *= 2
    return sorted(sizes)


def batch_profiles(profile: Profile) -> list[Profile]:
    """One profile per batch size, each with min = opt = max on the batch axis (H/W ranges kept).

    A profile tuned for exactly its batch beats one range tuned for a single opt batch, and the
    runtime picks the profile whose batch equals the call's (padding up to the next one otherwise).
    """
    lo, opt, hi = profile.min[0], profile.opt[0], profile.max[0]
    return [
        Profile((b, *profile.min[1:]), (b, *profile.opt[1:]), (b, *profile.max[1:]), profile.plan)
        for b in batch_sizes(lo, opt, hi)
    ]


# --- what the runtime reads back ----------------------------------------------------------------


def read_onnx(onnx_path: Path) -> tuple[ModelInfo, dict[str, str]]:
    """The model as the runtime will see it (same rules as loading the ONNX) and its raw metadata.

    Read with ONNX Runtime on the CPU, which both the cpu and gpu extras install (`onnx` may not be).
    A graph-preprocess model has two inputs: uint8 frames and the letterbox plan its metadata names.
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
    meta = dict(session.get_modelmeta().custom_metadata_map)
    plan = plan_input_name(meta)
    inputs, outputs = [i for i in session.get_inputs() if i.name != plan], session.get_outputs()
    if len(inputs) != 1 or not outputs or len(session.get_inputs()) != 1 + (plan is not None):
        names = [i.name for i in session.get_inputs()]
        want = f"one image input and the plan {plan!r}" if plan else "one image input"
        raise ModelError(f"model {str(onnx_path)!r}: expected {want}, got {names}")
    types = {"tensor(float)": "float32", "tensor(float16)": "float16", **({"tensor(uint8)": "uint8"} if plan else {})}
    dtype = types.get(inputs[0].type)
    if dtype is None:
        allowed = " or ".join(types.values())
        raise ModelError(f"model {str(onnx_path)!r}: input type {inputs[0].type} is not supported ({allowed})")
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


def _nms_in_graph(onnx_meta: Mapping[str, str]) -> bool:
    try:
        args = ast.literal_eval(onnx_meta.get("args", "{}"))
    except (ValueError, SyntaxError):
        return False
    return isinstance(args, dict) and bool(args.get("nms"))


def make_sidecar(
    info: ModelInfo,
    profile: Profile,
    tensorrt: str,
    gpu: str,
    precision: str,
    metadata: Mapping[str, Any] | None = None,
    onnx_name: str | None = None,
    *,
    onnx_meta: Mapping[str, str] | None = None,
    profiles: Sequence[Profile] | None = None,
    cuda_graph: bool = True,
) -> dict[str, Any]:
    """Model keys (from the ONNX, or `metadata`) and the build facts, which `metadata` cannot override.

    `edge_rt_preprocess` is copied from the ONNX metadata as it is, so the engine's ModelInfo reads
    like its ONNX's; the batch, precision and flags are what `rebuild_command` needs.
    """
    onnx_meta = onnx_meta or {}
    hw = info.imgsz if info.graph_preprocess else (profile.opt[2], profile.opt[3])
    graph = {GRAPH_PREPROCESS_KEY: onnx_meta[GRAPH_PREPROCESS_KEY]} if GRAPH_PREPROCESS_KEY in onnx_meta else {}
    return {
        **model_fields(info, hw, profile.max[0]),
        **graph,
        **dict(metadata or {}),
        "tensorrt": tensorrt,  # edge_rt.engines.tensorrt.check_sidecar refuses another version
        "gpu": gpu,  # ... or another GPU (cudaGetDeviceProperties name)
        "precision": precision,
        "min_batch": profile.min[0],
        "opt_batch": profile.opt[0],
        "max_batch": profile.max[0],
        "profiles": [p.min[0] for p in (profiles or batch_profiles(profile))],  # the batch of each profile
        "dynamic": info.batch is None or info.dynamic_shape,
        "nms": _nms_in_graph(onnx_meta),
        "cuda_graph": cuda_graph,  # False: data-dependent layers (NMS, NonZero) cannot be captured
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
    max_frame: tuple[int, int] = FRAME_MAX,
) -> Path:
    """Build `engine_path` and its sidecar `<engine_path>.json` from an Ultralytics detection ONNX.

    Batches: a fixed-batch ONNX builds for that batch only (asking for another is a ConfigError);
    a dynamic one gets one optimization profile per batch size of `batch_sizes(min, opt, max)`
    (defaults 1..the ONNX's export batch). `imgsz` sets the largest input of a dynamic-shape ONNX
    (default: its export size). A graph-preprocess ONNX (uint8 frames + letterbox plan) takes frames
    from 32x32 up to `max_frame`, tuned for 720x1280.
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
    cudart = load_cudart()
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
    # Explicit batch is the only mode since TensorRT 10; TensorRT 11 makes every network strongly
    # typed (its STRONGLY_TYPED creation flag is accepted and ignored), so 0 is right on both.
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)  # owns the weights: keep it alive until the build is done
    _parse(trt, parser, onnx_path, onnx_bytes)
    inp, plan_in = _network_inputs(network, info, str(onnx_path))

    if imgsz is not None and not info.dynamic_shape and tuple(imgsz) != tuple(info.imgsz):
        raise ConfigError(f"imgsz {list(imgsz)}: this ONNX has a fixed input size {list(info.imgsz)}")
    if imgsz is not None and info.graph_preprocess and tuple(imgsz) != tuple(info.imgsz):
        raise ConfigError(f"imgsz {list(imgsz)}: the letterbox inside this ONNX targets {list(info.imgsz)}; export it again")
    exported = onnx_meta.get("batch", "")
    default_batch = info.batch or (int(exported) if exported.isdigit() else 1)
    shape = [int(d) for d in inp.shape]
    batches = (min_batch, opt_batch, max_batch, default_batch)
    if info.graph_preprocess:
        profile = plan_frames_profile(shape, info.imgsz, info.stride, info.dynamic_shape, *batches, max_frame=max_frame)
    else:
        profile = plan_profile(shape, imgsz or info.imgsz, info.stride, *batches)
    profiles = batch_profiles(profile)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    dynamic = any(d < 0 for d in shape)
    if dynamic or plan_in is not None:  # a shape-tensor input needs a profile even when every dimension is fixed
        _add_profiles(builder, config, inp.name, plan_in.name if plan_in is not None else None, profiles, dynamic)
    _load_timing_cache(config, timing_cache)
    if fp16 and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)
    calibrator = None
    if int8:
        if info.graph_preprocess and not _has_qdq(trt, network):
            raise ConfigError("INT8 calibration feeds letterboxed tensors, not camera frames: build the ONNX without "
                              "--graph-preprocess, or quantize it (Q/DQ) first")
        # TensorRT 10 calibrates with the first profile when none is set for calibration (the smallest batch)
        calibrator = _configure_int8(
            trt, cudart, config, network, fp16, calibration_frames, calib_cache, profiles[0], info.stride, str(onnx_path)
        )
    precision = "int8" if int8 else "fp16" if (fp16 or _has_half(trt, network)) else "fp32"
    data_dependent = _data_dependent_layers(trt, network)

    log.info(
        "building %s engine, TensorRT %s on %s, input %s..%s, profiles for batch %s", precision, version, gpu,
        list(profile.min), list(profile.max), [p.min[0] for p in profiles],
    )
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
    if data_dependent:
        log.info("%s has data-dependent layers (%s): the runtime will not capture CUDA graphs", onnx_path.name, data_dependent[0])
    sidecar = make_sidecar(
        info, profile, version, gpu, precision, metadata, onnx_path.name,
        onnx_meta=onnx_meta, profiles=profiles, cuda_graph=not data_dependent,
    )
    _write_atomic(sidecar_path(engine_path), (json.dumps(sidecar, indent=2) + "\n").encode())
    log.info("wrote %s (%.1f MB) in %.0f s", engine_path, engine_path.stat().st_size / 1e6, time.perf_counter() - started)
    return engine_path


def _network_inputs(network: Any, info: ModelInfo, source: str) -> tuple[Any, Any]:
    """The image input and, for a graph-preprocess model, the letterbox plan (a shape tensor)."""
    tensors = [network.get_input(i) for i in range(network.num_inputs)]
    plan = [t for t in tensors if info.plan_input and t.name == info.plan_input]
    image = [t for t in tensors if t.name == info.input_name]
    if len(image) != 1 or len(tensors) != 1 + len(plan) or (info.graph_preprocess and not plan):
        want = f"{info.input_name!r} and {info.plan_input!r}" if info.graph_preprocess else "one image input"
        raise ModelError(f"model {source!r}: expected {want}, got {[t.name for t in tensors]}")
    if plan and not plan[0].is_shape_tensor:  # it feeds Resize sizes and Pad pads: TensorRT reads it on the host
        log.warning("model %s: letterbox input %r is not a shape tensor for TensorRT", source, plan[0].name)
    return image[0], (plan[0] if plan else None)


def _add_profiles(builder: Any, config: Any, image: str, plan: str | None, profiles: Sequence[Profile], dynamic: bool) -> None:
    """One optimization profile per batch size; a shape-tensor plan needs its values in every one."""
    for p in profiles:
        op = builder.create_optimization_profile()
        try:  # the Python API raises RuntimeError for an inconsistent min/opt/max
            if dynamic:
                op.set_shape(image, p.min, p.opt, p.max)
            if plan is not None and p.plan is not None:
                op.set_shape_input(plan, *(list(v) for v in p.plan))  # setShapeValues(V2) for min, opt, max
        except RuntimeError as exc:
            raise ModelError(f"optimization profile {list(p.min)}..{list(p.max)} rejected: {exc}") from None
        if config.add_optimization_profile(op) < 0:  # -1 when the profile is not valid
            raise ModelError(f"optimization profile {list(p.min)}..{list(p.max)} rejected by TensorRT (see its log)")


def _data_dependent_layers(trt: Any, network: Any) -> list[str]:
    """Layers whose output shapes depend on data: TensorRT syncs with the host there, so no CUDA graph."""
    kinds = {getattr(trt.LayerType, n) for n in ("NMS", "NON_ZERO") if hasattr(trt.LayerType, n)}
    return [network.get_layer(i).name for i in range(network.num_layers) if network.get_layer(i).type in kinds]


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
