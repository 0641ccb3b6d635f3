"""`edge-rt export --target openvino-*`: an OpenVINO IR (.xml + .bin) in FP32, FP16 or INT8.

The IR comes from our own float ONNX (`ov.convert_model` keeps its metadata_props in the IR's
runtime info, so `edge-rt run --model X.xml` needs no other file). INT8 is NNCF's post-training
quantization, calibrated on frames letterboxed as `cpu-int8` takes them, with the detect head and
every Sigmoid left in float, as Ultralytics' own OpenVINO INT8 export does: NNCF places its
quantizers for OpenVINO's kernels, which measured faster here than OpenVINO reading our QDQ ONNX.
NNCF needs no torch; the export itself does (the float ONNX comes from Ultralytics).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, MissingDependencyError
from ..preprocess import Preprocessor
from .int8 import head_layer_index

log = logging.getLogger("edge_rt.export.openvino")

EXPORT_KEY = ("edge_rt", "export")  # where the IR's runtime info records how it was made


def _import_openvino() -> Any:
    try:
        import openvino as ov
    except ImportError:
        raise MissingDependencyError("OpenVINO is not installed: pip install 'edge_rt[openvino]'") from None
    return ov


def float_scope(model: Any) -> list[str]:
    """The ops NNCF leaves in float: the detect head (the highest `/model.N/`) and every Sigmoid.

    One INT8 scale cannot span box pixels and class probabilities (DESIGN.md's field note on INT8).
    """
    ops = model.get_ordered_ops()
    head = head_layer_index([op.get_friendly_name() for op in ops])
    prefix = f"/model.{head}/" if head is not None else None
    return [
        op.get_friendly_name()
        for op in ops
        if op.get_type_name() == "Sigmoid" or (prefix is not None and op.get_friendly_name().startswith(prefix))
    ]


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
    except ImportError:
        raise MissingDependencyError("INT8 for OpenVINO needs NNCF: pip install 'edge_rt[openvino,train]'") from None
    logging.getLogger("nncf").setLevel(logging.WARNING)  # else a line per op it leaves in float
    scope = float_scope(model)
    log.info("NNCF: quantizing on %d frames, %d ops kept in float (the detect head and Sigmoids)", count, len(scope))
    return nncf.quantize(
        model,
        nncf.Dataset(_Letterboxed(frames, hw, stride)),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=count,
        ignored_scope=nncf.IgnoredScope(names=scope, validate=False),
    )


def write_ir(model: Any, output: Path, fp16: bool) -> Path:
    """Save under temporary names beside `output`, then rename both files: a failed or killed export leaves
    nothing that could pass for its result."""
    ov = _import_openvino()
    if output.suffix.lower() != ".xml":
        raise ConfigError(f"--output {str(output)!r}: an OpenVINO IR is written as NAME.xml (with NAME.bin beside it)")
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
    if precision == "int8":
        if frames is None:
            raise ConfigError("INT8 needs calibration data: --calibration DIR_OF_IMAGES or VIDEO")
        if shape.is_dynamic:
            raise ConfigError("INT8 is calibrated for one input shape: drop --dynamic")
        hw = (shape[2].get_length(), shape[3].get_length())
        model = quantize(model, frames, hw, stride, calibration_count)
        import nncf

        record.update(quantizer=f"nncf {nncf.__version__}", preset="mixed", calibration_frames=calibration_count, float="head+sigmoid")
    model.set_rt_info(repr(record), list(EXPORT_KEY))
    return write_ir(model, output, fp16=precision == "fp16")
