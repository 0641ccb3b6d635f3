"""cuda-python plumbing for the TensorRT backend: error checks, pinned and device buffers, a stream,
an event, and CUDA-graph capture. Imported only by the TensorRT modules, and cuda-python itself only
when one of them is used.

Every `cuda.bindings.runtime` call returns a tuple `(cudaError_t, *results)`; `check` turns a
failure into one ModelError line. Names and signatures checked against cuda-bindings 13.4 (the
docstrings of `cudaHostAlloc(size, flags)`, `cudaStreamBeginCapture(stream, mode)`,
`cudaStreamEndCapture(stream) -> (err, graph)`, `cudaGraphInstantiate(graph, flags) -> (err, exec)`,
`cudaGraphLaunch(exec, stream)`) and the same calls in NVIDIA's TensorRT samples.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import MissingDependencyError, ModelError

log = logging.getLogger("edge_rt.engines.cuda")


def load_cudart() -> Any:
    """`cuda.bindings.runtime` (cuda-python >= 12.6), or the older `cuda.cudart` module."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError:
            raise MissingDependencyError("TensorRT engines need cuda-python: pip install 'edge_rt[gpu]'") from None
    driver, runtime = cudart.cudaDriverGetVersion(), cudart.cudaRuntimeGetVersion()
    if int(driver[0]) == 0 and int(runtime[0]) == 0:
        problem = cuda_mismatch(int(driver[1]), int(runtime[1]))
        if problem is not None:
            raise MissingDependencyError(problem)
    return cudart


def cuda_version(v: int) -> str:
    """12060 -> '12.6' (CUDA's version integers: 1000 * major + 10 * minor)."""
    return f"{v // 1000}.{v % 1000 // 10}"


def cuda_mismatch(driver: int, bindings: int) -> str | None:
    """One line when the NVIDIA driver (cudaDriverGetVersion, e.g. 12060) cannot run cuda-python's bindings.

    `cudaRuntimeGetVersion` in cuda-python answers the CUDA version the bindings were built with (12090 for
    any 12.x wheel), not a runtime on the box; within a major, CUDA's minor-version compatibility runs them
    on an older driver (JetPack 6: 12.6). Only an older driver major fails, every call with
    cudaErrorInsufficientDriver (cuda-python 13 on JetPack 6). A newer driver runs older bindings.
    """
    if driver <= 0 or driver // 1000 >= bindings // 1000:
        return None
    return (
        f"the NVIDIA driver offers CUDA {cuda_version(driver)}, cuda-python is built for CUDA {cuda_version(bindings)}: "
        f"pip install 'cuda-python>={driver // 1000},<{driver // 1000 + 1}' (or update the driver)"
    )


def check(result: Sequence[Any], what: str) -> Any:
    """The call's result (None, one value, or a list of them), or a ModelError naming the call."""
    err, *rest = result
    if int(err) != 0:
        raise ModelError(f"CUDA error in {what}: {getattr(err, 'name', err)}")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


def gpu_name(cudart: Any, device: int = 0) -> str:
    props = check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name
    return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00")


def host_array(ptr: int, dtype: np.dtype[Any] | str, shape: Sequence[int]) -> np.ndarray:
    """A numpy view of `prod(shape)` items at a raw host address (no copy; the caller owns the memory)."""
    dt = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = (ctypes.c_ubyte * (count * dt.itemsize)).from_address(ptr)
    return np.ctypeslib.as_array(raw).view(dt).reshape(tuple(shape))


class PinnedBuffer:
    """Page-locked host memory (`cudaHostAlloc`), so `cudaMemcpyAsync` from/to it is a real async DMA.

    From pageable memory the driver first syncs the stream and stages the data through its own pinned
    buffer (CUDA Runtime API docs, "API synchronization behavior").
    """

    def __init__(self, cudart: Any, nbytes: int) -> None:
        self._cudart = cudart
        self.nbytes = max(int(nbytes), 1)
        self.ptr = int(check(cudart.cudaHostAlloc(self.nbytes, cudart.cudaHostAllocDefault), "cudaHostAlloc"))

    def view(self, dtype: np.dtype[Any] | str, shape: Sequence[int]) -> np.ndarray:
        need = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if need > self.nbytes:
            raise ModelError(f"internal: pinned view of {need} bytes in a {self.nbytes}-byte buffer")
        return host_array(self.ptr, dtype, shape)

    def free(self) -> None:
        if self.ptr:
            self._cudart.cudaFreeHost(self.ptr)
            self.ptr = 0


