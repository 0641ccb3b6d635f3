"""What `track:`, `zones:` and `lines:` say in a run config, checked before anything starts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .zones import LineSpec, ZoneSpec, parse_regions

_TRACK_KEYS = ("lost_s", "low_conf", "confirm_conf")


@dataclass(frozen=True)
class TrackConfig:
    """The tracker's knobs a user sets; times in seconds, so they hold at any frame rate."""

    lost_s: float = 1.0  # a lost object keeps its id this long (Ultralytics' 30 frames at 30 fps)
    low_conf: float = 0.1  # boxes down to this confidence may continue a track (ByteTrack's second pass)
    confirm_conf: float = 0.5  # a new object is published once one of its boxes reaches this confidence


@dataclass(frozen=True)
class SourceTracking:
    """One source's objects: its tracker (None: boxes only), zones and lines."""

    source: str
    track: TrackConfig | None = None
    zones: tuple[ZoneSpec, ...] = ()
    lines: tuple[LineSpec, ...] = ()


def parse_track(key: str, value: Any, default: TrackConfig | None = None) -> TrackConfig | None:
    """`track: true`, `false`, or `{lost_s: 2, low_conf: 0.1, confirm_conf: 0.5}`; a mapping refines `default`."""
    if value is None:
        return default
    if isinstance(value, bool):
        return (default or TrackConfig()) if value else None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected true, false or a mapping with {', '.join(_TRACK_KEYS)}, got {value!r:.60}")
    unknown = sorted(set(map(str, value)) - set(_TRACK_KEYS))
    if unknown:
        raise ConfigError(f"{key}: unknown key {unknown[0]!r} (known: {', '.join(_TRACK_KEYS)})")
    base = default or TrackConfig()
    out = {}
    for k, lo, hi in (("lost_s", 0.0, 3600.0), ("low_conf", 0.0, 1.0), ("confirm_conf", 0.0, 1.0)):
        v = value.get(k, getattr(base, k))
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            raise ConfigError(f"{key}.{k}: expected a number in [{lo:g}, {hi:g}], got {v!r:.40}")
        out[k] = float(v)
    return TrackConfig(**out)


def source_tracking(name: str, entry: Mapping[str, Any], default: TrackConfig | None) -> SourceTracking:
    """A source entry's track/zones/lines. Zones and lines need track ids, so they turn tracking on
    for their source (the run says so at start-up); `track: false` beside them is a contradiction."""
    key = f"source {name!r}: track"  # as zones.py names its keys
    track = parse_track(key, entry.get("track"), default)
    zones, lines = parse_regions(name, entry.get("zones"), entry.get("lines"))
    if (zones or lines) and track is None:
        if entry.get("track") is False:
            raise ConfigError(f"{key}: false, but zones and lines need tracking (their events follow track ids)")
        track = default or TrackConfig()
    return SourceTracking(name, track, zones, lines)
