"""The socket loop: Frigate's REQ clients in, one ROUTER that binds, answers routed back to each.

Frigate (`frigate/detectors/plugins/zmq_ipc.py`) waits `request_timeout_ms` (200 ms) for an answer,
then closes its socket (linger 0), opens a new one and handshakes again. So:

- a ROUTER, not a REP: several Frigate detector processes connect at once; what is waiting is read in
  one go and batched into one engine call where the model takes a batch (a REP would serialise them);
- ROUTER_MANDATORY: an answer to a client that has gone fails at once and is counted, never queued;
- the socket is read before every engine call, so a request's wait is known to within one call; one
  that waited longer than Frigate's timeout is not run (its client has stopped listening; it gets
  zeros, dropped if it has gone) and the engine's time goes to the requests that still wait (load
  shedding, counted as `late`);
- anything a client sends that cannot be used gets a zeros answer and a log line per kind of problem
  (rate-limited), so a REQ client is never left waiting and the server never stops.
"""

from __future__ import annotations

import logging
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from ..errors import ConfigError, PublishError
from ..wire.security import is_ipv6_endpoint, is_local_endpoint
from .protocol import (
    PIXEL_FORMATS,
    ZEROS,
    BadRequest,
    ModelRequest,
    TensorRequest,
    answer_frames,
    json_frame,
    parse_request,
)
from .store import ModelHost

log = logging.getLogger("edge_rt.frigate")

DEFAULT_ENDPOINT = "ipc:///tmp/cache/zmq_detector"  # Frigate's own default
POLL_MS = 100  # how soon a stop request is noticed
MAX_DRAIN = 64  # messages read per turn before answering
UPLOAD_MARGIN = 64 << 20  # a model this far over --max-model-mb still gets its refusal; beyond, ZeroMQ cuts the peer off


@dataclass(frozen=True)
class SocketSettings:
    """Every ZeroMQ option of the server socket, spelled out once (see DESIGN: ZeroMQ defaults to override)."""

    linger_ms: int = 0  # at close, answers to clients are worth nothing: never wait for them
    heartbeat_ivl_ms: int = 2000  # notice tcp peers that vanished without closing
    heartbeat_timeout_ms: int = 6000
    handshake_ivl_ms: int = 5000  # a peer that connects but never speaks ZMTP is dropped
    rcvhwm: int = 16  # per client; a REQ has one request in flight

    def apply(self, sock: zmq.Socket, endpoint: str, max_message_bytes: int) -> None:
        sock.setsockopt(zmq.LINGER, self.linger_ms)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.HEARTBEAT_IVL, self.heartbeat_ivl_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, self.heartbeat_timeout_ms)
        sock.setsockopt(zmq.HANDSHAKE_IVL, self.handshake_ivl_ms)
        sock.setsockopt(zmq.RCVHWM, self.rcvhwm)
        sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)  # per frame: the largest is a model upload
        if is_ipv6_endpoint(endpoint):
            sock.setsockopt(zmq.IPV6, 1)


@dataclass(frozen=True)
class ServerSettings:
    endpoint: str = DEFAULT_ENDPOINT
    pixel_format: str = "rgb"  # Frigate's model.input_pixel_format: the header does not say it
    request_timeout_ms: float = 200.0  # Frigate's request_timeout_ms: older requests are not run
    stats_interval_s: float = 60.0
    max_model_bytes: int = 256 << 20
    insecure: bool = False
    sockets: SocketSettings = field(default_factory=SocketSettings)

    def check(self) -> ServerSettings:
        if self.pixel_format not in PIXEL_FORMATS:
            raise ConfigError(f"--pixel-format {self.pixel_format!r}: choose one of {', '.join(PIXEL_FORMATS)}")
        if self.request_timeout_ms <= 0:
            raise ConfigError(f"--request-timeout-ms must be > 0, got {self.request_timeout_ms:g}")
        if self.stats_interval_s < 0:
            raise ConfigError(f"--stats-interval must be >= 0, got {self.stats_interval_s:g}")
        check_endpoint(self.endpoint, self.insecure)
        return self


