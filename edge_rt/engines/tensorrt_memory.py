"""One activation buffer for all of an engine's execution contexts.

The engine has a context per batch profile (1, 2, 4, 8), and TensorRT gives each context its own
activation memory unless told otherwise: about 1.9x one context's for those four profiles, on an
8 GB Orin that shares the memory with the CPU. Our calls run one at a time, on one stream, each
waited for (`TensorRTEngine.infer` holds a lock), so no two contexts ever need their activations at
once: they can all draw on one buffer of the largest size, as TensorRT allows with user-managed
memory (`ExecutionContextAllocationStrategy.USER_MANAGED`, TensorRT 10).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Buffer(Protocol):
    ptr: int
    nbytes: int

    def free(self) -> None: ...


def activation_bytes(engine: Any) -> int:
    """What the hungriest profile needs (TensorRT 10.1 added the 64-bit `_v2`; 10.0 has the plain one)."""
    size = getattr(engine, "device_memory_size_v2", None)
    return int(size if size is not None else engine.device_memory_size)


def attach(context: Any, buffer: Buffer) -> None:
    setter = getattr(context, "set_device_memory", None)  # (memory, size) since TensorRT 10.1
    if setter is not None:
        setter(buffer.ptr, buffer.nbytes)
    else:
        context.device_memory = buffer.ptr


class SharedActivations:
    """Creates the engine's contexts; with several profiles they share one buffer, made on first use."""

    def __init__(self, trt: Any, engine: Any, allocate: Callable[[int], Buffer]) -> None:
        self._trt, self._engine, self._allocate = trt, engine, allocate
        self.buffer: Buffer | None = None

    @property
    def shared(self) -> bool:
        return self._engine.num_optimization_profiles > 1 and hasattr(self._trt, "ExecutionContextAllocationStrategy")

    def context(self) -> Any:
        """A new execution context (None when TensorRT cannot make one: out of GPU memory)."""
        if not self.shared:
            return self._engine.create_execution_context()
        context = self._engine.create_execution_context(self._trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        if context is None:
            return None
        if self.buffer is None:
            self.buffer = self._allocate(activation_bytes(self._engine))
        attach(context, self.buffer)
        return context

    def free(self) -> None:
        """After every context that uses the buffer is gone."""
        if self.buffer is not None:
            self.buffer.free()
            self.buffer = None
