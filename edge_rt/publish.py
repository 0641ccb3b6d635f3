"""ZeroMQ publishing: one XPUB socket, every setting spelled out here, drops counted."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from .errors import PublishError
from .schema import encode

log = logging.getLogger("edge_rt.publish")


@dataclass(frozen=True)
class ZmqSettings:
    """Overrides of ZeroMQ defaults that would hurt a real-time publisher."""

    sndhwm: int = 1000  # messages queued per subscriber before ZeroMQ drops for that subscriber
    linger_ms: int = 1000  # flush what is queued at close, but never hang (the default -1 does)
    heartbeat_ivl_ms: int = 2000  # notice dead TCP peers
    heartbeat_timeout_ms: int = 6000
    sndtimeo_ms: int = 0  # sends never wait


def _check_endpoint(endpoint: str) -> None:
    if "://" not in endpoint:
        raise PublishError(f"endpoint {endpoint!r}: expected tcp://HOST:PORT, ipc://PATH or inproc://NAME")


class Publisher:
    """Binds an XPUB socket (a PUB that also tells us who subscribed) and sends [topic, payload].

    ZeroMQ drops silently past a subscriber's high-water mark; such a subscriber sees the gap in
    `seq`. A send ZeroMQ refuses returns False; the pipeline counts those (`sink_refused`).
    """

    def __init__(self, endpoint: str, encoding: str = "json", settings: ZmqSettings = ZmqSettings()) -> None:
        _check_endpoint(endpoint)
        self.endpoint = endpoint
        self.encoding = encoding
        self._ctx = zmq.Context()
        sock = self._ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.SNDHWM, settings.sndhwm)
        sock.setsockopt(zmq.LINGER, settings.linger_ms)
        sock.setsockopt(zmq.SNDTIMEO, settings.sndtimeo_ms)
        sock.setsockopt(zmq.HEARTBEAT_IVL, settings.heartbeat_ivl_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, settings.heartbeat_timeout_ms)
        sock.setsockopt(zmq.XPUB_VERBOSER, 1)  # every (un)subscribe reaches us: a subscriber count
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            self._ctx.term()
            if exc.errno == zmq.EADDRINUSE:
                raise PublishError(f"endpoint {endpoint!r}: address already in use (another edge-rt running?)") from None
            raise PublishError(f"endpoint {endpoint!r}: cannot bind: {exc.strerror}") from None
        self._sock = sock
        self.subscriptions = 0
        self.sent = 0
        self.bytes_sent = 0

    def poll_subscriptions(self, timeout_ms: int = 0) -> int:
        """Read pending (un)subscribe notices; returns the number of live subscriptions."""
        while self._sock.poll(timeout_ms, zmq.POLLIN):
            timeout_ms = 0
            msg = self._sock.recv()
            if msg[:1] == b"\x01":
                self.subscriptions += 1
            elif msg[:1] == b"\x00":
                self.subscriptions = max(0, self.subscriptions - 1)
        return self.subscriptions

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
        self._ctx.term()
