"""Python client: subscribe to an edge_rt publisher and iterate typed messages.

    from edge_rt import Subscriber
    with Subscriber("tcp://127.0.0.1:5555", topics=["cam0"]) as sub:
        for msg in sub:
            if msg.gap: print("lost", msg.gap, "messages")
            for det in msg.detections: print(det.label, det.conf, det.box)

Gaps come from per-source `seq`; a changed `session` means the publisher restarted. The loop never
ends by itself (a camera has no end); `until_eos=True` ends it once every source sent end-of-stream.

Behind a broker (`edge-rt broker`) many boxes publish to one address; every message names its box
(`msg.box`), and a box run with `--name NAME` publishes on topics `NAME/SOURCE`. Filter by box and/or
source name, whatever the topic:

    with Subscriber("tcp://broker:5555", box="yard-01", sources=["cam0"]) as sub: ...

With `health=True` the subscriber also receives topic `$health`: a `HealthMessage` per source state
change (starting, online, stalled, reconnecting, offline, stopped), a heartbeat every few seconds,
and every source's current state right after subscribing:

    with Subscriber("tcp://127.0.0.1:5555", health=True) as sub:
        for msg in sub:
            if isinstance(msg, HealthMessage) and msg.state != "online": print(msg.source, msg.state, msg.reason)

With tracking on (`edge-rt run --track`, or zones and lines in its config), each detection carries a
`track_id` (and `zones`), and `events=True` also receives what objects did, on topics
`$events/SOURCE`: `EventMessage`s (start, end, enter, exit, cross, loiter); `event_kinds` keeps some:

    with Subscriber("tcp://127.0.0.1:5555", event_kinds=["cross"]) as sub:
        for msg in sub:
            if isinstance(msg, EventMessage): print(msg.line, msg.direction, msg.label, msg.track_id)

A publisher that runs with CURVE (`edge-rt run --curve-secret-key ... --curve-allow DIR`) admits
only clients whose public key is in DIR:

    Subscriber("tcp://box:5555", curve_server_key="keys/box.key", curve_secret_key="keys/me.key_secret")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import zmq

from .errors import ConfigError
from .wire.received import (
    EVENT_KINDS,
    HEALTH_EVENTS,
    HEALTH_STATES,
    Detection,
    DetectionMessage,
    EndOfStream,
    EventMessage,
    HealthMessage,
    MalformedMessage,
    Message,
    parse_message,
)
from .wire.schema import (
    BOX_NAME_MAX,
    EVENTS_TOPIC,
    HEALTH_TOPIC,
    decode,
    is_box_name,
)
from .wire.security import ClientKeys, is_ipv6_endpoint

# The typed messages live in received.py; they stay importable from here, where clients look for them.
__all__ = [
    "EVENT_KINDS",
    "HEALTH_EVENTS",
    "HEALTH_STATES",
    "Detection",
    "DetectionMessage",
    "EndOfStream",
    "EventMessage",
    "HealthMessage",
    "MalformedMessage",
    "Message",
    "SequenceTracker",
    "Subscriber",
    "parse_message",
]


class SequenceTracker:
    """Per-source gap and restart detection from (session, seq)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[str, int]] = {}
        self.missed = 0
        self.restarts = 0

    def check(self, source: str, session: str, seq: int) -> tuple[int, bool]:
        prev = self._last.get(source)
        self._last[source] = (session, seq)
        if prev is None:
            return 0, False
        if prev[0] != session:
            self.restarts += 1
            return 0, True
        gap = max(0, seq - prev[1] - 1)
        self.missed += gap
        return gap, False


