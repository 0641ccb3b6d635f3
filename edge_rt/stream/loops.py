"""The threads before publishing: prepare (batch + preprocess) and infer, and the one-item queues between them.

While batch k is in the engine, batch k+1 is being prepared and batch k-1 published. The queues hold one
item and a ticket lets the batcher form the next batch only once the engine took the previous one, so it
is formed while the engine works (overlap) but never a whole inference ahead (stale frames).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from ..detect.batching import Batcher
from ..detect.preprocess import FramePacker, Preprocessor
from .inference import InferenceStage, Job, Started

DONE = object()  # end-of-stream marker between the pipeline's threads


class StageLoops:
    """The prepare and infer loops; the publishing thread reads `to_publish`. `guard` runs a loop so that
    its failure stops the pipeline (the pipeline's own `_guard`); `errors` is the pipeline's list."""

    def __init__(
        self,
        batcher: Batcher,
        preprocessor: Preprocessor | FramePacker,
        inference: InferenceStage,
        stop: threading.Event,
        errors: list[BaseException],
        guard: Callable[[Callable[[], None]], None],
    ) -> None:
        self.batcher = batcher
        self.preprocessor = preprocessor
        self.inference = inference
        self._stop = stop
        self._errors = errors
        self._guard = guard
        self.to_engine: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._ticket = threading.Semaphore(1)  # one batch formed ahead of the engine, never more
        self.to_publish: queue.Queue[Any] = queue.Queue(maxsize=1)

    def put(self, q: queue.Queue[Any], item: Any) -> None:
        while True:
            if self._errors:
                raise RuntimeError("pipeline stopped after an error in another stage")
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def drain_and_close(self, publishing: bool) -> None:
        """Unblock every stage; what was already inferred is still published unless publishing failed."""
        for q in (self.to_engine, self.to_publish) if publishing else (self.to_engine,):
            try:
                while True:
                    q.get_nowait()
            except queue.Empty:
                pass
            try:
                q.put_nowait(DONE)
            except queue.Full:
                pass
        if not publishing:
            try:
                self.to_publish.put(DONE, timeout=2.0)  # behind the batch in flight, if any
            except queue.Full:
                pass

    def prepare_loop(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._ticket.acquire(timeout=0.1):
                    continue
                batch = self.batcher.next_batch(timeout_s=0.1, stop=self._stop)
                if batch is None:
                    self._ticket.release()
                    if self.batcher.finished():
                        break
                    continue
                t0 = time.perf_counter_ns()
                prepared = self.preprocessor([f.image for f in batch.frames])
                self.put(self.to_engine, Job(batch, prepared, t0, time.perf_counter_ns()))
        finally:
            if not self._errors:
                self.put(self.to_engine, DONE)

    def infer_loop(self) -> None:
        if self.inference.depth > 1:
            self._overlapped_infer_loop()
            return
        while True:
            job = self.to_engine.get()
            self._ticket.release()
            if job is DONE:
                self.put(self.to_publish, DONE)
                return
            self.put(self.to_publish, self.inference.run(job))

    def _overlapped_infer_loop(self) -> None:
        """Several calls in flight (OpenVINO's streams): this thread starts them, a second collects them in order.
        A slot is taken before a job, so no batch waits here while the engine is full: it stays in the one-item
        queue, and the ticket keeps the batcher from forming another (no stale frames)."""
        running: queue.Queue[Started | object] = queue.Queue()  # holds at most depth items: the slots bound it
        slots = threading.Semaphore(self.inference.depth)
        threading.Thread(
            target=self._guard, args=(partial(self._collect_loop, running, slots),), name="edge_rt-collect", daemon=True
        ).start()
        try:
            while True:
                while not slots.acquire(timeout=0.1):
                    if self._errors:
                        return
                job = self.to_engine.get()
                self._ticket.release()
                if job is DONE:
                    return
                running.put(self.inference.submit(job))
        finally:
            running.put(DONE)  # after the calls in flight: the collector ends once they are out

    def _collect_loop(self, running: queue.Queue[Started | object], slots: threading.Semaphore) -> None:
        while True:
            started = running.get()
            if not isinstance(started, Started):
                self.put(self.to_publish, DONE)
                return
            inferred = self.inference.collect(started)
            slots.release()
            self.put(self.to_publish, inferred)
