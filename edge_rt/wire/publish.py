"""ZeroMQ publishing: one XPUB socket, every setting spelled out here, CURVE with an allow-list, drops counted.

The socket binds (subscribers connect to the box), or with `connect:ENDPOINT` dials a broker's frontend
(`edge-rt broker`: boxes behind NAT reach one fixed address). Either way it is an XPUB: subscriptions
reach it, from the subscribers themselves or forwarded by the broker's XSUB, so `$health` snapshots and
`await_subscribers` work the same through a broker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from ..errors import ConfigError, PublishError
from .schema import encode
from .security import ClientKeys, ServerKeys, is_ipv6_endpoint, split_publish

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
    # Only for a publisher that dials a broker (connect:), a connection meant to last months:
    reconnect_ivl_ms: int = 250  # first retry after the broker went away or was not there yet
    reconnect_ivl_max_ms: int = 5000  # retries back off to this (default: every 100 ms forever, from every box)
    connect_timeout_ms: int = 5000  # a SYN into a black hole is given up and retried (the kernel waits ~2 min)
    refused_retry_ms: int = 10000  # ZeroMQ never retries after a refused CURVE key or mechanism: we dial again

    def apply(self, sock: zmq.Socket, endpoint: str, connect: bool = False) -> None:
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
        if connect:
            # No queue for a broker that is not connected: messages are dropped (and counted) while it is
            # away, instead of up to SNDHWM stale ones arriving when it is back, and a lost connection takes
            # its subscriptions with it, so the count stays true across broker restarts.
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.RECONNECT_IVL, self.reconnect_ivl_ms)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, self.reconnect_ivl_max_ms)
            sock.setsockopt(zmq.CONNECT_TIMEOUT, self.connect_timeout_ms)


def _check_endpoint(endpoint: str) -> None:
    if "://" not in split_publish(endpoint)[0]:
        raise PublishError(
            f"endpoint {endpoint!r}: expected tcp://HOST:PORT, ipc://PATH or inproc://NAME to bind, or connect:tcp://BROKER:PORT"
        )


class Publisher:
    """Binds an XPUB socket (a PUB that also tells us who subscribed), or connects it to a broker's
    frontend (`connect:ENDPOINT`), and sends [topic, payload].

    ZeroMQ drops silently past a subscriber's high-water mark; such a subscriber sees the gap in
    `seq`. A send ZeroMQ refuses returns False; the pipeline counts those (`sink_refused`).

    With `curve` as `ServerKeys` (bind), the socket is a CURVE server and a ZAP authenticator on the same
    context admits only the clients whose public keys are in `curve.allow_dir`; NULL and PLAIN clients
    and unknown keys fail the handshake and receive nothing. (CURVE without the authenticator would
    encrypt but admit anyone.) With `ClientKeys` (connect), the box is the broker's CURVE client and the
    broker's allow-list decides. While no broker is connected, XPUB drops what is sent: `link.dropped`.
    """

    def __init__(
        self,
        endpoint: str,
        encoding: str = "json",
        settings: ZmqSettings = ZmqSettings(),
        curve: ServerKeys | ClientKeys | None = None,
    ) -> None:
        _check_endpoint(endpoint)
        address, connect = split_publish(endpoint)
        if connect and isinstance(curve, ServerKeys):
            raise ConfigError(
                f"--publish {endpoint}: a box that connects to a broker is its CURVE client: give --curve-server-key, not --curve-allow"
            )
        if not connect and isinstance(curve, ClientKeys):
            raise ConfigError(
                f"--publish {endpoint}: a box that binds is the CURVE server: give --curve-allow, not --curve-server-key"
            )
        self.endpoint = endpoint
        self.encoding = encoding
        self.curve = curve
        self._ctx = zmq.Context()
        self._auth: ThreadAuthenticator | None = None
        self.link: BrokerLink | None = None
        sock = self._ctx.socket(zmq.XPUB)
        try:
            settings.apply(sock, address, connect)
            if isinstance(curve, ServerKeys):
                self._auth = _start_authenticator(self._ctx, curve)  # before bind: no connection gets in unchecked
                sock.setsockopt(zmq.CURVE_SERVER, 1)
                sock.setsockopt(zmq.CURVE_SECRETKEY, curve.pair.secret)
                sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.pair.public)
            elif isinstance(curve, ClientKeys):
                sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server_public)
                sock.setsockopt(zmq.CURVE_SECRETKEY, curve.pair.secret)
                sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.pair.public)
            if connect:
                # connect() returns at once and ZeroMQ dials in the background (names resolved then, too):
                # a broker that is down at start-up is retried, never waited for.
                self.link = BrokerLink(sock, address, settings.refused_retry_ms / 1000)
                sock.connect(address)
            else:
                sock.bind(address)
        except zmq.ZMQError as exc:
            self._teardown(sock)
            if exc.errno == zmq.EADDRINUSE:
                raise PublishError(f"endpoint {endpoint!r}: address already in use (another edge-rt running?)") from None
            raise PublishError(f"endpoint {endpoint!r}: cannot {'connect' if connect else 'bind'}: {exc.strerror}") from None
        except BaseException:
            self._teardown(sock)
            raise
        self._sock = sock
        self.subscriptions = 0
        self.ever_subscribed = False  # for the run's summary: a file run that nobody heard says so
        self._joined: list[bytes] = []  # topics subscribed since the last take_new_subscriptions()
        self.sent = 0
        self.bytes_sent = 0

    def _teardown(self, sock: zmq.Socket) -> None:
        if self.link is not None:
            self.link.close()
        sock.close(0)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        self._ctx.term()

    def poll_subscriptions(self, timeout_ms: int = 0) -> int:
        """Read pending (un)subscribe notices; returns the number of live subscriptions.

        Through a broker (connect:) these are what its XSUB forwards: each topic its consumers hold once
        when the box connects, then every new subscription (duplicates too, XPUB_VERBOSER); a lost
        broker takes its subscriptions with it."""
        if self.link is not None:
            self.link.poll()
        while self._sock.poll(timeout_ms, zmq.POLLIN):
            timeout_ms = 0
            msg = self._sock.recv()
            if msg[:1] == b"\x01":
                self.subscriptions += 1
                self.ever_subscribed = True
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
                if self.link is not None and not self.link.connected:
                    log.warning(
                        "no broker at %s after %.1fs; publishing anyway (dropped until it answers)", self.link.address, timeout_s
                    )
                else:
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
        if self.link is not None and not self.link.poll():
            self.link.dropped += 1  # XPUB took it and dropped it: no broker to send it to
        self.sent += 1
        self.bytes_sent += len(payload)
        if self.sent % 256 == 0:
            self.poll_subscriptions()  # keep the count fresh and the notice queue short
        return True

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
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


class BrokerLink:
    """A connecting publisher's view of its broker, from the socket's monitor events: whether it is
    connected, how many messages went nowhere meanwhile, and one log line per change, not per retry.

    Read on the publishing thread only (`poll`), like the socket it watches."""

    EVENTS = (
        zmq.EVENT_HANDSHAKE_SUCCEEDED
        | zmq.EVENT_DISCONNECTED
        | zmq.EVENT_CONNECT_RETRIED
        | zmq.EVENT_HANDSHAKE_FAILED_AUTH
        | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    )

    def __init__(self, sock: zmq.Socket, address: str, refused_retry_s: float) -> None:
        self._sock = sock
        self.address = address
        self._monitor: zmq.Socket | None = sock.get_monitor_socket(self.EVENTS)
        self._refused_retry_s = refused_retry_s
        self.connected = False
        self.connects = 0  # handshakes completed: 1 + reconnections
        self.dropped = 0  # messages sent while no broker was connected (XPUB drops them)
        self._dropped_before = 0  # `dropped` when the current outage began
        self._since = time.monotonic()  # when the current outage (or the run) began
        self._said: str | None = None  # the problem last logged: a retry loop says it once
        self._redial_at: float | None = None

    def poll(self) -> bool:
        """Handle what the monitor reported since the last call; True while a broker is connected."""
        mon = self._monitor
        while mon is not None and mon.poll(0, zmq.POLLIN):
            self._on(recv_monitor_message(mon, zmq.NOBLOCK)["event"])
        if self._redial_at is not None and time.monotonic() >= self._redial_at:
            self._redial()
        return self.connected

    def _on(self, event: int) -> None:
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.connected, self._said, self._redial_at = True, None, None
            self.connects += 1
            if self.connects == 1 and not self.dropped:
                log.info("connected to the broker at %s", self.address)
            else:
                log.info(
                    "connected to the broker at %s%s after %.1fs; %d message(s) dropped while it was away",
                    self.address,
                    " again" if self.connects > 1 else "",
                    time.monotonic() - self._since,
                    self.dropped - self._dropped_before,
                )
        elif event == zmq.EVENT_DISCONNECTED:
            if self.connected:
                self.connected, self._since, self._dropped_before = False, time.monotonic(), self.dropped
                self._said = "unreachable"  # the retries that follow are this outage, already said
                log.warning("lost the broker at %s; reconnecting (messages are dropped until it is back)", self.address)
        elif event == zmq.EVENT_CONNECT_RETRIED:
            self._say("unreachable", "the broker at %s is not reachable; retrying, messages are dropped until it answers")
        elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            self._say(
                "handshake",
                "the handshake with the broker at %s failed (is --curve-server-key the broker's public key?); retrying",
            )
        elif event in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
            # ZeroMQ gives up on this connection for good: dial again later (the broker may be told our key).
            self._redial_at = time.monotonic() + self._refused_retry_s
            if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                why = "refused this box's CURVE key: its public .key must be in the broker's --curve-allow-publishers DIR"
            else:
                why = "speaks another security mechanism (CURVE on one side only?)"
            self._say(why, f"the broker at %s {why}; trying again every {self._refused_retry_s:g}s", error=True)

    def _say(self, what: str, text: str, error: bool = False) -> None:
        if self._said != what:
            self._said = what
            (log.error if error else log.warning)(text, self.address)

    def _redial(self) -> None:
        self._redial_at = None
        try:
            self._sock.disconnect(self.address)  # whatever is left of the refused connection: never two
        except zmq.ZMQError:
            pass
        self._sock.connect(self.address)

    def close(self) -> None:
        """Before the socket closes: the monitor's inproc pair lives on the same context."""
        if self._monitor is not None:
            try:
                self._sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self._monitor.close(0)
            self._monitor = None
