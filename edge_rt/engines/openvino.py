"""OpenVINO backend: Intel (and AMD) CPUs, Intel integrated and Arc GPUs, NPUs.

Loads an IR (`.xml` + `.bin`, or the folder Ultralytics exports) or an ONNX. The letterbox stays on
the host (OpenCV, as Ultralytics does), but the uint8 -> float, BGR -> RGB and HWC -> CHW steps move
into the model through OpenVINO's pre-processing: the CPU plugin folds them into the first layer's
input reorder, and the host hands over a quarter of the bytes.

Calls run asynchronously: `submit()` starts a request and returns at once, so the pipeline keeps
`in_flight` of them running (one per stream under the THROUGHPUT hint) while it letterboxes and
publishes others. Plain infer requests, not `AsyncInferQueue`'s callbacks: Ultralytics dropped the
queue after it hung on AMD EPYC runners; requests waited on from one thread have no callback to
deadlock on.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..detect.model_info import ModelInfo, info_from_metadata
from ..errors import ConfigError, EngineError, MissingDependencyError, ModelError
from .base import cache_root, first_line

log = logging.getLogger("edge_rt.engines.openvino")

HINTS = ("latency", "throughput")
# OpenVINO's INFERENCE_PRECISION_HINT: a CPU with AVX-512 BF16 or AMX runs float layers in bf16 unless told f32
PRECISIONS = ("f32", "bf16", "f16")
META_KEYS = ("framework", "edge_rt")  # rt_info sections holding model metadata: ONNX's metadata_props, then ours
_DTYPES = {"f32": "float32", "f16": "float16", "u8": "uint8"}
_CLOSE_WAIT_MS = 5000


def openvino_device(device: str, available: list[str]) -> str:
    """`openvino` -> CPU; `openvino:GPU` / `:NPU` / `:AUTO` / `:GPU.1` as OpenVINO names them; `auto` -> the
    CPU alone where it is the only device, else OpenVINO's AUTO (as Ultralytics picks)."""
    if device == "auto":
        return "CPU" if available == ["CPU"] else "AUTO"
    name = device.partition(":")[2].upper() or "CPU"
    if name.split(":")[0] in ("AUTO", "MULTI", "HETERO"):
        return name
    if not any(d == name or d.startswith(f"{name}.") for d in available):
        hint = {
            "GPU": "an Intel GPU needs its compute runtime (intel-opencl-icd, intel-level-zero-gpu) and /dev/dri/renderD128",
            "NPU": "an Intel NPU needs its driver (intel-driver-compiler-npu, intel-level-zero-npu) and /dev/accel",
        }.get(name.split(".")[0], "check the name")
        raise ConfigError(
            f"--device {device}: OpenVINO finds no {name} here (devices: {', '.join(available) or 'none'}); {hint} (docs/intel.md)"
        )
    return name


def model_files(path: Path) -> tuple[Path, Path | None]:
    """The file OpenVINO reads and, for an IR, its weights: a folder (Ultralytics' `*_openvino_model/`) holds one `.xml`."""
    if path.is_dir():
        xmls = sorted(path.glob("*.xml"))
        if len(xmls) != 1:
            raise ModelError(f"model {str(path)!r}: expected one OpenVINO .xml in the folder, found {len(xmls)}")
        path = xmls[0]
    if path.suffix.lower() == ".xml":
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise ModelError(f"model {str(path)!r}: its weights {weights.name!r} are missing (an IR is the .xml and the .bin beside it)")
        return path, weights
    return path, None


