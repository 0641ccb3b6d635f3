"""Source health on the bus: topic `$health`, one message per state change and a heartbeat.

A subscriber must tell "camera down" from "nothing detected" without waiting for a change, so the
board also answers every new subscription to `$health` with every source's current state. Capture
threads report changes from their own threads; only the publish loop (the thread that owns the
ZeroMQ socket) turns them into messages.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from ..wire.schema import HEALTH, HEALTH_TOPIC, VERSION


class StateChange(Protocol):
    """What the board needs of a capture thread's `HealthEvent` (camera/ imports ops/, not the reverse)."""

    @property
    def source(self) -> str: ...
    @property
    def state(self) -> Enum: ...
    @property
    def reason(self) -> str: ...
    @property
    def time_ns(self) -> int: ...


def wire_state(state: Enum) -> str:
    """A capture state as subscribers see it: `ended` (a stop on purpose, its reason says "end of file")
    goes out as `stopped`."""
    return "stopped" if state.value == "ended" else str(state.value)


@dataclass(frozen=True)
class SourceHealth:
    """A source's state as subscribers see it."""

    state: str
    previous: str | None
    reason: str
    since_ns: int  # wall clock of the last change


class HealthBoard:
    """Every source's current wire state, plus the changes not yet published."""

    def __init__(self, sources: Sequence[str], session: str, heartbeat_s: float = 2.0, box: str = "edge-rt") -> None:
        now = time.time_ns()
        self.session = session
        self.box = box  # behind a broker every box answers on `$health`: the field tells them apart
        self.heartbeat_s = heartbeat_s
        self._lock = threading.Lock()
        self._current = {s: SourceHealth("starting", None, "opening", now) for s in sources}
        self._changes: list[tuple[str, SourceHealth]] = [(s, h) for s, h in self._current.items()]
        self._seq = {s: 0 for s in sources}
        self._next_beat = time.monotonic() + heartbeat_s
        self.final = False  # set once every source's `stopped` went out: nothing follows it

    def on_event(self, event: StateChange) -> None:
        """From any capture thread."""
        state = wire_state(event.state)
        with self._lock:
            prev = self._current.get(event.source)
            if prev is None or self.final or prev.state == state:  # e.g. ended -> stopped: both `stopped` on the wire
                return
            health = SourceHealth(state, prev.state, event.reason, event.time_ns)
            self._current[event.source] = health
            self._changes.append((event.source, health))

    def states(self) -> dict[str, str]:
        with self._lock:
            return {s: h.state for s, h in self._current.items()}

    def messages(self, counters: Mapping[str, Mapping[str, int]], *, snapshot: bool = False) -> list[dict[str, Any]]:
        """What to publish now: pending changes, then every source if a heartbeat is due or `snapshot`
        (a new subscriber). Call from the publishing thread only."""
        now = time.monotonic()
        with self._lock:
            out = [self._message(src, h, "change", counters) for src, h in self._changes]
            self._changes.clear()
            if snapshot or now >= self._next_beat:
                self._next_beat = now + self.heartbeat_s
                out += [
                    self._message(src, h, "snapshot" if snapshot else "heartbeat", counters) for src, h in self._current.items()
                ]
        return out

    def stopped(self, reasons: Mapping[str, str], counters: Mapping[str, Mapping[str, int]]) -> list[dict[str, Any]]:
        """Every source's last message: `stopped`, whatever it was doing."""
        now = time.time_ns()
        with self._lock:
            self.final = True
            unsent = {src for src, _ in self._changes}
            out = []
            for src, h in self._current.items():
                if h.state == "stopped" and src not in unsent:
                    continue  # its stop already went out (a file's end, a capture thread that stopped first)
                last = SourceHealth("stopped", h.previous if h.state == "stopped" else h.state, reasons.get(src, "shutdown"), now)
                self._current[src] = last
                out.append(self._message(src, last, "change", counters))
            self._changes.clear()
        return out

    def _message(self, source: str, h: SourceHealth, event: str, counters: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
        seq = self._seq[source]
        self._seq[source] = seq + 1
        return {
            "schema": HEALTH,
            "version": VERSION,
            "box": self.box,
            "session": self.session,
            "source": source,
            "seq": seq,
            "event": event,
            "state": h.state,
            "previous": h.previous,
            "reason": h.reason,
            "since_ns": h.since_ns,
            "ts_ns": time.time_ns(),
            "counters": dict(counters.get(source, {})),
        }


def wants_health(topic: bytes) -> bool:
    """A subscription that receives `$health` (ZeroMQ matches prefixes, so "" and "$" do too)."""
    return HEALTH_TOPIC.encode().startswith(topic)


__all__ = ["HEALTH_TOPIC", "HealthBoard", "SourceHealth", "StateChange", "wants_health", "wire_state"]
