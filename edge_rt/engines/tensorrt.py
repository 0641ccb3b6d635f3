"""Native TensorRT backend (TensorRT 10/11 tensor-name API), imported only when a .engine is chosen.

An engine only runs on the TensorRT version and GPU it was built for, so it travels with a sidecar
JSON (`model.engine.json`): the model metadata plus `tensorrt` and `gpu`. A mismatch is refused
with one line that names the `edge-rt export` command that rebuilds it, instead of a crash.

A call: pick the optimization profile for the batch (the builder makes one per batch size), copy
the batch into pinned memory and from there, async, into device buffers kept per (profile, shape),
run, copy back only the detection output, and wait on an event. From the second call with the
same batch, shape and letterbox plan on, the run is a replayed CUDA graph. Each profile has its own
execution context (all drawing on one activation buffer: `tensorrt_memory.py`), so switching batch sizes never re-selects a profile on a context: TensorRT
defers "layer resource updates" after setOptimizationProfileAsync to the next enqueue
(NvInferRuntime.h), which a captured graph would not replay.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..detect.model_info import ModelInfo, info_from_metadata
from ..errors import ConfigError, MissingDependencyError, ModelError
from .cuda_runtime import DeviceBuffer, Event, Graph, PinnedBuffer, Stream, capture, gpu_name, load_cudart
from .tensorrt_memory import SharedActivations
from .tensorrt_select import ProfileRange, check_run_fits, choose_profile, plan_problem
from .tensorrt_sidecar import check_sidecar, plan_input_name, read_sidecar, rebuild_command, sidecar_metadata, sidecar_path

log = logging.getLogger("edge_rt.engines.tensorrt")

__all__ = [
    "ProfileRange",
    "TensorRTEngine",
    "check_run_fits",
    "check_sidecar",
    "choose_profile",
    "gpu_name",
    "plan_problem",
    "rebuild_command",
    "sidecar_path",
]


@dataclass(frozen=True)
class SlotKey:
    """What a CUDA graph and its buffers are specific to: the profile, the run shape and the plan."""

    profile: int
    shape: tuple[int, ...]
    plan: tuple[int, ...] | None = None


@dataclass(eq=False)
class _Slot:
    key: SlotKey
    host_in: PinnedBuffer
    dev_in: DeviceBuffer
    outputs: dict[str, DeviceBuffer]
    host_out: PinnedBuffer
    out_shape: tuple[int, ...]
    runs: int = 0
    graph: Graph | None = None

    def free(self) -> None:
        if self.graph is not None:
            self.graph.destroy()
            self.graph = None
        self.host_in.free()
        self.host_out.free()
        for buf in (self.dev_in, *self.outputs.values()):
            buf.free()


@dataclass(eq=False)
class _Context:
    index: int
    trt: Any  # IExecutionContext bound to this one profile
    plan_host: PinnedBuffer | None = None
    plan_device: DeviceBuffer | None = None
    plan_dtype: str = "int64"
    state: SlotKey | None = None  # what the context was last configured for


def _import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependencyError("TensorRT is not installed: pip install 'edge_rt[gpu]' (JetPack ships it)") from None
    return trt


class TensorRTEngine:
    def __init__(
        self,
        path: Path,
        device: str = "auto",
        cuda_graphs: bool = True,
        max_slots: int = 16,
        max_batch: int | None = None,
        imgsz: tuple[int, int] | None = None,
    ) -> None:
        """`max_batch` and `imgsz` are what the run will send: refused here, in one line, when no profile takes them."""
        if device not in ("auto", "tensorrt", "cuda"):
            raise ConfigError(f"--device {device}: a TensorRT engine runs on the GPU; use --device tensorrt or auto")
        trt = self._trt = _import_tensorrt()
        cudart = self._cudart = load_cudart()
        path = Path(path)
        meta = read_sidecar(path)
        check_sidecar(meta, str(trt.__version__), gpu_name(cudart), path)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)  # kept: an engine must not outlive its runtime
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            again = rebuild_command(meta, path)
            raise ModelError(f"engine {str(path)!r}: TensorRT {trt.__version__} cannot deserialise it; rebuild it here: {again}")
        self._engine = engine
        self._lock = threading.Lock()
        self._contexts: dict[int, _Context] = {}
        self._slots: OrderedDict[SlotKey, _Slot] = OrderedDict()
        self._max_slots = max(1, max_slots)
        self._graphs = cuda_graphs and meta.get("cuda_graph", True) is not False  # False: built with NMS/NonZero

        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        plan = plan_input_name(meta)
        image = [n for n in inputs if n != plan]
        if len(image) != 1 or not self._outputs or (plan is not None and plan not in inputs):
            want = f"an image input and {plan!r}" if plan else "one image input"
            raise ModelError(f"engine {str(path)!r}: expected {want} and a detection output, got {names}")
        self._image, self._plan = image[0], plan
        self._det = "output0" if "output0" in self._outputs else self._outputs[0]  # Ultralytics' detection output
        self._dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        in_shape = [int(d) for d in engine.get_tensor_shape(self._image)]
        out_shape = [int(d) for d in engine.get_tensor_shape(self._det)]
        self._profiles = self._profile_ranges(in_shape)
        self.max_batch = max(p.max_batch for p in self._profiles)
        self._plan_on_host = False
        self._plan_ranges: dict[int, tuple[list[int], list[int]]] = {}
        if plan is not None:
            # A plan that feeds Resize `sizes` / Pad `pads` is a shape tensor (is_shape_inference_io):
            # it lives on the host, and its values are read at enqueue (IExecutionContext::setTensorAddress).
            self._plan_on_host = engine.get_tensor_location(plan) == trt.TensorLocation.HOST
            if engine.is_shape_inference_io(plan):
                for p in self._profiles:  # note the argument order: (profile_index, name), unlike the shapes'
                    lo, _, hi = engine.get_tensor_profile_values(p.index, plan)
                    self._plan_ranges[p.index] = ([int(v) for v in lo], [int(v) for v in hi])
        dtype = self._dtypes[self._image]
        self.info: ModelInfo = info_from_metadata(
            sidecar_metadata(meta),
            self._image,
            [d if d >= 0 else None for d in in_shape],
            dtype.name,
            [d if d >= 0 else None for d in out_shape],
            str(path),
        )
        if plan is not None and self._plan_ranges:  # a graph-preprocess engine letterboxes up to its plan's new_h/new_w
            self._profiles = [replace(p, max_hw=(hi[0], hi[1])) for p in self._profiles for hi in [self._plan_ranges[p.index][1]]]
        check_run_fits(self.info, self._profiles, max_batch, imgsz, meta, path)
        self.device = "tensorrt"
        self._name = path.name
        self._stream, self._done = Stream(cudart), Event(cudart)
        self._activations = SharedActivations(trt, engine, lambda n: DeviceBuffer(cudart, n))
        log.info(
            "loaded %s: TensorRT %s on %s, batch profiles %s, CUDA graphs %s",
            path.name,
            trt.__version__,
            meta.get("gpu"),
            [(p.min_batch, p.max_batch) for p in self._profiles],
            "on" if self._graphs else "off",
        )

    def _profile_ranges(self, in_shape: Sequence[int]) -> list[ProfileRange]:
        if all(d >= 0 for d in in_shape):
            return [ProfileRange(0, in_shape[0], in_shape[0])]
        ranges = []
        for p in range(self._engine.num_optimization_profiles):
            lo, _, hi = self._engine.get_tensor_profile_shape(self._image, p)  # (name, profile_index) -> min, opt, max
            sized = len(in_shape) == 4 and in_shape[1] == 3 and (in_shape[2] < 0 or in_shape[3] < 0)  # [B, 3, H, W]
            ranges.append(ProfileRange(p, int(lo[0]), int(hi[0]), (int(hi[2]), int(hi[3])) if sized else None))
        return ranges

    @property
    def graph_count(self) -> int:
        """How many (batch, shape, plan) calls replay a captured CUDA graph."""
        return sum(s.graph is not None for s in self._slots.values())

    # --- the call -----------------------------------------------------------------------------

    def infer(self, tensor: np.ndarray, plan: np.ndarray | None = None) -> np.ndarray:
        x = np.asarray(tensor)
        if x.ndim != 4:
            raise ModelError(f"engine {self._name}: expected a 4-D batch, got shape {list(x.shape)}")
        plan_t = self._plan_tuple(plan)
        with self._lock:
            profile, run_batch = choose_profile(x.shape[0], self._profiles)
            key = SlotKey(profile.index, (run_batch, *x.shape[1:]), plan_t)
            ctx = self._context(profile.index)
            slot = self._slots.get(key)
            fresh = slot is None or ctx.state != key
            if fresh:
                slot = self._configure(ctx, key, slot)
            assert slot is not None
            self._slots.move_to_end(key)
            n = x.shape[0]
            in_view = slot.host_in.view(self._dtypes[self._image], key.shape)
            np.copyto(in_view[:n], x, casting="same_kind")
            self._stage_plan(ctx, plan_t)
            self._stream.to_device(slot.dev_in.ptr, slot.host_in.ptr, in_view[:n].nbytes)  # only the real rows
            self._execute(ctx, slot, fresh)
            out_view = slot.host_out.view(self._dtypes[self._det], slot.out_shape)
            self._stream.to_host(slot.host_out.ptr, slot.outputs[self._det].ptr, out_view[:n].nbytes)
            self._done.record(self._stream)
            self._done.wait()
            slot.runs += 1
            return out_view[:n].copy()  # the pinned buffer is reused by the next call

    def _plan_tuple(self, plan: np.ndarray | None) -> tuple[int, ...] | None:
        if self._plan is None:
            return None
        if plan is None:
            raise ModelError(f"engine {self._name} letterboxes inside its graph: pass the plan for input {self._plan!r}")
        values = np.asarray(plan).reshape(-1)
        if values.size != 6:
            raise ModelError(f"letterbox plan must have 6 values (new_h, new_w, top, left, bottom, right), got {values.size}")
        return tuple(int(v) for v in values)

    def _context(self, index: int) -> _Context:
        ctx = self._contexts.get(index)
        if ctx is not None:
            return ctx
        engine = self._engine
        context = self._activations.context()  # one activation buffer for every profile's context
        if context is None:
            raise ModelError(f"engine {self._name}: TensorRT could not create an execution context (GPU memory?)")
        if index or engine.num_optimization_profiles > 1:
            try:  # once per context; synchronised on the same stream the context enqueues on
                context.set_optimization_profile_async(index, self._stream.ptr)
            except RuntimeError as exc:
                raise ModelError(f"engine {self._name}: cannot select optimization profile {index}: {exc}") from None
            self._stream.synchronize()
        ctx = _Context(index, context)
        if self._plan is not None:
            ctx.plan_dtype = self._dtypes[self._plan].name  # int64 from the ONNX; int32 if the parser narrowed it
            nbytes = 6 * self._dtypes[self._plan].itemsize
            ctx.plan_host = PinnedBuffer(self._cudart, nbytes)  # fixed address: set once per configure
            if not self._plan_on_host:
                ctx.plan_device = DeviceBuffer(self._cudart, nbytes)
        self._contexts[index] = ctx
        return ctx

    def _stage_plan(self, ctx: _Context, plan: tuple[int, ...] | None) -> None:
        if plan is None or ctx.plan_host is None:
            return
        ctx.plan_host.view(ctx.plan_dtype, (6,))[:] = plan
        if ctx.plan_device is not None:
            self._stream.to_device(ctx.plan_device.ptr, ctx.plan_host.ptr, ctx.plan_host.nbytes)

    def _configure(self, ctx: _Context, key: SlotKey, slot: _Slot | None) -> _Slot:
        """Set shapes, the plan and addresses on the context for `key`; allocate the slot's buffers once."""
        c = ctx.trt
        ctx.state = None  # until every step below has succeeded
        if not c.set_input_shape(self._image, key.shape):
            p = next(q for q in self._profiles if q.index == key.profile)
            raise ModelError(
                f"engine {self._name} rejects input shape {list(key.shape)} (outside its optimisation profile for batch "
                f"{p.min_batch}..{p.max_batch}; see the TensorRT log)"
            )
        if self._plan is not None and key.plan is not None and ctx.plan_host is not None:
            if key.profile in self._plan_ranges:
                problem = plan_problem(key.plan, *self._plan_ranges[key.profile])
                if problem:
                    raise ModelError(f"engine {self._name}: {problem}")
            self._stage_plan(ctx, key.plan)  # shape inference below reads the plan's values
            where = ctx.plan_host.ptr if ctx.plan_device is None else ctx.plan_device.ptr
            if not c.set_tensor_address(self._plan, where):
                raise ModelError(f"engine {self._name}: TensorRT refused the address of input {self._plan!r}")
        shapes = {n: tuple(int(d) for d in c.get_tensor_shape(n)) for n in self._outputs}
        dynamic = [n for n, s in shapes.items() if any(d < 0 for d in s)]
        if dynamic:
            raise ModelError(
                f"engine {self._name}: output {dynamic[0]!r} has a data-dependent shape {list(shapes[dynamic[0]])}; "
                "export the model with a fixed-size output (Ultralytics nms=True pads to max_det)"
            )
        if slot is None:
            slot = self._new_slot(key, shapes)
        for name, ptr in [(self._image, slot.dev_in.ptr)] + [(n, b.ptr) for n, b in slot.outputs.items()]:
            if not c.set_tensor_address(name, ptr):
                raise ModelError(f"engine {self._name}: TensorRT refused the address of tensor {name!r}")
        ctx.state = key
        return slot

    def _new_slot(self, key: SlotKey, shapes: Mapping[str, tuple[int, ...]]) -> _Slot:
        while len(self._slots) >= self._max_slots:  # the least recently used shape goes, with its graph
            old_key, old = self._slots.popitem(last=False)
            self._stream.synchronize()
            old.free()
            for ctx in self._contexts.values():
                if ctx.state == old_key:
                    ctx.state = None  # its addresses point at freed memory: configure again before use
        cudart = self._cudart
        nbytes = {n: int(np.prod(s)) * self._dtypes[n].itemsize for n, s in shapes.items()}
        nbytes[self._image] = int(np.prod(key.shape)) * self._dtypes[self._image].itemsize
        made: list[PinnedBuffer | DeviceBuffer] = []
        try:
            host_in = PinnedBuffer(cudart, nbytes[self._image])
            made.append(host_in)
            # Zeroed once; padded rows of a partial batch then hold an earlier batch's rows, whose outputs are dropped.
            dev_in = DeviceBuffer(cudart, nbytes[self._image], self._stream)
            made.append(dev_in)
            outputs = {}
            for n in shapes:
                outputs[n] = DeviceBuffer(cudart, nbytes[n])
                made.append(outputs[n])
            host_out = PinnedBuffer(cudart, nbytes[self._det])  # only the detection output comes back
        except Exception:
            for buf in made:
                buf.free()
            raise
        slot = self._slots[key] = _Slot(key, host_in, dev_in, outputs, host_out, shapes[self._det])
        return slot

    def _execute(self, ctx: _Context, slot: _Slot, fresh: bool) -> None:
        """Replay the slot's graph, capture one (second call of a key, context unchanged), or just enqueue."""
        if slot.graph is not None and not fresh:
            slot.graph.launch(self._stream)
            return
        if self._graphs and not fresh and slot.runs >= 1:
            graph = capture(self._cudart, self._stream, lambda: ctx.trt.execute_async_v3(self._stream.ptr))
            if isinstance(graph, Graph):
                slot.graph = graph
                graph.launch(self._stream)  # nothing ran during capture
                return
            self._graphs = False
            log.warning("%s: CUDA graph capture failed (%s); running every call with execute_async_v3", self._name, graph)
        if not ctx.trt.execute_async_v3(self._stream.ptr):
            raise ModelError(f"engine {self._name}: TensorRT execute_async_v3 failed (see the TensorRT log)")

    def close(self) -> None:
        with self._lock:
            if getattr(self, "_stream", None) is None or self._stream.handle is None:
                return
            try:
                self._stream.synchronize()
            except ModelError:
                pass  # a failed run is reported already; still free what can be freed
            for slot in self._slots.values():
                slot.free()
            self._slots.clear()
            for ctx in self._contexts.values():
                for buf in (ctx.plan_host, ctx.plan_device):
                    if buf is not None:
                        buf.free()
            self._contexts.clear()  # contexts go before the engine, and before the memory they run in
            self._activations.free()
            self._done.destroy()
            self._stream.destroy()
            self._engine = None
