"""`edge-rt export --target openvino-*`: an OpenVINO IR (.xml + .bin) in FP32, FP16 or INT8.

The IR comes from our own float ONNX (`ov.convert_model` keeps its metadata_props in the IR's
runtime info, so `edge-rt run --model X.xml` needs no other file). INT8 is NNCF's post-training
quantization, calibrated on frames letterboxed as `cpu-int8` takes them, with each head branch's
last conv, DFL and the sigmoid in float (`int8.float_nodes`' "head-outputs"): NNCF places its
quantizers for OpenVINO's kernels, which runs faster than OpenVINO reading the QDQ ONNX. Ultralytics' own OpenVINO INT8 export means
to keep the head in float too, but on a YOLOv8s here its IR held quantizers inside the head and
found 83% of the .pt's boxes; this one 99%. NNCF needs no torch; the export does (Ultralytics
writes the float ONNX).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..detect.preprocess import Preprocessor
from ..errors import ConfigError, MissingDependencyError
from .int8 import float_nodes

# Float: each head branch's last conv, DFL, the sigmoid and the stem conv; the head's inner convs are INT8. Measured on a
# YOLOv8s at 384x640 (docs/intel.md): 1.19x the frames/s of Ultralytics' own OpenVINO INT8 export, 98.9% of the .pt's
# boxes found, 8.2% extra; the INT8 ONNX's default (the stride-8 class branch float too) found 98.7% with 6.8% extra
# at 0.87x: on OpenVINO those convs cost more than on ONNX Runtime.
KEEP_FLOAT = "head-outputs"
_ONNX_TYPES = {"Convolution": "Conv"}  # float_nodes finds the stem by its ONNX op type

log = logging.getLogger("edge_rt.export.openvino")

EXPORT_KEY = ("edge_rt", "export")  # where the IR's runtime info records how it was made


def _import_openvino() -> Any:
    try:
        import openvino as ov
    except ImportError:
        raise MissingDependencyError("OpenVINO is not installed: pip install 'edge_rt[openvino]'") from None
    return ov


def float_scope(model: Any, keep: str = KEEP_FLOAT) -> list[str]:
    """The ops NNCF leaves in float, by the INT8 ONNX's rules (`int8.float_nodes`): OpenVINO keeps the ONNX node
    names, so one definition of the head's layers serves both INT8 paths."""
    shim = [
        SimpleNamespace(name=op.get_friendly_name(), op_type=_ONNX_TYPES.get(op.get_type_name(), op.get_type_name()), input=(), output=())
        for op in model.get_ordered_ops()
    ]
    return float_nodes(shim, keep, float_stem=True)


class _Letterboxed:
    """Calibration frames letterboxed to float NCHW as the runtime feeds a float model; re-iterable (NNCF
    takes more than one pass), one decoded frame at a time, so memory does not grow with the frame count."""

    def __init__(self, frames: Iterable[np.ndarray], hw: tuple[int, int], stride: int) -> None:
        self._frames = frames
        self._pre = Preprocessor(hw, stride, auto=False, ring=1)

    def __iter__(self) -> Iterator[np.ndarray]:
        for im in self._frames:
            yield self._pre([im]).tensor.copy()  # NNCF may keep a sample while it reads the next


def quantize(model: Any, frames: Iterable[np.ndarray], hw: tuple[int, int], stride: int, count: int) -> Any:
    """NNCF post-training quantization, MIXED preset (symmetric weights, asymmetric activations), every frame used."""
    try:
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet
    except ImportError:
        raise MissingDependencyError("INT8 for OpenVINO needs NNCF: pip install 'edge_rt[openvino,train]'") from None
    logging.getLogger("nncf").setLevel(logging.WARNING)  # else a line per op it leaves in float
    scope = float_scope(model)
    log.info("NNCF: quantizing on %d frames, %d ops kept in float", count, len(scope))
    return nncf.quantize(
        model,
        nncf.Dataset(_Letterboxed(frames, hw, stride)),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=count,
        ignored_scope=nncf.IgnoredScope(names=scope, validate=False),
        fast_bias_correction=False,  # the full correction: every box of the .pt found against 96.5%, 30 s more per export
        # min/max over all frames, not NNCF's default mean of per-frame extremes: that clips the few large
        # activations a YOLO relies on (here 93.9% of the .pt's boxes found against 90.4%, as percentile ranges
        # cost the INT8 ONNX: docs/benchmarks/int8.md)
        advanced_parameters=AdvancedQuantizationParameters(activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX),
    )


def check_ir_output(output: Path) -> None:
    if output.suffix.lower() != ".xml":
        raise ConfigError(f"--output {str(output)!r}: an OpenVINO IR is written as NAME.xml (with NAME.bin beside it)")


def write_ir(model: Any, output: Path, fp16: bool) -> Path:
    """Save under temporary names beside `output`, then rename both files: a failed or killed export leaves
    nothing that could pass for its result."""
    ov = _import_openvino()
    check_ir_output(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staged = output.with_name(f".{output.stem}.partial.xml")
    try:
        ov.save_model(model, str(staged), compress_to_fp16=fp16)
        os.replace(staged.with_suffix(".bin"), output.with_suffix(".bin"))
        os.replace(staged, output)
    finally:
        staged.unlink(missing_ok=True)
        staged.with_suffix(".bin").unlink(missing_ok=True)
    return output


def export_openvino(
    float_onnx: Path,
    output: Path,
    precision: str,
    frames: Iterable[np.ndarray] | None,
    calibration_count: int,
    stride: int = 32,
) -> Path:
    """The float ONNX as an IR at `precision`; INT8 needs `frames`."""
    ov = _import_openvino()
    model = ov.convert_model(str(float_onnx))
    shape = model.input(0).get_partial_shape()
    record: dict[str, object] = {"format": "openvino", "precision": precision, "openvino": ov.__version__.split("-")[0]}
    if precision in ("fp32", "int8"):
        # float layers in f32 where the CPU would take bf16 (AVX-512 BF16, AMX): as verified. In bf16 the INT8
        # IR's boxes drift past the threshold (15% extra boxes against 6%); `--engine-precision bf16` trades that.
        record["inference_precision"] = "f32"
    if precision == "int8":
        if frames is None:
            raise ConfigError("INT8 needs calibration data: --calibration DIR_OF_IMAGES or VIDEO")
        if shape.is_dynamic:
            raise ConfigError("INT8 is calibrated for one input shape: drop --dynamic")
        hw = (shape[2].get_length(), shape[3].get_length())
        model = quantize(model, frames, hw, stride, calibration_count)
        import nncf

        record.update(quantizer=f"nncf {nncf.__version__}", preset="mixed", ranges="minmax", calibration_frames=calibration_count, float=KEEP_FLOAT)
    model.set_rt_info(repr(record), list(EXPORT_KEY))
    return write_ir(model, output, fp16=precision == "fp16")
