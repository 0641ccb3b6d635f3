"""The messages a subscriber reads, typed: one frozen dataclass per schema and `parse_message`, which
checks a decoded payload against what the JSON Schemas promise and names what is wrong."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .schema import BOX_NAME_MAX, DETECTIONS, EOS, EVENT, HEALTH, READABLE_VERSIONS, is_box_name


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
    clip: str | None = None  # with recording on: the clip this event is in (for end: the object's last clip)


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
    clip = obj.get("clip")
    if clip is not None and (not isinstance(clip, str) or not clip):
        raise MalformedMessage("event clip: expected a path")
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
        clip=clip,
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
