"""ONNX Runtime backend: CPU, CUDA or the TensorRT execution provider.

On CPU a call is a plain `session.run` on NumPy arrays (zero-copy there). On NVIDIA the inputs go
through I/O binding into device buffers allocated once per input shape, so the only host -> device
copy is the batch itself (uint8 frames for graph-preprocess models), and the output is copied back
once (only (B, K, 6) when NMS is in the graph). Where every shape is fixed, ONNX Runtime captures
the call as a CUDA graph and replays it (one graph per batch shape, `gpu_graph_id`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from ..detect.model_info import ModelInfo, info_from_metadata
from ..errors import ConfigError, EngineError, MissingDependencyError, ModelError
from .base import cache_root, first_line
from .ort_tensorrt import ProviderVersions, RunShape, fallback_hint, read_versions, trt_profile_shapes

log = logging.getLogger("edge_rt.engines.onnxruntime")

_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8"}


def choose_providers(device: str, available: list[str]) -> list[str]:
    """The providers for `device`; `auto` takes CUDA when present (TensorRT EP builds engines at start-up,
    so it is chosen only when asked for)."""
    if device == "auto":
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    wanted = _PROVIDERS[device]
    if wanted[0] not in available:
        raise MissingDependencyError(
            f"--device {device}: ONNX Runtime here has no {wanted[0]} (available: {', '.join(available)}); "
            "install the GPU extra: pip install 'edge_rt[gpu]'"
        )
    return [p for p in wanted if p in available]


def check_active_provider(device: str, requested: list[str], active: list[str], model: str, hint: str = "") -> None:
    """ORT's Python wrapper retries a session whose first provider failed (a TensorRT profile missing, a
    library not found) on the next ones with default options, and says so only on its own log. A run
    that asked for a device must run on it: refuse in one line; with `auto`, say it once."""
    if not requested or not active or active[0] == requested[0]:
        return
    message = (
        f"model {model!r}: ONNX Runtime could not start {requested[0]} and fell back to {active[0]} "
        f"(its own log says why; run with ORT_LOGGING_LEVEL=0 to see it){hint}"
    )
    if device != "auto":
        raise EngineError(f"--device {device}: {message}")
    log.warning("%s: running there", message)


def _load_error(path: Path, exc: Exception) -> ModelError:
    return ModelError(f"model {str(path)!r}: ONNX Runtime cannot load it: {first_line(exc)}")


def default_cache_dir() -> Path:
    """Where the TensorRT provider keeps engines and timing caches, so a restart does not rebuild."""
    return cache_root() / "trt"


@dataclass(frozen=True)
class GraphFacts:
    """What decides the provider options: fixed shapes allow CUDA graphs, a dynamic image input a TensorRT profile."""

    fixed_shapes: bool  # every input and output dimension known before the first call
    cpu_side_inputs: bool  # inputs that become shapes (the letterbox plan): they keep CUDA graphs off
    image_input: str
    image_shape: tuple[object, ...]
    data_dependent: bool = False  # NonZero / NonMaxSuppression inside (NMS in the graph): no CUDA graph can hold them
    graphs_refused: bool = False  # ORT refused the session with CUDA graphs (a node they cannot hold)
    info: ModelInfo | None = None  # a graph-preprocess model's letterbox: its plan input needs a TensorRT profile too

    @property
    def cuda_graph(self) -> bool:
        """ORT captures a call as a CUDA graph only when nothing in it depends on the data: NonZero copies its
        count to pageable host memory mid-call, and a node off the CUDA provider makes ORT refuse the session."""
        return self.fixed_shapes and not self.cpu_side_inputs and not self.data_dependent and not self.graphs_refused


DATA_DEPENDENT_OPS = (b"NonZero", b"NonMaxSuppression")


def has_data_dependent_ops(path: Path) -> bool:
    """Whether the graph holds an op whose output size depends on the data. Read from the file's bytes: op
    types are plain strings in the protobuf, and the runtime does not depend on the onnx package."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return any(op in data for op in DATA_DEPENDENT_OPS)


