"""ZeroMQ publishing: one XPUB socket, every setting spelled out here, CURVE with an allow-list, drops counted."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import zmq

from .errors import ConfigError, PublishError
from .schema import encode
from .security import ServerKeys, is_ipv6_endpoint

if TYPE_CHECKING:
    from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger("edge_rt.publish")


@dataclass(frozen=True)
class ZmqSettings:
    """Every ZeroMQ option of the publisher socket: the defaults that would hurt a real-time
    publisher on an unattended box are overridden here and nowhere else."""

    sndhwm: int = 1000  # messages queued per subscriber before ZeroMQ drops for that subscriber
    linger_ms: int = 1000  # flush what is queued at close, but never hang (the default -1 does)
    heartbeat_ivl_ms: int = 2000  # notice dead TCP peers
    heartbeat_timeout_ms: int = 6000
    sndtimeo_ms: int = 0  # sends never wait
    # What a subscriber may send us is only (un)subscriptions of a topic name: a peer sending more
    # (a multi-MB "subscription") is disconnected instead of making us allocate it. Outgoing
    # messages are not limited by this.
    max_message_bytes: int = 64 * 1024
    handshake_ivl_ms: int = 5000  # a peer that connects but never completes the handshake is dropped (default 30 s)

    def apply(self, sock: zmq.Socket, endpoint: str) -> None:
        sock.setsockopt(zmq.SNDHWM, self.sndhwm)
        sock.setsockopt(zmq.LINGER, self.linger_ms)
        sock.setsockopt(zmq.SNDTIMEO, self.sndtimeo_ms)
        sock.setsockopt(zmq.HEARTBEAT_IVL, self.heartbeat_ivl_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, self.heartbeat_timeout_ms)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        sock.setsockopt(zmq.HANDSHAKE_IVL, self.handshake_ivl_ms)
        sock.setsockopt(zmq.XPUB_VERBOSER, 1)  # every (un)subscribe reaches us: a subscriber count
        if is_ipv6_endpoint(endpoint):
            sock.setsockopt(zmq.IPV6, 1)  # tcp://[::1]:PORT cannot bind without it


def _check_endpoint(endpoint: str) -> None:
    if "://" not in endpoint:
        raise PublishError(f"endpoint {endpoint!r}: expected tcp://HOST:PORT, ipc://PATH or inproc://NAME")


class Publisher:
    """Binds an XPUB socket (a PUB that also tells us who subscribed) and sends [topic, payload].

    ZeroMQ drops silently past a subscriber's high-water mark; such a subscriber sees the gap in
    `seq`. A send ZeroMQ refuses returns False; the pipeline counts those (`sink_refused`).

    With `curve`, the socket is a CURVE server and a ZAP authenticator on the same context admits
    only the clients whose public keys are in `curve.allow_dir`; NULL and PLAIN clients and unknown
    keys fail the handshake and receive nothing. (CURVE without the authenticator would encrypt
    but admit anyone.)
    """

    def __init__(
        self,
        endpoint: str,
        encoding: str = "json",
        settings: ZmqSettings = ZmqSettings(),
        curve: ServerKeys | None = None,
    ) -> None:
        _check_endpoint(endpoint)
        self.endpoint = endpoint
        self.encoding = encoding
        self.curve = curve
        self._ctx = zmq.Context()
        self._auth: ThreadAuthenticator | None = None
        sock = self._ctx.socket(zmq.XPUB)
        try:
            settings.apply(sock, endpoint)
            if curve is not None:
                self._auth = _start_authenticator(self._ctx, curve)  # before bind: no connection gets in unchecked
                sock.setsockopt(zmq.CURVE_SERVER, 1)
                sock.setsockopt(zmq.CURVE_SECRETKEY, curve.pair.secret)
                sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.pair.public)
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            self._teardown(sock)
            if exc.errno == zmq.EADDRINUSE:
                raise PublishError(f"endpoint {endpoint!r}: address already in use (another edge-rt running?)") from None
            raise PublishError(f"endpoint {endpoint!r}: cannot bind: {exc.strerror}") from None
        except BaseException:
            self._teardown(sock)
            raise
        self._sock = sock
        self.subscriptions = 0
        self._joined: list[bytes] = []  # topics subscribed since the last take_new_subscriptions()
        self.sent = 0
        self.bytes_sent = 0

    def _teardown(self, sock: zmq.Socket) -> None:
        sock.close(0)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        self._ctx.term()

    def poll_subscriptions(self, timeout_ms: int = 0) -> int:
        """Read pending (un)subscribe notices; returns the number of live subscriptions."""
        while self._sock.poll(timeout_ms, zmq.POLLIN):
            timeout_ms = 0
            msg = self._sock.recv()
            if msg[:1] == b"\x01":
                self.subscriptions += 1
                if len(self._joined) < 1024:  # bounded: a peer flooding subscriptions cannot grow it
                    self._joined.append(msg[1:])
            elif msg[:1] == b"\x00":
                self.subscriptions = max(0, self.subscriptions - 1)
        return self.subscriptions

    def take_new_subscriptions(self) -> list[bytes]:
        """Topics subscribed to since the last call (b"" subscribes to everything), for answering them."""
        self.poll_subscriptions()
        joined, self._joined = self._joined, []
        return joined

    def await_subscribers(self, count: int, timeout_s: float, cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Wait until `count` subscriptions arrived (bounded), so no first frame is lost to the slow joiner."""
        deadline = time.monotonic() + timeout_s
        while self.poll_subscriptions() < count:
            remaining = deadline - time.monotonic()
            if cancelled():
                return False
            if remaining <= 0:
                log.warning("only %d of %d subscribers after %.1fs; publishing anyway", self.subscriptions, count, timeout_s)
                return False
            self.poll_subscriptions(int(min(remaining, 0.1) * 1000) + 1)
        return True

    def publish(self, topic: str, message: dict[str, Any]) -> bool:
        payload = encode(message, self.encoding)
        try:
            self._sock.send_multipart([topic.encode(), payload], flags=zmq.NOBLOCK)
        except zmq.Again:
            return False
        self.sent += 1
        self.bytes_sent += len(payload)
        if self.sent % 256 == 0:
            self.poll_subscriptions()  # keep the count fresh and the notice queue short
        return True

    def close(self) -> None:
        self._sock.close()  # honours LINGER: queued messages get linger_ms to leave
        if self._auth is not None:
            self._auth.stop()  # before term(): its sockets live on this context
            self._auth = None
        self._ctx.term()


def _start_authenticator(ctx: zmq.Context, curve: ServerKeys) -> ThreadAuthenticator:
    """A ZAP handler on `ctx` (ZAP is per context) admitting the public keys in `curve.allow_dir`."""
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(ctx, log=logging.getLogger("edge_rt.publish.zap"))
    try:
        auth.start()
    except (RuntimeError, zmq.ZMQError) as exc:
        auth.stop()
        raise PublishError(f"cannot start the CURVE authenticator: {exc}") from None
    auth.configure_curve(domain="*", location=str(curve.allow_dir))
    if not auth.certs.get("*"):  # zmq.auth logs a failed load and then admits nobody: say so now
        auth.stop()
        raise ConfigError(f"--curve-allow {str(curve.allow_dir)!r}: no readable client public keys")
    return auth
