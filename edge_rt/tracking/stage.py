"""The objects stage: between postprocess and publish, per source, a tracker, zones, lines and events.

The pipeline calls it once per frame, on the publishing thread, in frame order per source; it turns
a frame's boxes into objects (track ids, the zones each is in) and the events they raised. Sources
without tracking pass through, filtered to the run's --conf.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..camera.sources import Frame
from ..detect.postprocess import Detections
from .bytetrack import ByteTracker, EndedTrack, TrackerSettings, box_tuple
from .events import Event, RegionEvents
from .settings import SourceTracking
from .zones import Regions, resolve


@dataclass(frozen=True, eq=False)
class Objects:
    """One frame's result: the boxes to publish, and for a tracked source their ids, zones and events."""

    dets: Detections
    track_ids: np.ndarray | None = None  # (N,) int, None: not tracked
    zones: tuple[tuple[str, ...], ...] | None = None  # per box; None: the source has no zones
    events: tuple[Event, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.dets)
        if self.track_ids is not None and self.track_ids.shape != (n,):
            raise ValueError(f"Objects.track_ids: expected shape ({n},), got {self.track_ids.shape}")
        if self.zones is not None and len(self.zones) != n:
            raise ValueError(f"Objects.zones: expected {n} entries, got {len(self.zones)}")


def frame_time(frame: Frame) -> float:
    """The frame's time in seconds: its position in a file (files are read faster or slower than they
    play), else when it was captured, on the monotonic clock."""
    return frame.media_s if frame.media_s is not None else frame.capture_mono_ns / 1e9


class SourceObjects:
    """One source's tracker and zone/line state."""

    def __init__(self, tracking: SourceTracking, regions: Regions, conf: float) -> None:
        track = tracking.track
        assert track is not None  # built only for tracked sources
        self.tracker = ByteTracker(
            TrackerSettings(conf=conf, low_conf=min(track.low_conf, conf), lost_s=track.lost_s, confirm_conf=track.confirm_conf)
        )
        self.regions = RegionEvents(regions)
        self._has_regions = bool(regions)
        self._names_of: dict[int, tuple[str, ...]] = {}  # zone bit mask -> names, built as masks occur
        self._bits = 1 << np.arange(len(regions.zones), dtype=np.int64)
        self.last_frame: Frame | None = None  # what the events of the source's end refer to

    def _zone_names(self, inside: np.ndarray) -> tuple[tuple[str, ...], ...]:
        """(N, Z) membership -> each box's zone names (through a bit mask: 200 boxes cost one matrix product)."""
        out = []
        for mask in (inside.astype(np.int64) @ self._bits).tolist():
            names = self._names_of.get(mask)
            if names is None:
                zones = self.regions.regions.zones
                names = self._names_of[mask] = tuple(z.name for j, z in enumerate(zones) if mask >> j & 1)
            out.append(names)
        return tuple(out)

    def __call__(self, frame: Frame, dets: Detections) -> Objects:
        self.last_frame = frame
        t = frame_time(frame)
        res = self.tracker.update(dets, t)
        rows = res.rows
        out = Detections(dets.xyxy[rows], dets.conf[rows], dets.cls[rows])
        cls = res.track_cls  # events, zone filters and counts go by the track's class, steadier than one box's
        events: list[Event] = []
        if res.started:
            for k in np.flatnonzero(np.isin(res.ids, list(res.started))):
                events.append(Event("start", int(res.ids[k]), int(cls[k]), float(out.conf[k]), box_tuple(out.xyxy[k])))
        zones: tuple[tuple[str, ...], ...] | None = None
        if self._has_regions:
            h, w = frame.image.shape[:2]
            order = np.flatnonzero(res.confirmed)
            order = order[np.argsort(res.ids[order], kind="stable")]  # RegionEvents keeps its rows in id order
            now_in = self.regions.membership(out.xyxy[order], cls[order], (w, h))
            inside, zone_events = self.regions.update(
                t, res.ids[order], out.xyxy[order], cls[order], out.conf[order], now_in, (w, h)
            )
            member = np.zeros((len(out), inside.shape[1]), bool)
            member[order] = inside  # after each zone's inertia
            events += zone_events
            zones = self._zone_names(member)
        return Objects(out, res.ids, zones, (*events, *self._ended(res.ended)))

    def finish(self) -> list[Event]:
        """The source ended: its objects leave their zones and end, as if lost."""
        return self._ended(self.tracker.finish())

    def _ended(self, ended: Sequence[EndedTrack]) -> list[Event]:
        """Tracks given up: they leave the zones they were in, then end."""
        events = self.regions.end(ended) if self._has_regions else []
        for track in ended:
            duration = track.last_t - track.first_t
            events.append(Event("end", track.track_id, track.cls, track.best_conf, track.box, duration_s=duration, best_conf=track.best_conf))
        return events


