"""What a TensorRT build reads of its ONNX and records beside the engine (`<engine>.json`).

The runtime (edge_rt.engines.tensorrt) reads the sidecar back instead of the ONNX: the model keys as
the ONNX has them, and the build facts it refuses a mismatch on (TensorRT version, GPU) or needs to
name the rebuild command (precision, batch range, profiles, graph letterbox and NMS).
"""

from __future__ import annotations

import ast
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..detect.model_info import GRAPH_NMS_KEY, GRAPH_PREPROCESS_KEY, ModelInfo, info_from_metadata
from ..engines.tensorrt_profiles import Profile, batch_profiles
from ..engines.tensorrt_sidecar import plan_input_name
from ..errors import MissingDependencyError, ModelError


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
    # The in-graph letterbox and NMS travel as the ONNX has them: the NMS thresholds and batch limit
    # are what `runner.check_graph_nms` / `resolve_batch` enforce for the engine too.
    graph = {k: onnx_meta[k] for k in (GRAPH_PREPROCESS_KEY, GRAPH_NMS_KEY) if k in onnx_meta}
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
