"""INT8 for CPU boxes: ONNX Runtime static quantization with the YOLO head kept in float.

Quantizing the detect head (its output convolutions, DFL, the class sigmoid) wipes out the class
scores: one INT8 scale cannot span box pixels and probabilities. So only the backbone and neck
are quantized; the head and everything after it stay float32.

Activation ranges come from `int8_calibrate` (one frame's activations in memory at a time), then
`quantize_static` writes the model from those ranges through its calibration cache.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ModelError
from .dfl import last_axis_dfl

log = logging.getLogger("edge_rt.export.int8")
_LAYER = re.compile(r"^/model\.(\d+)/")

KEEP_FLOAT = (
    "head",
    "head+feeders",
    "head-outputs",
    "head-cls",
    "head-cls1",
    "head-cls-p3",
)  # which layers stay float (see float_nodes)
# The head's inner conv + SiLU of each box/class branch (cv2.i.0, cv2.i.1, cv3.i.0, cv3.i.1): ordinary
# feature convs; the branch's last conv (.2), DFL, sigmoid and the concatenation are what INT8 breaks.
_HEAD_INNER = re.compile(r"^/model\.\d+/(?:one2one_)?cv[23]\.\d+/(?:one2one_)?cv[23]\.\d+\.[01]/")
_HEAD_BOX_INNER = re.compile(r"^/model\.\d+/(?:one2one_)?cv2\.\d+/(?:one2one_)?cv2\.\d+\.[01]/")  # the box branch only
_HEAD_CLS_FIRST = re.compile(r"^/model\.\d+/(?:one2one_)?cv3\.\d+/(?:one2one_)?cv3\.\d+\.0/")  # the class branch's first conv
_HEAD_CLS_COARSE = re.compile(
    r"^/model\.\d+/(?:one2one_)?cv3\.[1-9]/(?:one2one_)?cv3\.\d+\.[01]/"
)  # class branch, strides 16, 32
FORMATS = ("qdq", "qoperator")


@dataclass(frozen=True)
class Int8Settings:
    """How the model is quantized: the variants `python -m edge_rt.bench.int8_variants` compares.

    The defaults won by measurement (README, "INT8 on a CPU"; a YOLOv8s at 384x640 on this 2-core
    AVX-512 VNNI CPU, 100 held-out 720p frames, boxes against Ultralytics on the .pt):
    - min/max ranges, not percentile: the 99.999th percentile clips the few large activations a
      YOLO relies on (88% of boxes found against 98% with min/max), and min/max is one pass;
    - keep_float "head-cls-p3": the box branch's inner convs and the class branch's at strides 16
      and 32 are INT8; the class branch at stride 8 (two thirds of the class convs' time: 4.3 of
      6.7 ms), each branch's last conv and DFL stay float: 19.0 ms against 20.6 ms for the whole
      class branch float ("head-cls") with the same boxes (97.2% found, 0.8% extra); quantizing the
      stride-8 class branch's first conv too ("head-cls1", 18.0 ms) lifts class scores (5.9% extra),
      and the whole class branch ("head-outputs") 10% extra;
    - QDQ, not QOperator: the same speed (ORT fuses the QDQ pairs into the same kernels) and the
      format other runtimes read; per-channel weights: the same speed as per-tensor, fewer extras.
    """

    quant_format: str = "qdq"
    per_channel: bool = True
    method: str = "minmax"
    keep_float: str = "head-cls-p3"
    float_stem: bool = True  # the first conv stays float (except with keep_float "head")

    def check(self) -> Int8Settings:
        from .int8_calibrate import METHODS

        for value, allowed, what in (
            (self.quant_format, FORMATS, "format"),
            (self.method, METHODS, "calibration method"),
            (self.keep_float, KEEP_FLOAT, "keep_float"),
        ):
            if value not in allowed:
                raise ConfigError(f"INT8 {what} {value!r}: choose one of {', '.join(allowed)}")
        return self


def head_layer_index(node_names: Sequence[str]) -> int | None:
    """Ultralytics names nodes `/model.N/...`; the detect head is the highest N."""
    found = [int(m.group(1)) for m in (_LAYER.match(n) for n in node_names) if m]
    return max(found) if found else None


def _layer(name: str) -> int | None:
    m = _LAYER.match(name)
    return int(m.group(1)) if m else None


def _quantized_head_node(name: str, keep: str) -> bool:
    if keep == "head-outputs":
        return bool(_HEAD_INNER.match(name))
    if keep == "head-cls":
        return bool(_HEAD_BOX_INNER.match(name))
    if keep == "head-cls1":
        return bool(_HEAD_BOX_INNER.match(name) or _HEAD_CLS_FIRST.match(name))
    if keep == "head-cls-p3":
        return bool(_HEAD_BOX_INNER.match(name) or _HEAD_CLS_COARSE.match(name))
    return False


def float_nodes(graph_nodes: Sequence[Any], keep: str = "head+feeders", float_stem: bool = True) -> list[str]:
    """Nodes to keep in float (the default is Int8Settings.keep_float): the head and what follows it and, with "head+feeders", also the layers
    that feed the head and the stem conv; with "head-outputs", the stem conv and only the head's last
    conv of each branch and what follows them; with "head-cls", the stem conv, the whole class branch
    and the box branch's last conv; "head-cls1" also quantizes the class branch's first conv.
    `float_stem=False` quantizes the stem conv too. Everything else is quantized, activations included: leaving
    SiLU (Sigmoid, Mul) in float wraps every conv in dequantize/quantize pairs and makes INT8 slower
    than float.

    Measured on the demo model (60 held-out frames, box match at IoU 0.5 against float): head alone
    float 94%; plus stem and head-feeding layers 97%, with a smaller confidence error.
    """
    head = head_layer_index([n.name for n in graph_nodes])
    if head is None:
        raise ModelError("cannot find the YOLO head in this ONNX (no /model.N/ node names); export it with edge-rt export")
    producer = {out: _layer(n.name) for n in graph_nodes for out in n.output}
    feeding = {
        producer[i]
        for n in graph_nodes
        if _layer(n.name) == head
        for i in n.input
        if producer.get(i) is not None and producer[i] != head
    }
    first_conv = next((n.name for n in graph_nodes if n.op_type == "Conv"), None)
    keep_nodes = []
    for node in graph_nodes:
        layer = _layer(node.name)
        if layer == head and _quantized_head_node(node.name, keep):
            continue
        if layer is None or layer >= head:
            keep_nodes.append(node.name)
        elif keep == "head+feeders" and layer in feeding or float_stem and keep != "head" and node.name == first_conv:
            keep_nodes.append(node.name)
    return keep_nodes


@contextmanager
def _root_quiet() -> Iterator[None]:
    root = logging.getLogger()
    before = root.level
    root.setLevel(max(logging.WARNING, before))
    try:
        yield
    finally:
        root.setLevel(before)


def _static_info(float_onnx: Path) -> tuple[Any, dict[str, str]]:
    import onnx

    from ..detect.model_info import info_from_metadata

    model = onnx.load(str(float_onnx), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    inp, out = model.graph.input[0], model.graph.output[0]
    dims = [d.dim_value or None for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_value or None for d in out.type.tensor_type.shape.dim]
    info = info_from_metadata(meta, inp.name, dims, "float32", out_dims, str(float_onnx))
    if info.dynamic_shape:
        raise ModelError("INT8: quantize a static-shape export (dynamic height/width cannot be calibrated for one size)")
    return info, meta


class Int8Quantizer:
    """Calibrate once, then write one or more INT8 variants from the same ranges (the variant study
    uses that; an export writes one)."""

    def __init__(self, float_onnx: Path, work: Path) -> None:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.info, self.meta = _static_info(float_onnx)
        self.work = work
        self.prepped = work / "prepped.onnx"
        quant_pre_process(str(float_onnx), str(self.prepped), skip_symbolic_shape=True)
        self._caches: dict[str, tuple[Path, Any]] = {}
        self._ranges: Any = None  # int8_calibrate.ActivationRanges, shared by the methods
        self.frames_seen = 0

    def calibrate(self, frames: Iterable[np.ndarray], method: str) -> None:
        from .int8_calibrate import calibrate

        if method not in self._caches:
            info = self.info
            cache, cal, self._ranges = calibrate(
                self.prepped, frames, self.work, info.imgsz, info.stride, info.batch or 1, method, self._ranges
            )
            self._caches[method] = (cache, cal)
            self.frames_seen = self._ranges.frames

    def _quantize(self, output: Path, settings: Int8Settings, cache: Path, cal: Any, exclude: list[str]) -> None:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        quantize_static(
            str(self.prepped),
            str(output),
            None,
            quant_format=QuantFormat.QDQ if settings.quant_format == "qdq" else QuantFormat.QOperator,
            per_channel=settings.per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=cal,
            calibration_cache_path=str(cache),
        )

    def write(self, output: Path, settings: Int8Settings) -> Path:
        import onnx

        if settings.method not in self._caches:
            raise ModelError(f"INT8: calibrate with {settings.method!r} before writing")
        cache, cal = self._caches[settings.method]
        exclude = float_nodes(onnx.load(str(self.prepped)).graph.node, settings.keep_float, settings.float_stem)
        with _root_quiet():  # the quantizer logs a line per copied bias on the root logger
            self._quantize(output, settings, cache, cal, exclude)
        quantized = onnx.load(str(output))
        del quantized.metadata_props[:]
        for key, value in self.meta.items():
            quantized.metadata_props.add(key=key, value=value)
        quantized.metadata_props.add(key="edge_rt_precision", value="int8")
        quantized.metadata_props.add(
            key="edge_rt_int8",
            value=repr(
                {
                    "format": settings.quant_format,
                    "per_channel": settings.per_channel,
                    "method": settings.method,
                    "keep_float": settings.keep_float,
                    "float_stem": settings.float_stem,
                    "frames": self.frames_seen,
                }
            ),
        )
        last_axis_dfl(quantized)  # the DFL stays float; its softmax is faster over the last axis (dfl.py)
        onnx.save(quantized, str(output))
        return output


def quantize_int8(float_onnx: Path, output: Path, frames: Iterable[np.ndarray], settings: Int8Settings = Int8Settings()) -> Path:
    """Static INT8 calibrated on `frames` (re-iterable: one pass per statistic); metadata kept for the runtime."""
    settings.check()
    with tempfile.TemporaryDirectory(prefix="edge-rt-int8-") as tmp:
        q = Int8Quantizer(float_onnx, Path(tmp))
        q.calibrate(frames, settings.method)
        return q.write(output, settings)
