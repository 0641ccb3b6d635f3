"""`edge-rt frigate --bench`: round trips as Frigate's detector processes see them, one and several at once.

The server runs here on a temporary ipc endpoint; each client is a process of its own, as Frigate's
detector processes are, built like Frigate 0.17's `ZmqIpcDetector` (`frigate/detectors/plugins/zmq_ipc.py`)
in what decides latency: a REQ socket with 200 ms send/receive timeouts and linger 0, the handshake
before any frame, a new socket and a new handshake after a timeout. A round trip is send -> answer
decoded; a timeout is counted, not timed. Runs with different client counts are interleaved, so a
machine that slows down during the bench slows every configuration alike.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..frigate import DetectSettings, FrigateServer, ModelHost, ModelRunner, ServerSettings, ServerThread, StoreSettings

WARMUP = 5  # round trips per client not counted


@dataclass(frozen=True)
class BenchSettings:
    clients: tuple[int, ...] = (1, 4)
    seconds: float = 10.0
    rounds: int = 2
    input_tensor: str = "nhwc"  # Frigate's model.input_tensor
    input_dtype: str = "int"  # Frigate's model.input_dtype: int (uint8) or float (/255)
    pixel_format: str = "rgb"
    timeout_ms: int = 200  # Frigate's request_timeout_ms


@dataclass(frozen=True)
class BenchRun:
    clients: int
    round: int
    answered: int
    timeouts: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0


class FrigateLikeClient:
    """Frigate's zmq detector client, reduced to what the bench measures (see the module docstring)."""

    def __init__(self, endpoint: str, model_name: str, timeout_ms: int = 200) -> None:
        import zmq

        self._zmq = zmq
        self._ctx = zmq.Context()
        self._endpoint, self._name, self._timeout = endpoint, model_name, timeout_ms
        self._sock: Any = None
        self.timeouts = 0
        self._new_socket()

    def _new_socket(self) -> None:
        zmq = self._zmq
        if self._sock is not None:
            self._sock.close(linger=0)
        self._sock = self._ctx.socket(zmq.REQ)
        self._sock.setsockopt(zmq.RCVTIMEO, self._timeout)
        self._sock.setsockopt(zmq.SNDTIMEO, self._timeout)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(self._endpoint)

    def handshake(self) -> bool:
        self._sock.send_multipart([json.dumps({"model_request": True, "model_name": self._name}).encode()])
        self._sock.setsockopt(self._zmq.RCVTIMEO, 30000)  # Frigate waits 30 s for handshake answers
        try:
            answer = json.loads(self._sock.recv_multipart()[0])
        finally:
            self._sock.setsockopt(self._zmq.RCVTIMEO, self._timeout)
        return bool(answer.get("model_available") and answer.get("model_loaded"))

    def detect(self, tensor: np.ndarray) -> np.ndarray | None:
        """The [20, 6] answer, or None after a timeout (the socket is then replaced and re-handshaken)."""
        header = json.dumps({"shape": list(tensor.shape), "dtype": tensor.dtype.name, "model_type": "yologeneric"}).encode()
        try:
            self._sock.send_multipart([header, memoryview(tensor.tobytes(order="C"))])
            frames = self._sock.recv_multipart()
        except self._zmq.Again:
            self.timeouts += 1
            self._new_socket()
            self.handshake()
            return None
        meta = json.loads(frames[0])
        return np.frombuffer(frames[1], np.dtype(meta["dtype"])).reshape(meta["shape"])

    def close(self) -> None:
        self._sock.close(linger=0)
        self._ctx.term()


def frigate_tensor(rgb: np.ndarray, input_tensor: str = "nhwc", input_dtype: str = "int") -> np.ndarray:
    """What Frigate sends for an RGB image of the model's size (`LocalObjectDetector._transform_input`)."""
    tensor = rgb[None]
    if input_tensor == "nchw":
        tensor = tensor.transpose(0, 3, 1, 2)
    if input_dtype == "float":
        tensor = tensor.astype(np.float32) / 255
    return np.ascontiguousarray(tensor)


def _client(endpoint: str, name: str, tensor: np.ndarray, seconds: float, timeout_ms: int, barrier: Any, out: Any) -> None:
    client = FrigateLikeClient(endpoint, name, timeout_ms)
    try:
        ready = client.handshake()
        barrier.wait(60)  # every client connected and handshaken before anyone is timed
        times: list[float] = []
        if ready:
            for _ in range(WARMUP):
                client.detect(tensor)
            client.timeouts = 0
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                t0 = time.perf_counter_ns()
                if client.detect(tensor) is not None:
                    times.append((time.perf_counter_ns() - t0) / 1e6)
        out.put((ready, times, client.timeouts))
    finally:
        client.close()


def run_bench(model: Path, detect: DetectSettings, settings: BenchSettings) -> list[BenchRun]:
    from ..training.synth import render_scene

    runner = ModelRunner.load(model, detect)
    h, w = runner.engine.info.imgsz
    bgr, _ = render_scene(np.random.default_rng(3), (w, h), (5, 5))
    image = bgr[..., ::-1] if settings.pixel_format == "rgb" else bgr
    tensor = frigate_tensor(np.ascontiguousarray(image), settings.input_tensor, settings.input_dtype)
    runs: list[BenchRun] = []
    with tempfile.TemporaryDirectory(prefix="edge_rt-frigate-bench-") as tmp:
        endpoint = f"ipc://{tmp}/bench.sock"
        store = StoreSettings(Path(tmp), 1, uploads=False)
        host = ModelHost(store, lambda p: ModelRunner.load(p, detect), runner, model.name)
        server_settings = ServerSettings(endpoint, settings.pixel_format, settings.timeout_ms, stats_interval_s=0).check()
        ctx = mp.get_context("spawn")  # no forked ZeroMQ context or ONNX Runtime threads in the clients
        try:
            with ServerThread(FrigateServer(host, server_settings)):
                for r in range(settings.rounds):
                    for n in settings.clients:
                        runs.append(_one_run(ctx, endpoint, model.name, tensor, n, r + 1, settings))
        finally:
            host.close()
    return runs


def _one_run(ctx: Any, endpoint: str, name: str, tensor: np.ndarray, n: int, round_: int, s: BenchSettings) -> BenchRun:
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_client, args=(endpoint, name, tensor, s.seconds, s.timeout_ms, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [out.get(timeout=s.seconds + 120) for _ in procs]
    for p in procs:
        p.join(10)
    times = np.array([t for _, ts, _ in results for t in ts])
    timeouts = sum(t for _, _, t in results)
    if not all(ready for ready, _, _ in results):
        raise RuntimeError("a bench client's handshake was refused")
    p50, p99 = (float(np.percentile(times, 50)), float(np.percentile(times, 99))) if times.size else (float("nan"), float("nan"))
    return BenchRun(n, round_, int(times.size), int(timeouts), s.seconds, p50, p99)


def format_runs(runs: Sequence[BenchRun], s: BenchSettings) -> str:
    cpu = os.cpu_count()
    lines = [
        f"Frigate-like clients ({s.input_tensor}, input_dtype {s.input_dtype}, {s.timeout_ms} ms timeout), {s.seconds:g} s per run, "
        f"{cpu} CPU(s); round trip = send -> answer decoded, per client",
        f"{'clients':>7} {'round':>5} {'answered':>8} {'per s':>7} {'p50 ms':>7} {'p99 ms':>7} {'timeouts':>8}",
    ]
    for r in runs:
        lines.append(f"{r.clients:>7} {r.round:>5} {r.answered:>8} {r.rate:>7.1f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.timeouts:>8}")
    return "\n".join(lines)
