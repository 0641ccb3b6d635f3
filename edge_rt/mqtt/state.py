"""What the bridge knows now, from the box's messages: objects per class and per zone, and camera health.

Counts of a tracked source (its detections carry track ids) are sets of track ids, not sums:
`start` adds an object and `end` removes it, `enter`/`exit` do the same per zone, and every
detections message adds the objects it shows (idempotent). So a bridge that starts while objects
are already in view counts them from the first frame it sees, a repeated event counts once, and no
count goes below zero. Zone membership is the box's own, after each zone's inertia, so the counts
do not flicker. An untracked source counts the boxes of its last frame.

Every value is a string as published; `Board` returns the entities whose value changed (or are new),
and the bridge publishes those, retained.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field

from ..wire.received import DetectionMessage, EndOfStream, EventMessage, HealthMessage, Message
from .topics import COUNT, HEALTH, ZONE, Entity

NO_BOX = "unnamed"  # a version-1 publisher names no box


@dataclass
class _Source:
    session: str = ""
    tracked: bool = False
    alive: dict[int, str] = field(default_factory=dict)  # track id -> label
    zones: dict[str, dict[int, str]] = field(default_factory=dict)  # zone -> track id -> label
    frame: Counter[str] = field(default_factory=Counter)  # untracked: boxes per label in the last frame
    labels: set[str] = field(default_factory=set)  # every class counted so far: its count stays, at 0
    zone_labels: set[tuple[str, str]] = field(default_factory=set)
    named: set[int] = field(default_factory=set)  # tracks whose class an event gave (or seen when the bridge joined)
    joined: bool = False  # a detections message of this session was seen

    def clear(self) -> None:
        """A new session (the box restarted) or the end of the stream: nothing is in view."""
        self.alive.clear()
        self.zones.clear()
        self.frame.clear()
        self.named.clear()
        self.joined = False


class Board:
    """Current values per entity; fed one message at a time from the bridge's loop (one thread)."""

    def __init__(self) -> None:
        self.values: dict[Entity, str] = {}
        self._sources: dict[tuple[str, str], _Source] = {}
        self._seen: dict[str, float] = {}  # box -> monotonic time of its last message
        self._silent: set[str] = set()

    def update(self, msg: Message, now: float) -> list[Entity]:
        """The entities whose value this message changed, new ones included."""
        box = msg.box or NO_BOX
        self._seen[box] = now
        self._silent.discard(box)  # its next health message says what its cameras are now
        src = self._source(box, msg.source, msg.session)
        if isinstance(msg, HealthMessage):
            return self._health(msg, box)
        if isinstance(msg, DetectionMessage):
            self._detections(src, msg)
        elif isinstance(msg, EventMessage):
            self._event(src, msg)
        elif isinstance(msg, EndOfStream):
            src.clear()
        return self._counts(box, msg.source, src)

    def silent(self, now: float, timeout: float) -> list[Entity]:
        """Boxes that sent nothing (not even a health heartbeat, every 2 s) for `timeout` s: their cameras
        are `offline` until the box speaks again."""
        changed: list[Entity] = []
        for box, seen in self._seen.items():
            if box in self._silent or now - seen < timeout:
                continue
            self._silent.add(box)
            for e in [e for e in self.values if e.kind == HEALTH and e.box == box]:
                old = json.loads(self.values[e])
                if old.get("state") in ("offline", "stopped"):
                    continue
                reason = f"no message from box {box} for {timeout:g} s (edge-rt mqtt)"
                changed += self._set(e, _health_payload("offline", old.get("state"), reason, time.time_ns()))
        return changed

    def _source(self, box: str, source: str, session: str) -> _Source:
        src = self._sources.setdefault((box, source), _Source())
        if src.session != session:
            src.clear()  # track ids start over with a new session
            src.session = session
        return src

    def _detections(self, src: _Source, msg: DetectionMessage) -> None:
        if any(d.track_id is not None for d in msg.detections):
            src.tracked = True
        if not src.tracked:
            src.frame = Counter(d.label for d in msg.detections)
            return
        for d in msg.detections:
            if d.track_id is None:
                continue
            if d.track_id not in src.alive:
                # Events name the track's class; a box's own may differ (a square's box called `triangle`). A
                # new track's start event follows its first detections message: until it comes, the box's label
                # counts but announces no entity. Tracks already in view when the bridge joined have no start.
                src.alive[d.track_id] = d.label
                if not src.joined:
                    src.named.add(d.track_id)
            for zone in d.zones or ():
                src.zones.setdefault(zone, {}).setdefault(d.track_id, src.alive[d.track_id])
        src.joined = True

    def _event(self, src: _Source, msg: EventMessage) -> None:
        src.tracked = True
        tid = msg.track_id
        src.named.add(tid)
        if tid in src.alive and src.alive[tid] != msg.label:  # the track's class, over the box's of its first frame
            src.alive[tid] = msg.label
            for members in src.zones.values():
                if tid in members:
                    members[tid] = msg.label
        if msg.event == "start":
            src.alive[tid] = msg.label
        elif msg.event == "end":
            src.alive.pop(tid, None)
            for members in src.zones.values():
                members.pop(tid, None)  # every enter has its exit; this only mends a lost one
        elif msg.event == "enter" and msg.zone is not None:
            src.zones.setdefault(msg.zone, {})[tid] = msg.label
            src.alive.setdefault(tid, msg.label)
        elif msg.event == "exit" and msg.zone is not None:
            src.zones.get(msg.zone, {}).pop(tid, None)
        if msg.zone is not None and msg.event in ("enter", "exit", "loiter"):
            src.zone_labels.add((msg.zone, msg.label))

    def _counts(self, box: str, source: str, src: _Source) -> list[Entity]:
        per_label = Counter(src.alive.values()) if src.tracked else src.frame
        src.labels.update((lab for tid, lab in src.alive.items() if tid in src.named) if src.tracked else per_label)
        changed: list[Entity] = []
        for label in sorted(src.labels):
            changed += self._set(Entity(COUNT, box, source, label), str(per_label.get(label, 0)))
        for zone, members in src.zones.items():
            src.zone_labels.update((zone, label) for tid, label in members.items() if tid in src.named)
        for zone, label in sorted(src.zone_labels):
            n = sum(1 for lab in src.zones.get(zone, {}).values() if lab == label)
            changed += self._set(Entity(ZONE, box, source, label, zone), str(n))
        return changed

    def _health(self, msg: HealthMessage, box: str) -> list[Entity]:
        payload = _health_payload(msg.state, msg.previous, msg.reason, msg.since_ns)
        return self._set(Entity(HEALTH, box, msg.source), payload)

    def _set(self, e: Entity, value: str) -> list[Entity]:
        if self.values.get(e) == value:
            return []
        self.values[e] = value
        return [e]


def _health_payload(state: str, previous: str | None, reason: str, since_ns: int) -> str:
    """What changes only with the state: heartbeats (every 2 s, with moving counters) publish nothing new."""
    return json.dumps({"state": state, "previous": previous, "reason": reason, "since_ns": since_ns}, separators=(",", ":"))