@dataclass(frozen=True)
class ObjectCounts:
    """What Prometheus shows: objects in each zone now, crossings and events so far (labels, not ids)."""

    in_zone: Mapping[tuple[str, str, str], int]  # (source, zone, label) -> objects now
    crossings: Mapping[tuple[str, str, str, str], int]  # (source, line, direction, label) -> total
    events: Mapping[tuple[str, str], int]  # (source, event) -> total
    unconfirmed: Mapping[str, int]  # source -> boxes not published because their new track was not confirmed yet


class ObjectStage:
    """All sources: a SourceObjects for each tracked one; the others are filtered to --conf only.

    Called on the publishing thread; `counts()` is called by a Prometheus scrape from its own, hence the lock."""

    def __init__(self, tracking: Sequence[SourceTracking], names: Mapping[int, str], conf: float) -> None:
        self.conf = conf
        self.names = dict(names)
        self.sources = {
            t.source: SourceObjects(t, resolve(t.source, t.zones, t.lines, names), conf) for t in tracking if t.track is not None
        }
        self._lock = threading.Lock()
        self._crossings: dict[tuple[str, str, str, str], int] = {}
        self._events: dict[tuple[str, str], int] = {}
        self._zone_labels: dict[tuple[str, str], set[str]] = {}  # labels ever counted in a zone: their gauges stay, at 0

    @property
    def enabled(self) -> bool:
        return bool(self.sources)

    def detection_conf(self) -> float:
        """The postprocess threshold: ByteTrack's second pass needs the weak boxes too."""
        lows = [s.tracker.settings.low_conf for s in self.sources.values()]
        return min([self.conf, *lows]) if lows else self.conf

    def __call__(self, frame: Frame, dets: Detections) -> Objects:
        stage = self.sources.get(frame.source)
        if stage is None:
            return Objects(self.confident(dets))
        with self._lock:
            objects = stage(frame, dets)
            self._count(frame.source, objects.events)
        return objects

    def finish(self, source: str) -> tuple[Frame | None, list[Event]]:
        """At the end of a source's stream: the end of its objects, and the last frame they were seen in."""
        stage = self.sources.get(source)
        if stage is None or stage.last_frame is None:
            return None, []
        with self._lock:
            events = stage.finish()
            self._count(source, events)
        return stage.last_frame, events

    def _count(self, source: str, events: Sequence[Event]) -> None:
        for e in events:
            key = (source, e.kind)
            self._events[key] = self._events.get(key, 0) + 1
            if e.kind == "cross":
                cross = (source, e.line or "", e.direction or "", self.names.get(e.cls, str(e.cls)))
                self._crossings[cross] = self._crossings.get(cross, 0) + 1

    def confident(self, dets: Detections) -> Detections:
        """The boxes at or above --conf (postprocess ran lower for the tracker's second pass)."""
        if not len(dets) or dets.conf.min() >= self.conf:
            return dets
        keep = dets.conf >= self.conf
        return Detections(dets.xyxy[keep], dets.conf[keep], dets.cls[keep])

    def counts(self) -> ObjectCounts:
        with self._lock:
            in_zone: dict[tuple[str, str, str], int] = {}
            for source, stage in self.sources.items():
                for zone, by_cls in stage.regions.counts().items():
                    seen = self._zone_labels.setdefault((source, zone), set())
                    seen.update(self.names.get(c, str(c)) for c in by_cls)
                    for label in seen:
                        in_zone[(source, zone, label)] = 0
                    for c, n in by_cls.items():
                        in_zone[(source, zone, self.names.get(c, str(c)))] = n
            unconfirmed = {source: stage.tracker.unconfirmed for source, stage in self.sources.items()}
            return ObjectCounts(in_zone, dict(self._crossings), dict(self._events), unconfirmed)
