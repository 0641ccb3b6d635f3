"""Python client: subscribe to an edge_rt publisher and iterate typed messages.

    from edge_rt import Subscriber
    with Subscriber("tcp://127.0.0.1:5555", topics=["cam0"]) as sub:
        for msg in sub:
            if msg.gap: print("lost", msg.gap, "messages")
            for det in msg.detections: print(det.label, det.conf, det.box)

Gaps come from per-source `seq`; a changed `session` means the publisher restarted.

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

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import zmq

from .errors import ConfigError
from .schema import (
    BOX_NAME_MAX,
    DETECTIONS,
    EOS,
    EVENT,
    EVENTS_TOPIC,
    HEALTH,
    HEALTH_TOPIC,
    READABLE_VERSIONS,
    decode,
    is_box_name,
)
from .security import ClientKeys, is_ipv6_endpoint


class MalformedMessage(ValueError):
    """A payload that is not a valid edge_rt message; the client counts these and moves on."""


@dataclass(frozen=True)
class Detection:
    cls: int
    label: str
    conf: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in source pixels
    track_id: int | None = None  # with tracking (run --track): the object's id, never reused in a session of its source
    zones: tuple[str, ...] | None = None  # with zones configured: the zones the object is in


@dataclass(frozen=True)
class DetectionMessage:
    session: str
    source: str
    seq: int
    frame_index: int
    width: int
    height: int
    model: str
    batch_size: int
    timestamps: Mapping[str, int]
    latency_ms: Mapping[str, float]
    detections: tuple[Detection, ...]
    raw: Mapping[str, Any] = field(repr=False)
    gap: int = 0  # messages of this source lost just before this one
    restarted: bool = False  # first message of a new publisher session for this source
    box: str | None = None  # the publishing box's name (None from a version-1 publisher, which had none)


@dataclass(frozen=True)
class EndOfStream:
    session: str
    source: str
    seq: int
    frames: int
    reason: str
    raw: Mapping[str, Any] = field(repr=False)
    gap: int = 0
    restarted: bool = False
    box: str | None = None


@dataclass(frozen=True)
class HealthMessage:
    """A source's state on topic `$health`; `event` is change, heartbeat or snapshot (sent to a new subscriber)."""

    session: str
    source: str
    seq: int
    event: str
    state: str
    previous: str | None
    reason: str
    since_ns: int
    ts_ns: int
    counters: Mapping[str, int]
    raw: Mapping[str, Any] = field(repr=False)
    gap: int = 0
    restarted: bool = False
    box: str | None = None


@dataclass(frozen=True)
class EventMessage:
    """An `edge_rt.event` on topic `$events/SOURCE` (or `$events/BOX/SOURCE`): what a tracked object did.

    `event` is start or end (the track), enter, exit or loiter (`zone`), or cross (`line`, with
    `direction` in or out); `object` is the object's detection in that frame (its last one for end)."""

    session: str
    source: str
    seq: int
    event: str
    track_id: int
    label: str
    frame_index: int
    timestamps: Mapping[str, int]
    object: Detection
    raw: Mapping[str, Any] = field(repr=False)
    zone: str | None = None
    line: str | None = None
    direction: str | None = None
    duration_s: float | None = None
    gap: int = 0
    restarted: bool = False
    box: str | None = None


EVENT_KINDS = ("start", "end", "enter", "exit", "cross", "loiter")
HEALTH_STATES = ("starting", "online", "stalled", "reconnecting", "offline", "stopped")
HEALTH_EVENTS = ("change", "heartbeat", "snapshot")
Message = DetectionMessage | EndOfStream | HealthMessage | EventMessage


