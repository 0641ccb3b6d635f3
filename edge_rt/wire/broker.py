"""Fan-in for fleets: one address where consumers subscribe to many boxes' detections.

An XSUB/XPUB proxy (`zmq.proxy_steerable`, libzmq's own forwarding loop: no message is decoded, copied
into Python or re-encoded here):

- the **frontend** (XSUB) is where the boxes' runtimes publish. By default the broker binds it and the
  boxes connect, as MQTT brokers work for Frigate and Kafka/AMQP brokers for DeepStream's msgbroker: a
  box behind NAT or a cellular link only needs to reach one fixed address, and a new box needs no broker
  change (`edge-rt run --publish connect:tcp://BROKER:5556`). `connect:ENDPOINT` instead makes the broker
  dial a box that binds its own port (no CURVE there: the broker would need each box's server key).
- the **backend** (XPUB) is where consumers subscribe; the broker binds it.

Subscriptions travel upstream: XPUB_VERBOSER passes every (un)subscribe, duplicates included, so a
subscriber that joins late still reaches every runtime, which answers a new `$health` subscription with
every source's state (without it, the second subscriber to `$health` would wait for a heartbeat). XSUB
replays its subscriptions to every publisher that (re)connects, so a box or a broker restart needs no
action from anyone. Topics pass unchanged: they stay per camera, `BOX/SOURCE` from a box run with
`--name BOX` (every message also names its box in its `box` field), so two boxes' `cam0` stay apart.

With CURVE, both sides are CURVE servers with the broker's key pair, and one ZAP authenticator checks
each side against its own allow-list (ZAP domains `publishers` and `subscribers`): an unlisted box
cannot inject detections and an unlisted consumer receives nothing.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

from ..errors import ConfigError, PublishError
from .publish import ZmqSettings
from .security import PUBLIC_SUFFIX, ServerKeys, is_ipv6_endpoint, is_local_endpoint, load_public_key

if TYPE_CHECKING:
    from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger("edge_rt.broker")

PUBLISHERS_DOMAIN = "publishers"
SUBSCRIBERS_DOMAIN = "subscribers"


@dataclass(frozen=True)
class Endpoint:
    """`[bind:|connect:]tcp://HOST:PORT` (or ipc://, inproc://): where a socket listens or dials."""

    address: str
    bind: bool = True

    @classmethod
    def parse(cls, text: str, flag: str, allow_connect: bool = True) -> Endpoint:
        mode, sep, rest = text.partition(":")
        if sep and mode in ("bind", "connect") and "://" in rest:
            if mode == "connect" and not allow_connect:
                raise ConfigError(f"{flag} {text!r}: the broker binds this side; consumers connect to it")
            endpoint = cls(rest, mode == "bind")
        else:
            endpoint = cls(text)
        scheme = endpoint.address.partition("://")[0].lower()
        if "://" not in endpoint.address or scheme not in ("tcp", "ipc", "inproc"):
            raise ConfigError(f"{flag} {text!r}: expected [bind:|connect:]tcp://HOST:PORT, ipc://PATH or inproc://NAME")
        return endpoint

    def __str__(self) -> str:
        return self.address if self.bind else f"connect:{self.address}"


@dataclass(frozen=True)
class BrokerSettings:
    """The broker's own ZeroMQ options beside the publisher's (`ZmqSettings`, used for the backend)."""

    # What one box may send in one message: a frame's detections are a few KiB; 300 of them about 30 KiB.
    max_message_bytes: int = 4 * 1024 * 1024
    rcvhwm: int = 10000  # messages queued per box when the proxy loop lags
    # Per consumer: the backend queue holds every box's messages, so it is deeper than one runtime's 1000.
    backend: ZmqSettings = ZmqSettings(sndhwm=10000)


@dataclass(frozen=True)
class BrokerKeys:
    """The broker's key pair; who may subscribe (backend) and who may publish (frontend)."""

    server: ServerKeys  # the pair and the subscribers' allow-list
    publishers_dir: Path

    @classmethod
    def load(cls, secret_key_file: str | Path, allow_dir: str | Path, publishers_dir: str | Path | None = None) -> BrokerKeys:
        server = ServerKeys.load(secret_key_file, allow_dir)
        if publishers_dir is None:
            return cls(server, server.allow_dir)
        d = Path(publishers_dir).expanduser()
        if not d.is_dir():
            raise ConfigError(f"--curve-allow-publishers {str(d)!r}: no such directory (put the boxes' public .key files there)")
        files = sorted(d.glob(f"*{PUBLIC_SUFFIX}"))
        if not files:
            raise ConfigError(f"--curve-allow-publishers {str(d)!r}: no public keys (*{PUBLIC_SUFFIX}); no box could publish")
        for f in files:
            load_public_key(f, "--curve-allow-publishers: key file")
        return cls(server, d)


@dataclass(frozen=True)
class BrokerConfig:
    frontends: tuple[Endpoint, ...]
    backend: Endpoint
    keys: BrokerKeys | None = None
    insecure: bool = False
    stats_interval: float = 60.0

    def check(self) -> BrokerConfig:
        """Refuse what would expose detections or cannot work, naming the flag."""
        if not self.frontends:
            raise ConfigError("--frontend is missing: where the boxes publish (e.g. tcp://*:5556)")
        addresses = [e.address for e in (*self.frontends, self.backend) if e.bind]
        dup = next((a for a in addresses if addresses.count(a) > 1), None)
        if dup is not None:
            raise ConfigError(f"endpoint {dup!r} given twice: the frontend and the backend need their own")
        for flag, e in [("--frontend", f) for f in self.frontends] + [("--backend", self.backend)]:
            if self.keys is not None and not e.bind:
                raise ConfigError(
                    f"{flag} {e}: CURVE needs the boxes to connect to the broker (a bound --frontend); "
                    "dialing a box would need that box's server key"
                )
            if self.keys is None and not self.insecure and not is_local_endpoint(e.address):
                raise ConfigError(
                    f"{flag} {e}: reachable beyond this machine without encryption; add --curve-secret-key FILE "
                    "--curve-allow DIR (keys from `edge-rt keys`), or --insecure to forward in the clear anyway"
                )
        if self.stats_interval < 0:
            raise ConfigError(f"--stats-interval must be >= 0, got {self.stats_interval:g}")
        return self


@dataclass(frozen=True)
class ProxyStats:
    """libzmq's proxy counters: messages and bytes that came from the boxes and that went to consumers."""

    from_boxes: int
    from_boxes_bytes: int
    to_consumers: int
    to_consumers_bytes: int
    subscriptions_upstream: int  # (un)subscribe messages sent on to the boxes

    @classmethod
    def from_frames(cls, frames: list[bytes]) -> ProxyStats:
        v = [struct.unpack("=Q", f)[0] for f in frames]  # frontend in/bytes, out/bytes; backend in/bytes, out/bytes
        return cls(v[0], v[1], v[6], v[7], v[2])


class Broker:
    """Binds (or dials) the sockets at construction, so a busy port or a bad key fails before `run`;
    `run()` forwards until `stop()` (from a signal handler or another thread)."""

    def __init__(self, config: BrokerConfig, settings: BrokerSettings = BrokerSettings()) -> None:
        self.config = config.check()
        self._ctx = zmq.Context()
        self._auth: ThreadAuthenticator | None = None
        self._sockets: list[zmq.Socket] = []
        self._stop = threading.Event()
        try:
            if config.keys is not None:
                self._auth = _start_authenticator(self._ctx, config.keys)
            self._frontend = self._socket(zmq.XSUB)
            self._backend = self._socket(zmq.XPUB)
            self._control = self._socket(zmq.PAIR)  # the proxy's: TERMINATE, STATISTICS
            self._steer = self._socket(zmq.PAIR)  # ours
            self._control.bind(f"inproc://edge_rt-broker-{id(self)}")
            self._steer.connect(f"inproc://edge_rt-broker-{id(self)}")
            self._setup_frontend(settings)
            self._setup_backend(settings)
        except BaseException:
            self._teardown()
            raise

    def _socket(self, kind: int) -> zmq.Socket:
        sock = self._ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        self._sockets.append(sock)
        return sock

    def _curve_server(self, sock: zmq.Socket, domain: str) -> None:
        keys = self.config.keys
        if keys is None:
            return
        sock.setsockopt(zmq.ZAP_DOMAIN, domain.encode())
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.server.pair.secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.server.pair.public)

    def _setup_frontend(self, settings: BrokerSettings) -> None:
        sock = self._frontend
        sock.setsockopt(zmq.RCVHWM, settings.rcvhwm)
        sock.setsockopt(zmq.MAXMSGSIZE, settings.max_message_bytes)
        sock.setsockopt(zmq.HEARTBEAT_IVL, settings.backend.heartbeat_ivl_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, settings.backend.heartbeat_timeout_ms)
        sock.setsockopt(zmq.HANDSHAKE_IVL, settings.backend.handshake_ivl_ms)
        self._curve_server(sock, PUBLISHERS_DOMAIN)
        for e in self.config.frontends:
            if is_ipv6_endpoint(e.address):
                sock.setsockopt(zmq.IPV6, 1)
            _attach(sock, e, "--frontend")

    def _setup_backend(self, settings: BrokerSettings) -> None:
        sock = self._backend
        settings.backend.apply(sock, self.config.backend.address)  # XPUB_VERBOSER among them: late joiners reach the boxes
        self._curve_server(sock, SUBSCRIBERS_DOMAIN)
        _attach(sock, self.config.backend, "--backend")

    def run(self, tick: Callable[[], None] | None = None) -> ProxyStats:
        """Forward until stop(); the counters at the end. `tick` runs about every 0.2 s while the proxy
        loop lives (the systemd watchdog); periodic stats go to the log."""
        worker = threading.Thread(target=self._proxy, name="edge_rt-broker-proxy", daemon=True)
        worker.start()
        last = ProxyStats(0, 0, 0, 0, 0)
        interval = self.config.stats_interval
        due = time.monotonic() + interval
        while not self._stop.wait(0.2):
            if not worker.is_alive():
                raise PublishError("the proxy loop ended unexpectedly")
            if tick is not None:
                tick()
            if interval and time.monotonic() >= due:
                due = time.monotonic() + interval
                now = self.stats()
                log.info(
                    "%d messages from boxes, %d to consumers in the last %gs",
                    now.from_boxes - last.from_boxes,
                    now.to_consumers - last.to_consumers,
                    interval,
                )
                last = now
        final = self.stats()
        self._steer.send(b"TERMINATE")
        worker.join(5)
        return final

    def _proxy(self) -> None:
        try:
            zmq.proxy_steerable(self._frontend, self._backend, None, self._control)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.ETERM:
                log.error("proxy stopped: %s", exc)

    def stats(self) -> ProxyStats:
        """Asks the running proxy loop (from the thread that called run(), the steering socket's owner)."""
        self._steer.send(b"STATISTICS")
        if not self._steer.poll(2000):
            raise PublishError("the proxy loop did not answer STATISTICS within 2 s")
        return ProxyStats.from_frames(self._steer.recv_multipart())

    def stop(self) -> None:
        """Safe from a signal handler: only sets a flag that run() polls."""
        self._stop.set()

    def close(self) -> None:
        self._teardown()

    def _teardown(self) -> None:
        for sock in self._sockets:
            sock.close(0)
        self._sockets.clear()
        if self._auth is not None:
            self._auth.stop()  # before term(): its sockets live on this context
            self._auth = None
        self._ctx.term()

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _attach(sock: zmq.Socket, e: Endpoint, flag: str) -> None:
    try:
        if e.bind:
            sock.bind(e.address)
        else:
            sock.connect(e.address)
    except zmq.ZMQError as exc:
        if exc.errno == zmq.EADDRINUSE:
            raise PublishError(f"{flag} {e}: address already in use (another broker or edge-rt running?)") from None
        raise PublishError(f"{flag} {e}: cannot {'bind' if e.bind else 'connect'}: {exc.strerror}") from None


def _start_authenticator(ctx: zmq.Context, keys: BrokerKeys) -> ThreadAuthenticator:
    """One ZAP handler on `ctx` with an allow-list per side (ZAP domain per socket)."""
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(ctx, log=logging.getLogger("edge_rt.broker.zap"))
    try:
        auth.start()
    except (RuntimeError, zmq.ZMQError) as exc:
        auth.stop()
        raise PublishError(f"cannot start the CURVE authenticator: {exc}") from None
    for domain, directory, flag in (
        (SUBSCRIBERS_DOMAIN, keys.server.allow_dir, "--curve-allow"),
        (
            PUBLISHERS_DOMAIN,
            keys.publishers_dir,
            "--curve-allow-publishers" if keys.publishers_dir != keys.server.allow_dir else "--curve-allow",
        ),
    ):
        auth.configure_curve(domain=domain, location=str(directory))
        if not auth.certs.get(domain):  # zmq.auth logs a failed load and then admits nobody: say so now
            auth.stop()
            raise ConfigError(f"{flag} {str(directory)!r}: no readable public keys")
    return auth
