"""What `record:` (and `--record DIR`) say in a run config, checked before any camera opens."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..camera.sources import SourceKind, SourceSpec
from ..errors import ConfigError

EVENT_KINDS = ("start", "end", "enter", "exit", "cross", "loiter")
_KEYS = ("dir", "pre_s", "post_s", "events", "max_clip_s", "keep_days", "keep_mb")
# Recording copies the camera's own encoded stream, read a second time beside the detector's decoder.
RECORDABLE = (SourceKind.FILE, SourceKind.STREAM)


@dataclass(frozen=True)
class RecordConfig:
    """Clips around events. Times in seconds of the source's own clock; retention over the whole folder."""

    dir: str
    pre_s: float = 5.0  # before the first event of a clip (from the keyframe at or before it)
    post_s: float = 5.0  # after the last event, or the end of the last object the clip saw
    events: tuple[str, ...] = ("start", "enter", "cross", "loiter")  # what opens or extends a clip
    max_clip_s: float = 300.0  # a longer stretch of activity is cut into clips of this length
    keep_days: float = 7.0  # clips older than this are deleted
    keep_mb: float = 10_000.0  # then the oldest go until the folder holds at most this much


@dataclass(frozen=True)
class SourceRecord:
    source: str
    record: RecordConfig


def _number(key: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not lo <= value <= hi:
        raise ConfigError(f"{key}: expected a number in [{lo:g}, {hi:g}], got {value!r:.40}")
    return float(value)


def parse_record(key: str, value: Any, default: RecordConfig | None = None) -> RecordConfig | None:
    """`record: DIR`, `false`, `true` (the global one), or a mapping of _KEYS that refines `default`."""
    if value is None:
        return default
    if isinstance(value, bool):
        if value and default is None:
            raise ConfigError(f"{key}: true, but no folder: give record: {{dir: DIR}} or --record DIR")
        return default if value else None
    if isinstance(value, str):
        value = {"dir": value}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a folder, true, false or a mapping with {', '.join(_KEYS)}, got {value!r:.60}")
    unknown = sorted(set(map(str, value)) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{key}: unknown key {unknown[0]!r} (known: {', '.join(_KEYS)})")
    folder = value.get("dir", default.dir if default else None)
    if not isinstance(folder, str) or not folder.strip():
        raise ConfigError(f"{key}.dir: expected the folder clips go to, got {folder!r:.60}")
    out = replace(default, dir=folder) if default else RecordConfig(dir=folder)
    limits = {"pre_s": (0.0, 60.0), "post_s": (0.0, 600.0), "max_clip_s": (1.0, 3600.0), "keep_days": (0.0, 3650.0), "keep_mb": (1.0, 1e9)}
    numbers: dict[str, Any] = {k: _number(f"{key}.{k}", value[k], *limits[k]) for k in limits if k in value}
    out = replace(out, **numbers)
    if "events" in value:
        events = value["events"]
        if isinstance(events, str):
            events = [events]
        if not isinstance(events, (list, tuple)) or not events:
            raise ConfigError(f"{key}.events: expected a list of {', '.join(EVENT_KINDS)}, got {events!r:.60}")
        for e in events:
            if e not in EVENT_KINDS:
                raise ConfigError(f"{key}.events: unknown event {e!r:.40} (known: {', '.join(EVENT_KINDS)})")
        out = replace(out, events=tuple(dict.fromkeys(events)))
    return out


def source_records(
    raw: list[Any] | tuple[Any, ...], sources: tuple[SourceSpec, ...], default: RecordConfig | None
) -> tuple[SourceRecord, ...]:
    """Each recorded source's settings (`record:` globally, per source, or --record DIR)."""
    out = []
    left_out = []
    for entry, spec in zip(raw, sources):
        own = entry.get("record") if isinstance(entry, Mapping) else None
        record = parse_record(f"source {spec.name!r}: record", own, default)
        if record is None:
            continue
        if spec.kind not in RECORDABLE:
            if own is None:  # the global setting: record what can be recorded, say so for the rest at start-up
                left_out.append(spec)
                continue
            raise ConfigError(
                f"source {spec.name!r}: record: a {spec.kind.value} source cannot be opened a second time for its "
                "encoded stream; recording takes files and network streams (rtsp://, http://)"
            )
        out.append(SourceRecord(spec.name, record))
    if left_out and not out:  # the global setting, and nothing it can record: the user believes they are recording
        spec = left_out[0]
        raise ConfigError(
            f"record: source {spec.name!r} is a {spec.kind.value} source, which cannot be opened a second time for its "
            "encoded stream; recording takes files and network streams (rtsp://, http://)"
        )
    return tuple(out)