def provider_options(
    providers: list[str],
    facts: GraphFacts,
    cache_dir: Path,
    max_batch: int,
    imgsz: tuple[int, int] | None = None,
    versions: ProviderVersions | None = None,
) -> list[tuple[str, dict[str, str]]]:
    """Options per provider, spelled out: each line is a default that costs latency when left alone.

    `max_batch` and `imgsz` are what the run will send (its largest batch, its --imgsz): the TensorRT
    provider's profile is fixed when the session is made. `versions` is that provider's build (read_versions).
    """
    out: list[tuple[str, dict[str, str]]] = []
    cuda_graph = facts.cuda_graph and providers[:1] != ["TensorrtExecutionProvider"]  # see trt_cuda_graph_enable
    for p in providers:
        if p == "CUDAExecutionProvider":
            out.append(
                (
                    p,
                    {
                        "device_id": "0",
                        # EXHAUSTIVE (the default) benchmarks every conv at start-up and per new shape: seconds on a Jetson.
                        "cudnn_conv_algo_search": "HEURISTIC",
                        "do_copy_in_default_stream": "1",
                        "enable_cuda_graph": "1" if cuda_graph else "0",
                    },
                )
            )
        elif p == "TensorrtExecutionProvider":
            cache_dir.mkdir(parents=True, exist_ok=True)
            opts = {
                "device_id": "0",
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": str(cache_dir),
                "trt_timing_cache_enable": "True",
                "trt_timing_cache_path": str(cache_dir),
                # FP16 kernels where TensorRT finds them faster, for FP32 models too: as the native builder does
                # (`edge-rt export --target trt`), so one model runs alike on either TensorRT path.
                "trt_fp16_enable": "True",
                "trt_max_workspace_size": str(4 << 30),
                # Off: the provider's inputs are host arrays ORT copies on its own stream (INPUT_COPY), at addresses
                # that a replayed graph would not follow.
                "trt_cuda_graph_enable": "False",
            }
            profile = trt_profile_shapes(facts.image_input, facts.image_shape, facts.info, RunShape(max_batch, imgsz), versions)
            if profile is not None:
                opts.update(profile)
            out.append((p, opts))
        else:
            out.append((p, {}))
    return out


class InputCopy(Enum):
    """How a batch reaches the device before the provider reads it."""

    DEVICE_BUFFER = "device buffer"  # update_inplace into a bound device buffer, then synchronize_inputs
    HOST_ARRAY = "host array"  # bind_cpu_input: ORT copies it to the device on its own stream, inside the run


def input_copy(provider: str) -> InputCopy:
    """The copy that is complete before `provider` (the session's first) reads its inputs.

    `OrtValue.update_inplace` is a plain cudaMemcpy from pageable memory on the legacy stream, which may
    return before the transfer ends; ORT's kernels run on its own non-blocking stream. The CUDA provider's
    Sync() (what `synchronize_inputs` calls) is cudaDeviceSynchronize, so the copy has landed. The
    TensorRT provider does not override Sync(): there `synchronize_inputs` does nothing, so its inputs go
    as host arrays and ORT copies them on the stream the engine then runs on.
    """
    return InputCopy.HOST_ARRAY if provider == "TensorrtExecutionProvider" else InputCopy.DEVICE_BUFFER


