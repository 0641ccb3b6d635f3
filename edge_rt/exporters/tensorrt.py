"""Build a TensorRT engine from an Ultralytics ONNX, with the sidecar the runtime checks on load.

Written for TensorRT 10 (JetPack 6 ships 10.3) and kept correct on TensorRT 11, which removed weak
typing: no `BuilderFlag.FP16/INT8`, no calibrators, no precision-constraint flags. FP16 on TensorRT 10
is `BuilderFlag.FP16`; on TensorRT 11+ precision must come from the ONNX, so a float32 ONNX is first
converted with ONNX Runtime's float16 converter (float32 inputs and outputs kept, so the runtime feeds
it the same tensors); an ONNX that is already float16 is built as it is. INT8 lives in
tensorrt_int8.py, the optimization profiles (one per batch size) in tensorrt_profiles.py.

An engine only runs on the TensorRT version and GPU that built it, so the sidecar `<engine>.json`
records both (edge_rt.engines.tensorrt refuses a mismatch) with the model metadata read from the ONNX
(engine_sidecar.py).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..detect.model_info import ModelInfo
from ..engines.cuda_runtime import gpu_name, load_cudart
from ..engines.tensorrt_profiles import FRAME_MAX, Profile, engine_profiles
from ..engines.tensorrt_sidecar import sidecar_path
from ..errors import ConfigError, MissingDependencyError, ModelError
from .engine_sidecar import make_sidecar, read_onnx
from .tensorrt_int8 import configure_int8, has_qdq

log = logging.getLogger("edge_rt.exporters.tensorrt")


def _import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependencyError(
            "TensorRT is not installed: pip install 'edge_rt[gpu]' on an x86 GPU box (JetPack ships it on a Jetson)"
        ) from None
    return trt


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

    shape = [int(d) for d in inp.shape]
    profile, profiles = engine_profiles(
        info, onnx_meta, shape, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch, imgsz=imgsz, max_frame=max_frame
    )

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
        if info.graph_preprocess and not has_qdq(trt, network):
            raise ConfigError(
                "INT8 calibration feeds letterboxed tensors, not camera frames: build the ONNX without "
                "--graph-preprocess, or quantize it (Q/DQ) first"
            )
        # TensorRT 10 calibrates with the first profile when none is set for calibration (the smallest batch)
        calibrator = configure_int8(
            trt, cudart, config, network, fp16, calibration_frames, calib_cache, profiles[0], info.stride, str(onnx_path)
        )
    precision = "int8" if int8 else "fp16" if (fp16 or _has_half(trt, network)) else "fp32"
    data_dependent = _data_dependent_layers(trt, network)

    log.info(
        "building %s engine, TensorRT %s on %s, input %s..%s, profiles for batch %s",
        precision,
        version,
        gpu,
        list(profile.min),
        list(profile.max),
        [p.min[0] for p in profiles],
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
        info,
        profile,
        version,
        gpu,
        precision,
        metadata,
        onnx_path.name,
        onnx_meta=onnx_meta,
        profiles=profiles,
        cuda_graph=not data_dependent,
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