class Subscriber:
    """A SUB socket with bounded waits; iterate it, or call `receive(timeout_ms)`.

    `topics` are exact ZeroMQ topics (`cam0`, `yard-01/cam0`, `$health`). `box` and `sources` instead
    select by the messages' own `box` and `source` fields, whichever topic form the box publishes:
    `box` alone subscribes to `BOX/` (a box run with --name); with `sources`, also to the plain
    source topics (a box run without --name, whose box is its hostname); `sources` alone must
    subscribe to everything (ZeroMQ matches topic prefixes, and `*/cam0` is no prefix) and filters here.

    `curve_server_key` (the publisher's `.key` file) and `curve_secret_key` (this client's
    `.key_secret` file) connect with CURVE; `curve` takes already loaded keys instead. A missing or
    malformed key file raises ConfigError naming it.

    `until_eos=True` ends iterating after the end-of-stream message that leaves every source seen so far
    (every topic given) ended, as a file run ends; without it the loop waits for more, as for a camera.
    """

    def __init__(
        self,
        endpoint: str,
        topics: Sequence[str] = (),
        rcvhwm: int = 10000,
        max_message_bytes: int = 16 * 1024 * 1024,
        context: zmq.Context | None = None,
        curve_server_key: str | Path | None = None,
        curve_secret_key: str | Path | None = None,
        curve: ClientKeys | None = None,
        health: bool = False,
        box: str | None = None,
        sources: Sequence[str] = (),
        events: bool = False,
        event_kinds: Sequence[str] = (),
        until_eos: bool = False,
    ) -> None:
        if curve is not None and (curve_server_key is not None or curve_secret_key is not None):
            raise ConfigError("give either curve (loaded keys) or curve_server_key and curve_secret_key (files), not both")
        if isinstance(sources, str) or isinstance(topics, str):
            raise ConfigError("topics and sources are lists of names, not one string")
        if box is not None and not is_box_name(box):
            raise ConfigError(f"box {box[:40]!r}: expected 1 to {BOX_NAME_MAX} letters, digits, '.', '_' or '-'")
        bad_kind = next((k for k in event_kinds if k not in EVENT_KINDS), None)
        if bad_kind is not None or isinstance(event_kinds, str):
            raise ConfigError(f"event kind {bad_kind or event_kinds!r}: expected some of {', '.join(EVENT_KINDS)}")
        if topics and (box is not None or sources):
            raise ConfigError("give topics (exact ZeroMQ topics) or box/sources (filters on the messages' fields), not both")
        keys = curve or ClientKeys.from_options(curve_server_key, curve_secret_key)  # before any socket exists
        self._own_ctx = context is None
        self._ctx = context or zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self._sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)  # a bad peer cannot make us allocate GBs
        self._sock.setsockopt(zmq.HEARTBEAT_IVL, 2000)
        self._sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6000)
        if keys is not None:
            self._sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)
            self._sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.pair.public)
            self._sock.setsockopt(zmq.CURVE_SECRETKEY, keys.pair.secret)
        self._topics = set(topics)
        self.box = box
        self.sources = frozenset(sources)
        self.health = health or HEALTH_TOPIC in self._topics
        self.event_kinds = frozenset(event_kinds)  # empty: every kind
        self.events = events or bool(event_kinds) or any(t.startswith(f"{EVENTS_TOPIC}/") for t in self._topics)
        if self.health and self._topics:
            self._topics.add(HEALTH_TOPIC)
        for t in self._subscriptions():
            self._sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        if is_ipv6_endpoint(endpoint):
            self._sock.setsockopt(zmq.IPV6, 1)
        try:
            self._sock.connect(endpoint)
        except zmq.ZMQError:
            self.close()
            raise
        self.until_eos = until_eos
        self._streams: dict[tuple[str | None, str], bool] = {}  # (box, source) seen -> ended (for until_eos)
        self.tracker = SequenceTracker()
        self.received = 0
        self.malformed = 0
        self.on_malformed: Callable[[str], None] | None = None

    def _subscriptions(self) -> set[str]:
        if self._topics:
            return self._topics
        if self.box is None:
            return {""}  # everything; `sources` alone filters in receive()
        subs = {f"{self.box}/{s}" for s in self.sources} | set(self.sources) if self.sources else {f"{self.box}/"}
        if self.events:
            subs |= {f"{EVENTS_TOPIC}/{t}" for t in subs}
        return subs | {HEALTH_TOPIC} if self.health else subs

    def _may_match(self, topic: str) -> bool:
        """From the topic alone, before decoding: `SOURCE` or `BOX/SOURCE` (neither name holds a '/')."""
        if topic == HEALTH_TOPIC:
            return True
        topic = topic.removeprefix(f"{EVENTS_TOPIC}/")
        box, _, source = topic.rpartition("/")
        return (not self.sources or source in self.sources) and (self.box is None or box in ("", self.box))

    def _wanted(self, msg: Message) -> bool:
        return (self.box is None or msg.box == self.box) and (not self.sources or msg.source in self.sources)

    def receive(self, timeout_ms: int | None = None) -> Message | None:
        """The next valid message, or None when `timeout_ms` passes first. Malformed ones are counted,
        handed to `on_malformed` if set, and skipped."""
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        while True:
            wait = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not self._sock.poll(wait, zmq.POLLIN):
                return None
            parts = self._sock.recv_multipart()
            topic = parts[0].decode(errors="replace")
            if self._topics and topic not in self._topics:
                continue  # ZeroMQ matches prefixes: "cam1" would also bring "cam10"
            if topic.startswith("$") and not (
                (self.health and topic == HEALTH_TOPIC) or (self.events and topic.startswith(f"{EVENTS_TOPIC}/"))
            ):
                continue  # the publisher's own topics, for subscribers that asked for them
            if not self._may_match(topic):
                continue
            try:
                msg = self._parse(topic, parts)
            except MalformedMessage as exc:
                self.malformed += 1
                if self.on_malformed is not None:
                    self.on_malformed(f"topic {topic!r}: {exc}")
                continue
            if not self._wanted(msg):
                continue  # another box's, or a source not asked for (a prefix match, a box without --name)
            self.received += 1
            stream = msg.source if msg.box is None else f"{msg.box}/{msg.source}"  # two boxes' cam0: two streams
            if isinstance(msg, HealthMessage):
                stream = f"{HEALTH_TOPIC}/{stream}"
            elif isinstance(msg, EventMessage):
                stream = f"{EVENTS_TOPIC}/{stream}"  # events count apart from detections
            if isinstance(msg, (DetectionMessage, EndOfStream)):
                self._streams[(msg.box, msg.source)] = isinstance(msg, EndOfStream)
            gap, restarted = self.tracker.check(stream, msg.session, msg.seq)
            if isinstance(msg, EventMessage) and self.event_kinds and msg.event not in self.event_kinds:
                continue  # after the gap check: kinds left out are no loss
            if gap or restarted:
                msg = replace(msg, gap=gap, restarted=restarted)
            return msg

    @staticmethod
    def _parse(topic: str, parts: list[bytes]) -> Message:
        if len(parts) != 2:
            raise MalformedMessage(f"expected 2 frames [topic, payload], got {len(parts)}")
        try:
            obj = decode(parts[1])
        except Exception as exc:  # noqa: BLE001 - any decoder failure means a malformed payload
            raise MalformedMessage(f"undecodable payload: {type(exc).__name__}: {exc}") from None
        msg = parse_message(obj)
        if isinstance(msg, HealthMessage):
            if topic != HEALTH_TOPIC:
                raise MalformedMessage(f"health message on topic {topic!r}, expected {HEALTH_TOPIC!r}")
        elif isinstance(msg, EventMessage):
            plain = f"{EVENTS_TOPIC}/{msg.source}"
            if topic != plain and (msg.box is None or topic != f"{EVENTS_TOPIC}/{msg.box}/{msg.source}"):
                raise MalformedMessage(f"event on topic {topic[:80]!r}, expected {plain[:200]!r} or {EVENTS_TOPIC}/BOX/SOURCE")
        elif topic != msg.source and (msg.box is None or topic != f"{msg.box}/{msg.source}"):
            where = repr(msg.source) if msg.box is None else f"{msg.source!r} (or {msg.box}/{msg.source})"
            raise MalformedMessage(f"topic {topic[:80]!r} differs from the message's source {where[:200]}")
        return msg

    @property
    def ended(self) -> bool:
        """Every source seen so far (every topic given, if any) sent end-of-stream: a file run is over."""
        wanted = [t for t in self._topics if not t.startswith("$")]
        if not wanted:
            return bool(self._streams) and all(self._streams.values())
        ended = {s for (_, s), done in self._streams.items() if done}
        ended |= {f"{b}/{s}" for (b, s), done in self._streams.items() if done and b is not None}
        return all(t in ended for t in wanted)

    def __iter__(self) -> Iterator[Message]:
        """Messages as they come. A live stream has no end, so by default this never ends by itself (a
        restarted publisher goes on in the same loop); with `until_eos=True` it ends after the end-of-stream
        that leaves every source seen (every topic given) ended."""
        while True:
            msg = self.receive()
            if msg is not None:
                yield msg
                if self.until_eos and isinstance(msg, EndOfStream) and self.ended:
                    return

    def close(self) -> None:
        self._sock.close(0)
        if self._own_ctx:
            self._ctx.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