class _Binding:
    """Buffers bound once per input shape; a call copies the batch in and the output out.

    With CUDA graphs ONNX Runtime replays kernels on fixed addresses, so the buffers of one shape
    never move, and each shape gets its own graph id.
    """

    def __init__(
        self,
        ort: Any,
        session: Any,
        device: str,
        output_name: str,
        static_out: list[object] | None,
        out_dtype: str,
        cuda_graph: bool,
        copy: InputCopy = InputCopy.DEVICE_BUFFER,
    ) -> None:
        self._ort = ort
        self._out_dtype = np.dtype(out_dtype)
        self._cuda_graph = cuda_graph and copy is InputCopy.DEVICE_BUFFER  # a graph reads fixed input addresses
        self._session = session
        self._device = device  # "cuda" or "cpu" (the CPU form exists so CI runs this code)
        self._output_name = output_name
        self._static_out = static_out
        self.copy = copy
        self._slots: dict[tuple[int, ...], tuple[Any, Any, Any, Any]] = {}

    def _slot(self, name: str, tensor: np.ndarray) -> tuple[Any, Any, Any, Any]:
        slot = self._slots.get(tensor.shape)
        if slot is None:
            ort = self._ort
            binding = self._session.io_binding()
            value = None
            if self.copy is InputCopy.DEVICE_BUFFER:
                value = ort.OrtValue.ortvalue_from_shape_and_type(tensor.shape, tensor.dtype, self._device, 0)
                binding.bind_ortvalue_input(name, value)
            run_options = ort.RunOptions()
            if self._cuda_graph:  # one captured graph per input shape (ONNX Runtime >= 1.17)
                run_options.add_run_config_entry("gpu_graph_id", str(len(self._slots) + 1))
            out_value = None
            if self._static_out is not None:
                shape = [tensor.shape[0], *self._static_out[1:]]
                out_value = ort.OrtValue.ortvalue_from_shape_and_type(shape, self._out_dtype, self._device, 0)
                binding.bind_ortvalue_output(self._output_name, out_value)
            else:
                binding.bind_output(self._output_name, self._device)
            slot = self._slots[tensor.shape] = (value, binding, run_options, out_value)
        return slot

    def run(self, name: str, tensor: np.ndarray, plan_name: str | None, plan: np.ndarray | None) -> np.ndarray:
        value, binding, run_options, _ = self._slot(name, tensor)
        batch = np.ascontiguousarray(tensor)  # held until the run returns: a host-array binding reads it in the run
        if value is None:
            binding.bind_cpu_input(name, batch)  # the one host -> device copy, by ORT on its own stream
        else:
            value.update_inplace(batch)  # the one host -> device copy of the batch
        if plan_name is not None and plan is not None:
            binding.bind_cpu_input(plan_name, plan)  # becomes Resize sizes / Pad pads: read on the host
        if value is not None:
            binding.synchronize_inputs()  # the CUDA provider's Sync(): the update_inplace copy has landed (input_copy)
        self._session.run_with_iobinding(binding, run_options)
        return binding.copy_outputs_to_cpu()[0]  # type: ignore[no-any-return]


