"""An engine's sidecar JSON (model keys, TensorRT version, GPU): the contract between the builder and the runtime."""

from __future__ import annotations

import ast
import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..detect.model_info import GRAPH_NMS_KEY, GRAPH_PREPROCESS_KEY, _literal
from ..errors import ModelError

# The sidecar keys that become model metadata (each through str(), then the ONNX metadata rules).
MODEL_KEYS = ("names", "imgsz", "stride", "task", "end2end", "batch", GRAPH_PREPROCESS_KEY, GRAPH_NMS_KEY)


def sidecar_path(engine_path: Path) -> Path:
    return engine_path.with_name(engine_path.name + ".json")


def sidecar_metadata(side: Mapping[str, Any]) -> dict[str, str]:
    """The sidecar's model keys as ONNX-style string metadata, so the engine's ModelInfo reads like its ONNX."""
    return {k: str(side[k]) for k in MODEL_KEYS if k in side}


def plan_input_name(side: Mapping[str, Any]) -> str | None:
    """The letterbox-plan input of a graph-preprocess model (`edge_rt_preprocess` metadata), else None."""
    raw = side.get(GRAPH_PREPROCESS_KEY)
    if raw is None:
        return None
    try:
        spec = raw if isinstance(raw, dict) else ast.literal_eval(str(raw))
    except (ValueError, SyntaxError):
        spec = None
    if not isinstance(spec, dict) or not spec.get("plan_input"):
        raise ModelError(f"sidecar key {GRAPH_PREPROCESS_KEY!r} is not readable: {str(raw)[:80]}")
    return str(spec["plan_input"])


def rebuild_command(side: Mapping[str, Any], engine_path: Path) -> str:
    """The `edge-rt export` line that builds this engine again, from what its sidecar records."""
    parts = ["edge-rt", "export", "--weights", str(side.get("weights") or "WEIGHTS.pt"), "--format", "engine"]
    parts += ["--output", str(engine_path)]
    if side.get("profile"):
        parts += ["--target", str(side["profile"])]
    imgsz = side.get("imgsz")
    if isinstance(imgsz, (list, tuple)) and imgsz:
        hw = [int(v) for v in imgsz]
        static_rect = not side.get("dynamic") and len(hw) == 2 and hw[0] != hw[1]
        parts += ["--imgsz", f"{hw[0]}x{hw[1]}" if static_rect else str(max(hw))]
    precision = side.get("precision")
    if precision == "fp16":
        parts.append("--half")
    elif precision == "int8":
        parts += ["--int8", "--calibration", "FRAMES_DIR"]
    if side.get("dynamic"):
        parts.append("--dynamic")
    if side.get("max_batch"):
        parts += ["--max-batch", str(side["max_batch"])]
    if GRAPH_PREPROCESS_KEY in side:
        parts.append("--graph-preprocess")
    if side.get("nms") or GRAPH_NMS_KEY in side:
        parts.append("--nms")
        nms = _literal(str(side[GRAPH_NMS_KEY]), GRAPH_NMS_KEY) if GRAPH_NMS_KEY in side else None
        if isinstance(nms, dict) and "conf" in nms and "iou" in nms:
            parts += ["--nms-conf", f"{float(nms['conf']):g}", "--nms-iou", f"{float(nms['iou']):g}"]
    return " ".join(shlex.quote(p) for p in parts)


def check_sidecar(meta: Mapping[str, Any], trt_version: str, gpu: str, path: Path) -> None:
    """Refuse an engine built elsewhere: TensorRT engines are not portable across versions or GPUs."""
    built_trt, built_gpu = meta.get("tensorrt"), meta.get("gpu")
    again = f"rebuild it here: {rebuild_command(meta, path)}"
    if built_trt and built_trt != trt_version:
        raise ModelError(f"engine {str(path)!r} was built with TensorRT {built_trt}, this machine has {trt_version}; {again}")
    if built_gpu and built_gpu != gpu:
        raise ModelError(f"engine {str(path)!r} was built for GPU {built_gpu!r}, this machine has {gpu!r}; {again}")


def read_sidecar(path: Path) -> dict[str, Any]:
    side = sidecar_path(path)
    if not side.is_file():
        raise ModelError(f"engine {str(path)!r}: missing its sidecar {side.name} (names, imgsz, TensorRT version, GPU)")
    try:
        meta = json.loads(side.read_text())
    except ValueError as exc:
        raise ModelError(f"engine sidecar {str(side)!r} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ModelError(f"engine sidecar {str(side)!r}: expected a JSON object")
    return meta