class DeviceBuffer:
    """`cudaMalloc` memory (256-byte aligned, as TensorRT requires of tensor addresses)."""

    def __init__(self, cudart: Any, nbytes: int, stream: Stream | None = None) -> None:
        self._cudart = cudart
        self.nbytes = max(int(nbytes), 1)
        self.ptr = int(check(cudart.cudaMalloc(self.nbytes), "cudaMalloc"))
        if stream is not None:  # zeroed once: never uninitialised memory (later, padded rows hold an earlier batch's)
            check(cudart.cudaMemsetAsync(self.ptr, 0, self.nbytes, stream.handle), "cudaMemsetAsync")

    def free(self) -> None:
        if self.ptr:
            self._cudart.cudaFree(self.ptr)
            self.ptr = 0


class Stream:
    """One non-blocking stream: it never serialises with the legacy default stream of other libraries."""

    def __init__(self, cudart: Any) -> None:
        self._cudart = cudart
        self.handle = check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")
        self.ptr = int(self.handle)  # what TensorRT's Python API takes (`stream_handle: int`)

    def to_device(self, dst: int, src: int, nbytes: int) -> None:
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(self._cudart.cudaMemcpyAsync(dst, src, nbytes, kind, self.handle), "cudaMemcpyAsync (to device)")

    def to_host(self, dst: int, src: int, nbytes: int) -> None:
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check(self._cudart.cudaMemcpyAsync(dst, src, nbytes, kind, self.handle), "cudaMemcpyAsync (to host)")

    def synchronize(self) -> None:
        check(self._cudart.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def destroy(self) -> None:
        if self.handle is not None:
            self._cudart.cudaStreamDestroy(self.handle)
            self.handle = None


class Event:
    """Marks "the output has landed in host memory"; waiting on it blocks the thread (no spin on a Jetson's CPU)."""

    def __init__(self, cudart: Any) -> None:
        self._cudart = cudart
        flags = cudart.cudaEventDisableTiming | cudart.cudaEventBlockingSync
        self.handle = check(cudart.cudaEventCreateWithFlags(flags), "cudaEventCreateWithFlags")

    def record(self, stream: Stream) -> None:
        check(self._cudart.cudaEventRecord(self.handle, stream.handle), "cudaEventRecord")

    def wait(self) -> None:
        check(self._cudart.cudaEventSynchronize(self.handle), "cudaEventSynchronize")

    def destroy(self) -> None:
        if self.handle is not None:
            self._cudart.cudaEventDestroy(self.handle)
            self.handle = None


class Graph:
    """An instantiated CUDA graph of one `execute_async_v3`, replayed with `cudaGraphLaunch`."""

    def __init__(self, cudart: Any, exec_handle: Any) -> None:
        self._cudart = cudart
        self._exec = exec_handle

    def launch(self, stream: Stream) -> None:
        check(self._cudart.cudaGraphLaunch(self._exec, stream.handle), "cudaGraphLaunch")

    def destroy(self) -> None:
        if self._exec is not None:
            self._cudart.cudaGraphExecDestroy(self._exec)
            self._exec = None


def capture(cudart: Any, stream: Stream, enqueue: Callable[[], bool]) -> Graph | str:
    """Capture `enqueue()` (an `execute_async_v3` on `stream`) into a graph, or say why it could not be.

    Nothing runs during capture, so the caller launches the graph for this call's results. Follows
    trtexec (TensorRT samples/common/sampleDevice.h, TrtCudaGraph): capture after one normal run,
    thread-local capture mode (a global-mode capture makes other threads' legacy-stream calls fail,
    roboflow/inference#2866), and on failure end the capture, drop the partial graph and clear the
    sticky error with cudaGetLastError. TensorRT returns false from enqueue when the engine does work
    that cannot be captured (host syncs for data-dependent shapes, e.g. NonZero or NMS:
    NVIDIA/TensorRT#4194; some plugins).
    """
    mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
    (err,) = cudart.cudaStreamBeginCapture(stream.handle, mode)
    if int(err) != 0:
        cudart.cudaGetLastError()
        return f"cudaStreamBeginCapture: {getattr(err, 'name', err)}"
    try:
        ok = bool(enqueue())
        reason = "" if ok else "TensorRT refused to enqueue under stream capture"
    except Exception as exc:  # noqa: BLE001 - whatever TensorRT raised, the capture must still be ended
        ok, reason = False, f"enqueue raised {type(exc).__name__}: {exc}"
    err, graph = cudart.cudaStreamEndCapture(stream.handle)
    if not ok or int(err) != 0 or graph is None:
        if graph is not None and int(err) == 0:
            cudart.cudaGraphDestroy(graph)
        cudart.cudaGetLastError()  # a failed capture leaves a sticky error behind
        return reason or f"cudaStreamEndCapture: {getattr(err, 'name', err)}"
    try:
        err, exec_handle = cudart.cudaGraphInstantiate(graph, 0)
    finally:
        cudart.cudaGraphDestroy(graph)  # the executable graph keeps what it needs
    if int(err) != 0:
        cudart.cudaGetLastError()
        return f"cudaGraphInstantiate: {getattr(err, 'name', err)}"
    return Graph(cudart, exec_handle)