def check_endpoint(endpoint: str, insecure: bool) -> None:
    """Refuse, with the fix, what would fail at bind or silently go wrong: a missing ipc folder, a file
    that bind would delete, another server already listening, a tcp port open to the network."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep or scheme.lower() not in ("ipc", "tcp") or not rest:
        raise ConfigError(f"--endpoint {endpoint!r}: expected ipc:///PATH (Frigate's default {DEFAULT_ENDPOINT}) or tcp://HOST:PORT")
    if scheme.lower() == "tcp":
        port = rest.rpartition(":")[2]
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"--endpoint {endpoint!r}: expected tcp://HOST:PORT with a port number (Frigate needs a fixed one)")
        if not insecure and not is_local_endpoint(endpoint):
            raise ConfigError(
                f"--endpoint {endpoint}: reachable beyond this machine, and Frigate's zmq detector has no encryption "
                "(anyone who reaches it can send frames and models); bind tcp://127.0.0.1:PORT or ipc://PATH, "
                "or add --insecure to serve it anyway"
            )
        return
    path = Path(rest)
    if not path.parent.is_dir():
        raise ConfigError(f"--endpoint {endpoint}: folder {str(path.parent)!r} does not exist: create it, or choose another --endpoint (Frigate must see the same folder)")
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ConfigError(f"--endpoint {endpoint}: {str(path)!r} exists and is not a socket (binding would delete it)")
        if _listening(path):
            raise PublishError(f"--endpoint {endpoint}: another server is already listening there")


def _listening(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False  # a socket file left by a process that died: bind replaces it
    finally:
        probe.close()


class RateLimitedLog:
    """One warning per kind of problem, then at most one per `interval_s` with how many were not logged:
    a client sending garbage 50 times a second must not flood the journal."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self._log = logger
        self._interval = interval_s
        self._next: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def warning(self, kind: str, msg: str) -> None:
        now = time.monotonic()
        if now < self._next.get(kind, 0.0):
            self._quiet[kind] = self._quiet.get(kind, 0) + 1
            return
        quiet = self._quiet.pop(kind, 0)
        self._next[kind] = now + self._interval
        self._log.warning("%s%s", msg, f" (and {quiet} more like it in the last {self._interval:g}s)" if quiet else "")


@dataclass
class ServerStats:
    """Counters since start; `latency_ms` holds the current stats window (receive -> answer, in the server)."""

    answered: int = 0
    bad: int = 0
    late: int = 0  # waited past Frigate's timeout: not run
    gone: int = 0  # answers to clients that had left
    engine_errors: int = 0
    handshakes: int = 0
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=1 << 16))

    def line(self, model: str, window_s: float) -> str:
        lat = np.asarray(self.latency_ms)
        timing = f" (in the server: p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms)" if lat.size else ""
        return f"{len(lat)} answered in {window_s:.0f}s{timing}; since start {self.totals()}; model {model}"

    def totals(self) -> str:
        return (
            f"{self.answered} answered, {self.bad} bad, {self.late} too late to run, {self.gone} to clients gone, "
            f"{self.engine_errors} engine errors, {self.handshakes} handshakes"
        )


@dataclass(frozen=True, eq=False)
class Pending:
    """A tensor request waiting for the engine, with the route back to its client."""

    route: list[zmq.Frame]
    received_ns: int
    request: TensorRequest


