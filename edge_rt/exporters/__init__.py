"""`edge-rt export`: weights -> ONNX (fp32/fp16/int8) or TensorRT engine, with proof of parity.

Profiles in `export/NAME.yaml` hold a deployment target's settings; explicit flags override them.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, EdgeRtError
from ..postprocess import PostprocessSettings
from .verify import ParityReport

log = logging.getLogger("edge_rt.export")

FORMATS = ("onnx", "engine")
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ExportOptions:
    format: str = "onnx"
    precision: str = "fp32"
    imgsz: int = 640
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

    def check(self) -> ExportOptions:
        if self.format not in FORMATS:
            raise ConfigError(f"--format {self.format!r}: choose one of {', '.join(FORMATS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.imgsz < 32 or self.imgsz % 32:
            raise ConfigError(f"--imgsz {self.imgsz}: must be a positive multiple of 32")
        if not 1 <= self.min_batch <= self.max_batch:
            raise ConfigError(f"batch range {self.min_batch}..{self.max_batch}: need 1 <= min <= max")
        if self.opt_batch is not None and not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ConfigError(f"opt_batch {self.opt_batch}: must lie in {self.min_batch}..{self.max_batch}")
        if self.precision == "int8" and self.format == "onnx" and self.dynamic:
            raise ConfigError("INT8 ONNX is calibrated for one input shape: drop --dynamic")
        if self.workspace_gb <= 0:
            raise ConfigError(f"workspace_gb {self.workspace_gb}: must be > 0")
        if self.calibration_frames < 1:
            raise ConfigError(f"calibration_frames {self.calibration_frames}: must be >= 1")
        if not 0 <= self.nms_conf < 1 or not 0 < self.nms_iou <= 1:
            raise ConfigError(f"nms_conf {self.nms_conf} / nms_iou {self.nms_iou}: need 0 <= conf < 1 and 0 < iou <= 1")
        return self


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
                raise ConfigError(f"profile {str(path)!r}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(known))})")
            return data
    available = sorted({p.stem for d in profile_dirs() if d.is_dir() for p in d.glob("*.yaml")})
    raise ConfigError(f"--target {name!r}: no such profile (available: {', '.join(available) or 'none'})")


def resolve_options(target: str | None, overrides: Mapping[str, Any]) -> ExportOptions:
    """Defaults <- profile <- explicit flags (None means 'not given')."""
    options = ExportOptions()
    if target:
        options = replace(options, **load_profile(target))
    given = {k: v for k, v in overrides.items() if v is not None}
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
    verify_frames: list[Any] | None = None,
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
    if not weights.is_file():
        raise ConfigError(f"--weights {str(weights)!r}: no such file")
    if weights.suffix != ".pt":
        raise ConfigError(f"--weights {str(weights)!r}: expected an Ultralytics .pt checkpoint")
    frames = None
    if calibration is not None:
        from .calibration import load_frames

        frames = load_frames(calibration, options.calibration_frames)
    batch = options.max_batch
    nms = (options.nms_conf, options.nms_iou) if options.nms else None
    if options.format == "onnx":
        if options.precision == "int8":
            with tempfile.TemporaryDirectory() as tmp:
                float_onnx = export_onnx(weights, Path(tmp) / "float.onnx", options.imgsz, dynamic=False, batch=batch, nms=nms)
                from .int8 import quantize_int8

                assert frames is not None
                quantize_int8(float_onnx, output, frames)
        else:
            export_onnx(weights, output, options.imgsz, half=options.precision == "fp16", dynamic=options.dynamic, batch=batch, nms=nms)
        if options.graph_preprocess:
            from .graph import add_graph_preprocess

            add_graph_preprocess(output, output)
    else:
        from .tensorrt import build_engine

        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = export_onnx(weights, Path(tmp) / "model.onnx", options.imgsz, dynamic=options.dynamic, batch=batch, nms=nms)
            if options.graph_preprocess:
                from .graph import add_graph_preprocess

                add_graph_preprocess(onnx_path, onnx_path)
            build_engine(
                onnx_path,
                output,
                fp16=options.precision in ("fp16", "int8"),
                int8=options.precision == "int8",
                calibration_frames=frames,
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
        parity = verify(weights, output, options.imgsz, verify_frames)
        log.info("parity: %s", parity.summary())
        if parity.match_rate < min_match:
            raise ParityLost(f"export lost parity: {parity.summary()} (below {min_match:.0%}); the file is at {output}")
    return ExportResult(output, options, parity)


class ParityLost(EdgeRtError):
    exit_code = 7


def verify(weights: Path, exported: Path, imgsz: int, frames: list[Any], settings: PostprocessSettings = PostprocessSettings()) -> ParityReport:
    from .verify import compare, runtime_detector, ultralytics_detector

    device = "tensorrt" if exported.suffix == ".engine" else "cpu"
    return compare(ultralytics_detector(weights, imgsz, settings), runtime_detector(exported, settings, device), frames)