def _get(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in d:
        raise MalformedMessage(f"missing key {key!r}")
    value = d[key]
    if not isinstance(value, kind) or isinstance(value, bool):  # JSON's true is neither an integer nor a number
        raise MalformedMessage(f"key {key!r}: expected {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
    return value


def _detection(d: Any) -> Detection:
    if not isinstance(d, dict):
        raise MalformedMessage("detection is not an object")
    box = _get(d, "box", list)
    if len(box) != 4 or not all(_finite(v) for v in box):
        raise MalformedMessage("detection box: expected 4 numbers (finite, not true or false)")
    conf = _get(d, "conf", (int, float))
    if not 0 <= conf <= 1:  # compared before float(): an integer beyond 64 bits would overflow it
        raise MalformedMessage(f"detection conf {conf} outside [0, 1]")
    track_id = d.get("track_id")
    if track_id is not None and (isinstance(track_id, bool) or not isinstance(track_id, int) or track_id < 1):
        raise MalformedMessage(f"detection track_id {track_id!r}: expected an integer >= 1")
    zones = d.get("zones")
    if zones is not None and (not isinstance(zones, list) or not all(isinstance(z, str) for z in zones)):
        raise MalformedMessage("detection zones: expected a list of zone names")
    return Detection(
        _get(d, "cls", int),
        _get(d, "label", str),
        float(conf),
        (box[0], box[1], box[2], box[3]),
        track_id,
        None if zones is None else tuple(zones),
    )


def _finite(v: Any) -> bool:
    """A number a box can hold: msgpack carries NaN and infinities, and JSON's true is no number."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return isinstance(v, int) or math.isfinite(v)


def parse_message(obj: Mapping[str, Any]) -> Message:
    """A decoded payload -> typed message; raises MalformedMessage naming what is wrong."""
    if not isinstance(obj, Mapping):
        raise MalformedMessage(f"message is a {type(obj).__name__}, expected an object")
    schema = _get(obj, "schema", str)
    version = _get(obj, "version", int)
    if version not in READABLE_VERSIONS:
        raise MalformedMessage(f"unsupported version {version} (this client reads {', '.join(map(str, READABLE_VERSIONS))})")
    box = None if version < 2 else _box(obj)
    session, source, seq = _get(obj, "session", str), _get(obj, "source", str), _get(obj, "seq", int)
    if schema == EOS:
        return EndOfStream(session, source, seq, _get(obj, "frames", int), _get(obj, "reason", str), obj, box=box)
    if schema == HEALTH:
        return _health(obj, session, source, seq, box)
    if schema == EVENT:
        return _event(obj, session, source, seq, box)
    if schema != DETECTIONS:
        raise MalformedMessage(f"unknown schema {schema!r}")
    return DetectionMessage(
        session=session,
        source=source,
        seq=seq,
        frame_index=_get(obj, "frame_index", int),
        width=_get(obj, "width", int),
        height=_get(obj, "height", int),
        model=_get(obj, "model", str),
        batch_size=_get(obj, "batch_size", int),
        timestamps=_get(obj, "timestamps", dict),
        latency_ms=_get(obj, "latency_ms", dict),
        detections=tuple(_detection(d) for d in _get(obj, "detections", list)),
        raw=obj,
        box=box,
    )


def _box(obj: Mapping[str, Any]) -> str:
    box = _get(obj, "box", str)
    if not is_box_name(box):
        raise MalformedMessage(f"box {box[:40]!r}: expected 1 to {BOX_NAME_MAX} letters, digits, '.', '_' or '-'")
    return box


def _event(obj: Mapping[str, Any], session: str, source: str, seq: int, box: str | None) -> EventMessage:
    kind = _get(obj, "event", str)
    if kind not in EVENT_KINDS:
        raise MalformedMessage(f"event {kind!r}: expected one of {', '.join(EVENT_KINDS)}")
    obj_det = _detection(_get(obj, "object", dict))
    where = {k: obj.get(k) for k in ("zone", "line", "direction")}
    if not all(v is None or isinstance(v, str) for v in where.values()):
        raise MalformedMessage("event zone, line and direction: expected strings")
    if kind in ("enter", "exit", "loiter") and where["zone"] is None:
        raise MalformedMessage(f"{kind} event without a zone")
    if kind == "cross" and (where["line"] is None or where["direction"] not in ("in", "out")):
        raise MalformedMessage("cross event: expected a line and a direction in or out")
    duration = obj.get("duration_s")
    if duration is not None and not _finite(duration):
        raise MalformedMessage("event duration_s: expected a number")
    return EventMessage(
        session,
        source,
        seq,
        kind,
        _get(obj, "track_id", int),
        _get(obj, "label", str),
        _get(obj, "frame_index", int),
        _get(obj, "timestamps", dict),
        obj_det,
        obj,
        where["zone"],
        where["line"],
        where["direction"],
        None if duration is None else float(duration),
        box=box,
    )


def _health(obj: Mapping[str, Any], session: str, source: str, seq: int, box: str | None) -> HealthMessage:
    state, event = _get(obj, "state", str), _get(obj, "event", str)
    if state not in HEALTH_STATES:
        raise MalformedMessage(f"health state {state!r}: expected one of {', '.join(HEALTH_STATES)}")
    if event not in HEALTH_EVENTS:
        raise MalformedMessage(f"health event {event!r}: expected one of {', '.join(HEALTH_EVENTS)}")
    previous = obj.get("previous")
    if previous is not None and previous not in HEALTH_STATES:
        raise MalformedMessage(f"health previous state {previous!r}: expected one of {', '.join(HEALTH_STATES)} or null")
    counters = _get(obj, "counters", dict)
    if not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in counters.items()):
        raise MalformedMessage("health counters: expected names to integers")
    return HealthMessage(
        session,
        source,
        seq,
        event,
        state,
        previous,
        _get(obj, "reason", str),
        _get(obj, "since_ns", int),
        _get(obj, "ts_ns", int),
        counters,
        obj,
        box=box,
    )


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

    def __iter__(self) -> Iterator[Message]:
        while True:
            msg = self.receive()
            if msg is not None:
                yield msg

    def close(self) -> None:
        self._sock.close(0)
        if self._own_ctx:
            self._ctx.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