class FrigateServer:
    """Binds the endpoint; `serve()` answers until `stop()` (safe from a signal handler or another thread)."""

    def __init__(self, host: ModelHost, settings: ServerSettings) -> None:
        self.host = host
        self.settings = settings
        self.stats = ServerStats()
        self._warn = RateLimitedLog(log)
        self._stop = threading.Event()
        self._timeout_ns = int(settings.request_timeout_ms * 1e6)
        self._pending: deque[Pending] = deque()
        self._ctx: zmq.Context | None = None
        self._sock: zmq.Socket | None = None

    def bind(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        self.settings.sockets.apply(sock, self.settings.endpoint, self.settings.max_model_bytes + UPLOAD_MARGIN)
        try:
            sock.bind(self.settings.endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            ctx.term()
            raise PublishError(f"--endpoint {self.settings.endpoint}: cannot bind: {exc.strerror}") from None
        self._ctx, self._sock = ctx, sock

    def serve(self, tick: Callable[[], None] | None = None) -> ServerStats:
        """The loop; `tick` runs every turn (a systemd watchdog ping)."""
        if self._sock is None:
            self.bind()
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        interval = self.settings.stats_interval_s
        window_start = time.monotonic()
        while not self._stop.is_set():
            # Read before every engine call: a request is stamped when it arrived give or take one call, so the
            # ones whose client has given up are known, and what waits together is batched together.
            if poller.poll(0 if self._pending else POLL_MS):
                self._take(self._drain())
            if self._pending:
                self._run_batch()
            if tick is not None:
                tick()
            now = time.monotonic()
            if interval and now - window_start >= interval:
                log.info("%s", self.stats.line(self.host.name, now - window_start))
                self.stats.latency_ms.clear()
                window_start = now
        return self.stats

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def __enter__(self) -> FrigateServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one turn --------------------------------------------------------------------------------

    def _drain(self) -> list[tuple[list[zmq.Frame], int]]:
        assert self._sock is not None
        out: list[tuple[list[zmq.Frame], int]] = []
        while len(out) < MAX_DRAIN:
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            out.append((frames, time.perf_counter_ns()))
        return out

    def _take(self, messages: list[tuple[list[zmq.Frame], int]]) -> None:
        """Bad requests are answered with zeros and handshakes answered, now; tensors join the queue."""
        for frames, received in messages:
            split = next((i for i in range(1, len(frames)) if len(frames[i]) == 0), None)
            if split is None:  # not a REQ envelope: there is no way to answer it
                self.stats.bad += 1
                self._warn.warning("envelope", "dropped a message without a REQ envelope (Frigate's client is a REQ socket)")
                continue
            route = frames[: split + 1]
            try:
                request = parse_request([f.buffer for f in frames[split + 1 :]], self.settings.pixel_format)
            except BadRequest as exc:
                self.stats.bad += 1
                self._warn.warning(exc.kind, f"bad request, answered with zeros: {exc}")
                self._send(route, answer_frames(ZEROS))
                continue
            if isinstance(request, TensorRequest):
                self._pending.append(Pending(route, received, request))
                continue
            self.stats.handshakes += 1
            if isinstance(request, ModelRequest):
                answer = self.host.answer_request(request.name)
            else:
                answer = self.host.answer_upload(request.name, request.data)
            log.debug("handshake %s %r -> %s", type(request).__name__, request.name, answer)
            self._send(route, json_frame(answer))

    def _run_batch(self) -> None:
        """One engine call for the oldest requests still worth running, up to the model's batch."""
        runner = self.host.served
        now = time.perf_counter_ns()
        batch: list[Pending] = []
        while self._pending and len(batch) < runner.batch:
            p = self._pending.popleft()
            if now - p.received_ns > self._timeout_ns:
                self.stats.late += 1  # its client has given up: zeros (dropped if it has gone), no engine time
                self._send(p.route, answer_frames(ZEROS))
                continue
            batch.append(p)
        if not batch:
            return
        try:
            rows = runner.detect([p.request for p in batch])
        except Exception as exc:  # the engine's own failure: these clients get zeros, the next ones a new try
            self.stats.engine_errors += 1
            self._warn.warning("engine", f"inference failed, answered with zeros: {exc}")
            rows = [ZEROS] * len(batch)
        for p, r in zip(batch, rows):
            if self._send(p.route, answer_frames(r)):
                self.stats.answered += 1
                self.stats.latency_ms.append((time.perf_counter_ns() - p.received_ns) / 1e6)

    def _send(self, route: list[zmq.Frame], frames: list[bytes]) -> bool:
        assert self._sock is not None
        try:
            self._sock.send_multipart([*route, *frames], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            if exc.errno not in (zmq.EHOSTUNREACH, zmq.EAGAIN):
                raise
            self.stats.gone += 1  # the client closed its socket (Frigate's timeout) or stopped reading
            return False
        return True


class ServerThread:
    """The server on a thread of its own (tests, the bench): bound before `start()` returns, so a
    client can connect at once; `stop()` ends the loop and closes the socket."""

    def __init__(self, server: FrigateServer) -> None:
        self.server = server
        self._bound = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="edge_rt-frigate", daemon=True)

    def _run(self) -> None:
        try:
            self.server.bind()  # on this thread: a ZeroMQ socket stays with the thread that uses it
        except BaseException as exc:
            self._error = exc
            self._bound.set()
            return
        self._bound.set()
        try:
            self.server.serve()
        except BaseException as exc:  # kept for stop() to raise: a dead loop must not look like a quiet one
            self._error = exc
        finally:
            self.server.close()

    def start(self) -> ServerThread:
        self._thread.start()
        self._bound.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self.server.stop()
        self._thread.join(timeout_s)
        if self._error is not None:
            raise self._error

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