class OnnxRuntimeEngine:
    def __init__(
        self,
        path: Path,
        device: str = "auto",
        threads: int | None = None,
        io_binding: bool | None = None,
        cache_dir: Path | None = None,
        max_batch: int = 8,
        imgsz: tuple[int, int] | None = None,
    ) -> None:
        """`max_batch` and `imgsz` are the largest batch and the input size the run will send (the TensorRT
        provider's profile is built for them); `imgsz` None: the model's own."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependencyError("onnxruntime is not installed: pip install 'edge_rt[cpu]' (or [gpu])") from None
        if threads is not None and threads < 0:
            raise ConfigError(f"threads must be >= 0, got {threads}")
        providers = choose_providers(device, ort.get_available_providers())
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        facts = self._facts(ort, path) if providers != ["CPUExecutionProvider"] else GraphFacts(False, False, "images", ())
        cache = cache_dir or default_cache_dir()
        versions = read_versions(ort) if providers[0] == "TensorrtExecutionProvider" else None
        if versions is not None:
            log.info("TensorRT provider: %s", versions.describe())

        def options() -> list[tuple[str, dict[str, str]]]:
            return provider_options(providers, facts, cache, max_batch, imgsz, versions)

        graphs = facts.cuda_graph and versions is None  # the TensorRT provider runs without them (input_copy)
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=options())
            refused = graphs and self._session.get_providers()[0] != providers[0]  # ORT fell back to the next
        except Exception as exc:  # ORT raises its own untyped errors for bad files
            if not graphs:
                raise _load_error(path, exc) from None
            refused = True
        if refused:  # a node CUDA graphs cannot hold: the session again without them, said once
            log.warning("%s: %s refused the session with CUDA graphs; running without them", path.name, providers[0])
            facts = replace(facts, graphs_refused=True)
            try:
                self._session = ort.InferenceSession(str(path), sess_options=opts, providers=options())
            except Exception as exc:  # noqa: BLE001 - as above
                raise _load_error(path, exc) from None
        has_plan = facts.info is not None and facts.info.plan_input is not None
        hint = fallback_hint(versions, has_plan)
        check_active_provider(device, providers, self._session.get_providers(), str(path), hint)
        inputs = self._session.get_inputs()
        out = self._session.get_outputs()[0]
        inp = inputs[0]
        if inp.type not in _DTYPES:
            raise ModelError(f"model {str(path)!r}: input type {inp.type} is not supported (float32, float16, or uint8 frames)")
        meta = self._session.get_modelmeta().custom_metadata_map
        self.info: ModelInfo = info_from_metadata(meta, inp.name, inp.shape, _DTYPES[inp.type], out.shape, str(path))
        if (inp.type == "tensor(uint8)") != self.info.graph_preprocess:
            raise ModelError(f"model {str(path)!r}: uint8 input without edge_rt's letterbox metadata (or the reverse)")
        expected = 2 if self.info.graph_preprocess else 1
        if len(inputs) != expected:
            raise ModelError(f"model {str(path)!r}: expected {expected} input(s), got {[i.name for i in inputs]}")
        self._output_name = out.name
        self.device = self._session.get_providers()[0].replace("ExecutionProvider", "").lower()
        on_gpu = self.device in ("cuda", "tensorrt")
        self._binding: _Binding | None = None
        if io_binding if io_binding is not None else on_gpu:
            static_out = list(out.shape) if all(isinstance(d, int) for d in out.shape[1:]) else None
            out_dtype = _DTYPES.get(out.type, "float32")
            cuda_graph = on_gpu and facts.cuda_graph
            copy = input_copy(self._session.get_providers()[0])
            self._binding = _Binding(ort, self._session, "cuda" if on_gpu else "cpu", out.name, static_out, out_dtype, cuda_graph, copy)
        log.info(
            "loaded %s on %s (providers: %s)%s",
            path.name,
            self.device,
            ", ".join(self._session.get_providers()),
            f", I/O binding ({self._binding.copy.value} in)" if self._binding else "",
        )

    @staticmethod
    def _facts(ort: Any, path: Path) -> GraphFacts:
        """Read shapes without building a session on a GPU provider (that would compile the graph twice)."""
        try:
            probe = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception:
            return GraphFacts(False, False, "images", ())  # the real load below reports the problem
        inputs, outputs = probe.get_inputs(), probe.get_outputs()
        fixed = all(isinstance(d, int) for t in [*inputs, *outputs] for d in t.shape)
        try:
            meta = probe.get_modelmeta().custom_metadata_map
            info = info_from_metadata(meta, inputs[0].name, inputs[0].shape, "float32", outputs[0].shape, str(path))
        except ModelError:
            info = None  # the real load below says what is wrong with it
        return GraphFacts(fixed, len(inputs) > 1, inputs[0].name, tuple(inputs[0].shape), has_data_dependent_ops(path), info=info)

    def infer(self, tensor: np.ndarray, plan: np.ndarray | None = None) -> np.ndarray:
        if self.info.graph_preprocess and plan is None:
            raise ValueError("this model letterboxes in its graph: infer() needs the plan (preprocess.FramePacker makes it)")
        if self._binding is not None:
            return self._binding.run(self.info.input_name, tensor, self.info.plan_input, plan)
        feeds = {self.info.input_name: tensor}
        if self.info.plan_input is not None and plan is not None:
            feeds[self.info.plan_input] = plan
        return self._session.run([self._output_name], feeds)[0]  # type: ignore[no-any-return]

    def close(self) -> None:
        self._binding = None
        self._session = None  # type: ignore[assignment]