def read_metadata(model: Any, xml: Path) -> dict[str, str]:
    """Names, stride, imgsz, task... as strings, the form ONNX metadata takes: from the IR's runtime info (an ONNX's
    metadata_props land in its `framework` section, edge_rt's export adds an `edge_rt` one), else from the
    `metadata.yaml` Ultralytics writes beside its own OpenVINO export."""
    meta: dict[str, str] = {}
    for section in META_KEYS:
        if model.has_rt_info([section]):
            value = model.get_rt_info([section]).value
            if isinstance(value, Mapping):
                meta.update({str(k): v.astype(str) if hasattr(v, "astype") else str(v) for k, v in value.items()})
    side = xml.parent / "metadata.yaml"
    if not meta and side.is_file():
        import yaml

        try:
            data = yaml.safe_load(side.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ModelError(f"model {str(xml)!r}: {side.name} is not readable YAML ({str(exc).splitlines()[0]})") from None
        if isinstance(data, Mapping):
            meta = {str(k): v if isinstance(v, str) else repr(v) for k, v in data.items()}
    return meta


def export_record(model: Any) -> dict[str, object]:
    """How edge_rt exported this IR (`edge_rt` / `export` in its runtime info); empty for anyone else's."""
    if not model.has_rt_info(["edge_rt", "export"]):
        return {}
    try:
        record = ast.literal_eval(model.get_rt_info(["edge_rt", "export"]).astype(str))
    except (ValueError, SyntaxError):
        return {}
    return record if isinstance(record, dict) else {}


def check_static(target: str, info: ModelInfo, path: Path, device: str) -> None:
    """An NPU compiles for one shape: a dynamic model fails deep in its compiler, so refuse it first."""
    if target.startswith("NPU") and (info.dynamic_shape or info.batch is None):
        raise ConfigError(
            f"--device {device}: the NPU takes static shapes only and {path.name} is dynamic; export a fixed size: "
            "edge-rt export --target openvino-int8 --imgsz 384x640 (without --dynamic)"
        )


def _dims(partial_shape: Any) -> list[int | None]:
    return [d.get_length() if d.is_static else None for d in partial_shape]


def _read_model(core: Any, path: Path) -> tuple[Any, Path]:
    xml, weights = model_files(path)
    try:
        return (core.read_model(str(xml), str(weights)) if weights else core.read_model(str(xml))), xml
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own untyped errors for bad files
        raise ModelError(f"model {str(path)!r}: OpenVINO cannot read it: {first_line(exc)}") from None


def _model_info(model: Any, xml: Path, path: Path) -> ModelInfo:
    """The runtime's facts from the IR's shapes and metadata, with the same checks the ONNX Runtime engine makes."""
    inputs, outputs = model.inputs, model.outputs
    if not outputs:
        raise ModelError(f"model {str(path)!r}: no outputs; not a detection model")
    inp, out = inputs[0], outputs[0]
    in_type = _DTYPES.get(inp.get_element_type().get_type_name())
    if in_type is None:
        raise ModelError(f"model {str(path)!r}: input type {inp.get_element_type()} is not supported (f32, f16, or u8 frames)")
    in_shape, out_shape = _dims(inp.get_partial_shape()), _dims(out.get_partial_shape())
    info = info_from_metadata(read_metadata(model, xml), inp.get_any_name(), in_shape, in_type, out_shape, str(path))
    if (in_type == "uint8") != info.graph_preprocess:
        raise ModelError(f"model {str(path)!r}: uint8 input without edge_rt's letterbox metadata (or the reverse)")
    expected = 2 if info.graph_preprocess else 1
    if len(inputs) != expected:
        raise ModelError(f"model {str(path)!r}: expected {expected} input(s), got {[i.get_any_name() for i in inputs]}")
    return info


def uint8_input(model: Any) -> Any:
    """The host letterboxes into uint8 BGR HWC; OpenVINO converts, swaps channels, scales and transposes."""
    import openvino as ov
    from openvino.preprocess import ColorFormat, PrePostProcessor

    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).scale(255.0)
    return ppp.build()


def _recorded_precision(model: Any, target: str) -> str | None:
    """What the export verified, for a CPU only: the record guards against the CPU's bf16, and an Intel GPU's
    f16 default is the point of the GPU."""
    if not target.startswith("CPU"):
        return None
    return str(export_record(model).get("inference_precision") or "") or None


def compile_config(target: str, hint: str, precision: str | None, threads: int | None) -> dict[str, Any]:
    """The properties a compile gets; precision and threads only where the device takes them (AUTO forwards
    no such settings we could check here)."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": hint.upper()}
    if precision and target.startswith(("CPU", "GPU")):
        config["INFERENCE_PRECISION_HINT"] = precision
    if threads and target.startswith("CPU"):
        config["INFERENCE_NUM_THREADS"] = threads
    return config


def _use_cache(core: Any, cache: Path) -> None:
    try:
        cache.mkdir(parents=True, exist_ok=True)
        core.set_property({"CACHE_DIR": str(cache)})  # an Intel GPU compiles for tens of seconds; a restart reuses it
    except OSError as exc:
        log.warning("no OpenVINO model cache (%s: %s): every start compiles again", cache, exc.strerror)


class _Pending:
    """One running request; `result()` waits for it and copies the output out of the request's buffer."""

    __slots__ = ("_request",)

    def __init__(self, request: Any) -> None:
        self._request = request

    def result(self) -> np.ndarray:
        self._request.wait()
        return np.array(self._request.get_output_tensor(0).data)  # the request's buffer is reused by its next call


