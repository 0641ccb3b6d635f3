"""`edge-rt export`: weights -> ONNX (fp32/fp16/int8), an OpenVINO IR or a TensorRT engine, with proof of parity.

Profiles in `export/NAME.yaml` hold a deployment target's settings; explicit flags override them.

May import: errors, ops/, detect/, engines/. A tool (it needs torch): the runtime never imports it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..detect.postprocess import PostprocessSettings
from ..errors import ConfigError, EdgeRtError
from .verify import ParityReport

if TYPE_CHECKING:
    from .calibration import CalibrationFrames

log = logging.getLogger("edge_rt.export")

FORMATS = ("onnx", "engine", "openvino")
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ExportOptions:
    format: str = "onnx"
    precision: str = "fp32"
    imgsz: int | tuple[int, int] = 640  # square, or (height, width): a static 16:9 model at (384, 640)
    dynamic: bool = False
    min_batch: int = 1
    opt_batch: int | None = None
    max_batch: int = 1
    workspace_gb: float = 4.0
    calibration_frames: int = 64
    # GPU path: the letterbox (uint8 frames in) and NMS ((B, 300, 6) out) inside the graph.
    graph_preprocess: bool = False
    nms: bool = False
    nms_conf: float = 0.25
    nms_iou: float = 0.7
    description: str = ""

    @property
    def hw(self) -> tuple[int, int]:
        """(height, width) of the model input."""
        return (self.imgsz, self.imgsz) if isinstance(self.imgsz, int) else (int(self.imgsz[0]), int(self.imgsz[1]))

    def check(self) -> ExportOptions:
        if self.format not in FORMATS:
            raise ConfigError(f"--format {self.format!r}: choose one of {', '.join(FORMATS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        imgsz = parse_imgsz(self.imgsz)
        if any(v < 32 or v % 32 for v in ((imgsz, imgsz) if isinstance(imgsz, int) else imgsz)):
            raise ConfigError(f"--imgsz {imgsz_text(imgsz)}: each side must be a positive multiple of 32")
        if not 1 <= self.min_batch <= self.max_batch:
            raise ConfigError(f"batch range {self.min_batch}..{self.max_batch}: need 1 <= min <= max")
        if self.opt_batch is not None and not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ConfigError(f"opt_batch {self.opt_batch}: must lie in {self.min_batch}..{self.max_batch}")
        if self.precision == "int8" and self.format in ("onnx", "openvino") and self.dynamic:
            raise ConfigError(f"INT8 {'ONNX' if self.format == 'onnx' else 'OpenVINO'} is calibrated for one input shape: drop --dynamic")
        if self.format == "openvino" and (self.graph_preprocess or self.nms):
            raise ConfigError(
                "--graph-preprocess / --nms are for the GPU paths; an OpenVINO IR takes uint8 frames through OpenVINO's own pre-processing"
            )
        if self.workspace_gb <= 0:
            raise ConfigError(f"workspace_gb {self.workspace_gb}: must be > 0")
        if self.calibration_frames < 1:
            raise ConfigError(f"calibration_frames {self.calibration_frames}: must be >= 1")
        from .calibration import MIN_CALIBRATION_FRAMES

        if self.precision == "int8" and self.calibration_frames < MIN_CALIBRATION_FRAMES:
            raise ConfigError(
                f"--calibration-frames {self.calibration_frames}: INT8 needs at least {MIN_CALIBRATION_FRAMES} "
                "(ranges from fewer frames are not worth trusting)"
            )
        if not 0 <= self.nms_conf < 1 or not 0 < self.nms_iou <= 1:
            raise ConfigError(f"nms_conf {self.nms_conf} / nms_iou {self.nms_iou}: need 0 <= conf < 1 and 0 < iou <= 1")
        return replace(self, imgsz=imgsz) if imgsz != self.imgsz else self


def parse_imgsz(value: object) -> int | tuple[int, int]:
    """640, "640", "384x640" (height x width, as Ultralytics' imgsz=[h, w]) or [384, 640]; a square stays an int."""
    hw: tuple[int, int] | None = None
    if isinstance(value, bool):
        hw = None
    elif isinstance(value, int):
        return value
    elif isinstance(value, str):
        parts = value.lower().replace(" ", "").split("x")
        if len(parts) in (1, 2) and all(p.isdigit() for p in parts):
            hw = (int(parts[0]), int(parts[-1]))
    elif (
        isinstance(value, (list, tuple))
        and len(value) in (1, 2)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        hw = (int(value[0]), int(value[-1]))
    if hw is None:
        raise ConfigError(f"imgsz {value!r}: give one size (640) or height x width (384x640)")
    return hw[0] if hw[0] == hw[1] else hw


def imgsz_text(imgsz: int | tuple[int, int]) -> str:
    return str(imgsz) if isinstance(imgsz, int) else f"{imgsz[0]}x{imgsz[1]}"


def profile_dirs() -> list[Path]:
    """`./export` first (a user's own profiles), then the ones that ship with the repository."""
    return [Path.cwd() / "export", Path(__file__).resolve().parents[2] / "export"]


def load_profile(name: str) -> dict[str, Any]:
    import yaml

    candidates = [Path(name)] if name.endswith((".yaml", ".yml")) else [d / f"{name}.yaml" for d in profile_dirs()]
    for path in candidates:
        if path.is_file():
            data = yaml.safe_load(path.read_text()) or {}
            if not isinstance(data, dict):
                raise ConfigError(f"profile {str(path)!r}: expected a mapping")
            known = {f.name for f in fields(ExportOptions)}
            unknown = set(data) - known
            if unknown:
                raise ConfigError(
                    f"profile {str(path)!r}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(known))})"
                )
            return data
    available = sorted({p.stem for d in profile_dirs() if d.is_dir() for p in d.glob("*.yaml")})
    raise ConfigError(f"--target {name!r}: no such profile (available: {', '.join(available) or 'none'})")


def resolve_options(target: str | None, overrides: Mapping[str, Any]) -> ExportOptions:
    """Defaults <- profile <- explicit flags (None means 'not given')."""
    options = ExportOptions()
    if target:
        options = replace(options, **load_profile(target))
    given = {k: v for k, v in overrides.items() if v is not None}
    if "imgsz" in given:
        given["imgsz"] = parse_imgsz(given["imgsz"])
    return replace(options, **given).check()


@dataclass(frozen=True)
class ExportResult:
    path: Path
    options: ExportOptions
    parity: ParityReport | None = None


def export(
    weights: Path,
    output: Path,
    options: ExportOptions,
    calibration: Path | None = None,
    verify_frames: Iterable[Any] | None = None,
    min_match: float = 0.95,
    timing_cache: Path | None = None,
    target: str | None = None,
) -> ExportResult:
    """Export, then (with verify_frames) compare the export with the original weights on those frames.

    `target` names the --target profile `options` were resolved from; an engine's sidecar records it
    with the weights, so an engine refused elsewhere prints the command that rebuilds it.
    """
    from .onnx import export_onnx

    if options.precision == "int8" and calibration is None:
        raise ConfigError("INT8 needs calibration data: --calibration DIR_OF_IMAGES or VIDEO")
    if options.format == "openvino":
        from .openvino import check_ir_output

        check_ir_output(output)  # before a minute of calibration, not after
    if not weights.is_file():
        raise ConfigError(f"--weights {str(weights)!r}: no such file")
    if weights.suffix != ".pt":
        raise ConfigError(f"--weights {str(weights)!r}: expected an Ultralytics .pt checkpoint")
    frames: CalibrationFrames | None = None
    if calibration is not None:
        from .calibration import CalibrationFrames

        frames = CalibrationFrames(calibration, options.calibration_frames).checked()  # one line now, not after the float export
    batch = options.max_batch
    nms = (options.nms_conf, options.nms_iou) if options.nms else None
    if options.format == "onnx":
        _export_onnx_file(weights, output, options, frames, batch, nms)
    elif options.format == "openvino":
        from .openvino import export_openvino

        with tempfile.TemporaryDirectory(prefix="edge-rt-export-") as tmp:
            float_onnx = export_onnx(weights, Path(tmp) / "float.onnx", options.imgsz, dynamic=options.dynamic, batch=batch)
            export_openvino(float_onnx, output, options.precision, frames, options.calibration_frames)
    else:
        from .tensorrt import build_engine

        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = export_onnx(
                weights, Path(tmp) / "model.onnx", options.imgsz, dynamic=options.dynamic, batch=batch, nms=nms
            )
            if options.graph_preprocess:
                from .graph import add_graph_preprocess

                add_graph_preprocess(onnx_path, onnx_path)
            build_engine(
                onnx_path,
                output,
                fp16=options.precision in ("fp16", "int8"),
                int8=options.precision == "int8",
                calibration_frames=list(frames) if frames is not None else None,
                min_batch=options.min_batch if options.dynamic else batch,
                opt_batch=(options.opt_batch or options.max_batch) if options.dynamic else batch,
                max_batch=batch,
                workspace_gb=options.workspace_gb,
                timing_cache=timing_cache,
                # what only export() knows for the sidecar's rebuild command; the build records precision,
                # dynamic, max batch, graph preprocess and NMS itself, from the ONNX it builds
                metadata={"weights": str(weights), **({"profile": target} if target else {})},
            )
    log.info("exported %s (%s, %s)", output, options.format, options.precision)
    parity = None
    if verify_frames:
        parity = verify(weights, output, options.hw, verify_frames)
        log.info("parity: %s", parity.summary())
        if parity.match_rate < min_match:
            raise ParityLost(f"export lost parity: {parity.summary()} (below {min_match:.0%}); the file is at {output}")
    return ExportResult(output, options, parity)


class ParityLost(EdgeRtError):
    exit_code = 7


def _export_onnx_file(
    weights: Path,
    output: Path,
    options: ExportOptions,
    frames: CalibrationFrames | None,
    batch: int,
    nms: tuple[float, float] | None,
) -> None:
    """Write the ONNX under a temporary name beside `output` and rename it at the very end.

    A stale file at `output` is removed first: an export that fails, runs out of memory or is killed
    leaves nothing there that could pass for its result (only a `.partial` file, when killed).
    """
    from .onnx import export_onnx

    output.parent.mkdir(parents=True, exist_ok=True)
    if output.exists():
        log.info("removing the previous %s first", output)
        output.unlink()
    staged = output.with_name(f".{output.name}.partial")
    try:
        if options.precision == "int8":
            from .int8 import quantize_int8

            if frames is None:
                raise ConfigError("INT8 needs calibration data: --calibration DIR_OF_IMAGES or VIDEO")
            with tempfile.TemporaryDirectory(prefix="edge-rt-export-") as tmp:
                float_onnx = export_onnx(weights, Path(tmp) / "float.onnx", options.imgsz, dynamic=False, batch=batch, nms=nms)
                quantize_int8(float_onnx, staged, frames)
        else:
            export_onnx(
                weights, staged, options.imgsz, half=options.precision == "fp16", dynamic=options.dynamic, batch=batch, nms=nms
            )
        if options.graph_preprocess:
            from .graph import add_graph_preprocess

            add_graph_preprocess(staged, staged)
        os.replace(staged, output)
    except MemoryError:
        from .int8_calibrate import CalibrationOutOfMemory

        raise CalibrationOutOfMemory(f"export ran out of memory; nothing was written to {output}") from None
    finally:
        staged.unlink(missing_ok=True)


def verify(
    weights: Path,
    exported: Path,
    imgsz: int | tuple[int, int],
    frames: Iterable[Any],
    settings: PostprocessSettings = PostprocessSettings(),
) -> ParityReport:
    from .verify import compare, runtime_detector, ultralytics_detector

    device = "tensorrt" if exported.suffix == ".engine" else "cpu"
    return compare(ultralytics_detector(weights, imgsz, settings), runtime_detector(exported, settings, device), frames)
