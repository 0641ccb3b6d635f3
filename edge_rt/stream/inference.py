"""The engine stage: one call at a time, or several in flight where the backend runs them side by side.

An OpenVINO CPU under the THROUGHPUT hint runs one request per stream; a single synchronous call
would leave the other streams idle. Backends that can overlap calls say how many (`in_flight`) and
offer `submit()`; the pipeline starts that many and collects them in submission order, so messages
leave in the order frames came. The watchdog reads how long the oldest call has been running.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..detect.batching import Batch
from ..detect.preprocess import Prepared
from ..engines.base import Engine
from ..errors import EngineError


@dataclass(frozen=True, eq=False)
class Job:
    """A preprocessed batch on its way to the engine."""

    batch: Batch
    prepared: Prepared
    pre_start_ns: int
    pre_end_ns: int


@dataclass(frozen=True, eq=False)
class Inferred:
    """A batch's raw engine output."""

    job: Job
    output: np.ndarray
    inf_start_ns: int
    inf_end_ns: int


class Pending(Protocol):
    def result(self) -> np.ndarray: ...


@runtime_checkable
class OverlappingEngine(Protocol):
    """An engine that runs `in_flight` calls at once; `submit` returns before the call ends."""

    in_flight: int

    def submit(self, tensor: np.ndarray, plan: np.ndarray | None = None) -> Pending: ...


@dataclass(frozen=True, eq=False)
class Started:
    """A call in flight: its job, the handle to wait on, when it began."""

    job: Job
    pending: Pending
    start_ns: int
    start_mono: float
    shape: tuple[int, ...]


def in_flight(engine: Engine) -> int:
    """How many calls the pipeline keeps running: 1 unless the backend overlaps them."""
    return max(1, int(engine.in_flight)) if isinstance(engine, OverlappingEngine) else 1


class InferenceStage:
    """Runs jobs through the engine and keeps the watchdog's clock: the first call with a new input shape
    may build a TensorRT engine or tune kernels (dynamic batch, letterbox sizes), so it gets ten times the bound."""

    def __init__(self, engine: Engine, timeout_s: float) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        self.depth = in_flight(engine)
        self.since: float | None = None  # time.monotonic() when the call being waited on began
        self.bound = timeout_s
        self._shapes_seen: set[tuple[int, ...]] = set()

    def busy_s(self) -> float:
        """How long the call being waited on has run so far (0 when none)."""
        since = self.since
        return 0.0 if since is None else time.monotonic() - since

    def overdue(self, now: float) -> float | None:
        """Seconds the call has run, once past its bound; None while within it."""
        since, bound = self.since, self.bound
        return now - since if since is not None and now - since > bound else None

    def _arm(self, shape: tuple[int, ...], start_mono: float) -> None:
        self.since, self.bound = start_mono, self.timeout_s * (1 if shape in self._shapes_seen else 10)

    def run(self, job: Job) -> Inferred:
        """One call, start to end, on this thread."""
        shape = tuple(job.prepared.tensor.shape)
        start_ns = time.perf_counter_ns()
        self._arm(shape, time.monotonic())
        try:
            output = self.engine.infer(job.prepared.tensor, job.prepared.plan)
        except Exception as exc:  # noqa: BLE001 - any engine failure ends the run with one line
            raise self._failed(job, exc) from exc
        finally:
            self.since = None
        self._shapes_seen.add(shape)
        return Inferred(job, output, start_ns, time.perf_counter_ns())

    def submit(self, job: Job) -> Started:
        """Start a call and return at once (an OverlappingEngine only); `collect` waits for it."""
        engine = self.engine
        assert isinstance(engine, OverlappingEngine)
        start_ns, start_mono = time.perf_counter_ns(), time.monotonic()
        try:
            pending = engine.submit(job.prepared.tensor, job.prepared.plan)
        except Exception as exc:  # noqa: BLE001 - as above
            raise self._failed(job, exc) from exc
        return Started(job, pending, start_ns, start_mono, tuple(job.prepared.tensor.shape))

    def collect(self, started: Started) -> Inferred:
        """Wait for a call's output; calls are collected in the order they were started."""
        self._arm(started.shape, started.start_mono)
        try:
            output = started.pending.result()
        except Exception as exc:  # noqa: BLE001 - as above
            raise self._failed(started.job, exc) from exc
        finally:
            self.since = None
        self._shapes_seen.add(started.shape)
        return Inferred(started.job, output, started.start_ns, time.perf_counter_ns())

    def _failed(self, job: Job, exc: Exception) -> EngineError:
        return EngineError(
            f"engine ({self.engine.device}) failed on a batch of {len(job.batch.frames)}: {type(exc).__name__}: {exc}"
        )