class OpenVinoEngine:
    """`device` is `openvino`, `openvino:GPU`... or `auto`; `hint` is OpenVINO's performance hint."""

    def __init__(
        self,
        path: Path,
        device: str = "openvino",
        threads: int | None = None,
        hint: str = "latency",
        cache_dir: Path | None = None,
        host_convert: bool = False,
        precision: str | None = None,
    ) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise MissingDependencyError("OpenVINO is not installed: pip install 'edge_rt[openvino]'") from None
        if hint not in HINTS:
            raise ConfigError(f"--engine-hint {hint!r}: choose one of {', '.join(HINTS)}")
        if precision not in (None, *PRECISIONS):
            raise ConfigError(f"--engine-precision {precision!r}: choose one of auto, {', '.join(PRECISIONS)}")
        if threads is not None and threads < 0:
            raise ConfigError(f"threads must be >= 0, got {threads}")
        core = ov.Core()
        target = openvino_device(device, list(core.available_devices))
        model, xml = _read_model(core, path)
        info = _model_info(model, xml, path)
        check_static(target, info, path, device)
        if not info.graph_preprocess and not host_convert:
            model = uint8_input(model)
            info = replace(info, input_dtype="uint8", input_layout="nhwc")
        config = compile_config(target, hint, precision or _recorded_precision(model, target), threads)
        _use_cache(core, cache_dir or cache_root() / "openvino")
        try:
            self._compiled = core.compile_model(model, target, config)
        except Exception as exc:  # noqa: BLE001 - a plugin's own error, one line
            raise EngineError(f"model {str(path)!r}: OpenVINO could not compile it for {target}: {first_line(exc)}") from None
        optimal = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.in_flight = max(1, optimal) if hint == "throughput" else 1
        self._requests = [self._compiled.create_infer_request() for _ in range(self.in_flight)]
        self._turn = 0
        self.info: ModelInfo = info
        self.device = f"openvino:{target}"
        self.hint = hint
        self.precision = (
            self._compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
            if target.startswith("CPU")
            else config.get("INFERENCE_PRECISION_HINT", "the device's default")
        )
        log.info(
            "loaded %s on OpenVINO %s (%s hint, %d request(s) in flight, %s)", xml.name, target, hint, self.in_flight, self.precision
        )

    def _feeds(self, tensor: np.ndarray, plan: np.ndarray | None) -> dict[int, np.ndarray]:
        if self.info.graph_preprocess:
            if plan is None:
                raise ValueError("this model letterboxes in its graph: infer() needs the plan (preprocess.FramePacker makes it)")
            return {0: tensor, 1: plan}
        return {0: tensor}

    def submit(self, tensor: np.ndarray, plan: np.ndarray | None = None) -> _Pending:
        """Start a call and return at once. Requests are used in turn: the caller keeps at most `in_flight`
        running and collects them in order, so a request is free again when its turn comes back."""
        request = self._requests[self._turn % self.in_flight]
        self._turn += 1
        # share_inputs: no copy; the caller's buffer ring keeps the array untouched until the result is taken.
        request.start_async(self._feeds(np.ascontiguousarray(tensor), plan), share_inputs=True)
        return _Pending(request)

    def infer(self, tensor: np.ndarray, plan: np.ndarray | None = None) -> np.ndarray:
        return self.submit(tensor, plan).result()

    def close(self) -> None:
        """Wait (bounded) for requests still running before the compiled model goes: destroying it under a
        running request is where OpenVINO was seen to hang."""
        for request in getattr(self, "_requests", []):
            try:
                request.wait_for(_CLOSE_WAIT_MS)
            except Exception:  # noqa: BLE001 - a failed request still lets us close
                pass
        self._requests = []
        self._compiled = None

