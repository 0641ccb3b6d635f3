"""The tracker, zones, lines and events on boxes we control: ids that hold when frames are skipped,
lines that count once, zones that debounce, and every config mistake as one line."""

from __future__ import annotations

import re

import numpy as np
import pytest

from edge_rt.camera.sources import Frame
from edge_rt.detect.postprocess import Detections
from edge_rt.errors import ConfigError
from edge_rt.tracking.bytetrack import ByteTracker, TrackerSettings
from edge_rt.tracking.events import RegionEvents
from edge_rt.tracking.settings import SourceTracking, TrackConfig, parse_track, source_tracking
from edge_rt.tracking.stage import ObjectStage
from edge_rt.tracking.zones import LineSpec, parse_regions, resolve

NAMES = {0: "person", 1: "car"}


def dets(boxes: list[tuple[float, float, float, float]], conf: float | list[float] = 0.9, cls: int = 0) -> Detections:
    n = len(boxes)
    confs = np.full(n, conf, np.float32) if np.isscalar(conf) else np.asarray(conf, np.float32)
    return Detections(np.asarray(boxes, np.float32).reshape(n, 4), confs, np.full(n, cls, np.int64))


def square(x: float, y: float, size: float = 30) -> tuple[float, float, float, float]:
    return (x, y, x + size, y + size)


def ids_of(tracker: ByteTracker, d: Detections, t: float) -> list[int]:
    res = tracker.update(d, t)
    out = [-1] * len(d)
    for row, tid in zip(res.rows.tolist(), res.ids.tolist()):
        out[row] = tid
    return out


def test_two_objects_that_pass_each_other_keep_their_ids() -> None:
    tracker = ByteTracker()
    seen: list[list[int]] = []
    for f in range(60):  # A goes right, B goes left, on rows 10 px apart: their boxes overlap mid-way
        seen.append(ids_of(tracker, dets([square(20 + 8 * f, 100), square(500 - 8 * f, 110)]), f / 30))
    assert seen[0] == [1, 2]
    assert all(s == [1, 2] for s in seen), seen


def test_ids_hold_when_frames_are_skipped_because_the_filter_steps_by_time() -> None:
    """15 px a frame, a 30 px box, only every 3rd frame seen: the box jumps 45 px between updates. A filter
    that steps one frame per update predicts 15 px and finds no overlap; stepping by the real time keeps it."""

    def run(clock: str) -> list[int]:
        tracker = ByteTracker()
        ids: list[int] = []
        seen = [*range(10), *range(12, 90, 3)]  # every frame while it learns the speed, then every third
        for k, f in enumerate(seen):
            t = f / 30 if clock == "time" else k / 30  # "frames": as if the skipped frames never happened
            ids += ids_of(tracker, dets([square(10 + 15 * f, 50)]), t)
        return ids

    assert set(run("time")) == {1}
    assert run("frames")[-10:] != [1] * 10  # the same boxes, stepped by frame count: the object is lost


def test_a_weak_box_continues_a_track_and_a_lost_track_waits_lost_s_seconds() -> None:
    tracker = ByteTracker(TrackerSettings(conf=0.25, low_conf=0.1, lost_s=1.0))
    for f in range(10):
        assert ids_of(tracker, dets([square(10 + 4 * f, 50)]), f / 30) == [1]
    assert ids_of(tracker, dets([square(50, 50)], conf=0.15), 10 / 30) == [1]  # ByteTrack's second pass
    assert ids_of(tracker, dets([square(54, 50)], conf=0.05), 11 / 30) == [-1]  # under low_conf: not used
    # Gone for 0.8 s (under lost_s): found again with its id.
    assert ids_of(tracker, dets([square(10 + 4 * 35, 50)]), 35 / 30) == [1]
    # Gone for 1.5 s: ended, and the next object gets a new id, never 1 again.
    ended = tracker.update(dets([]), 81 / 30).ended
    assert [e.track_id for e in ended] == [1]
    assert ended[0].best_conf == pytest.approx(0.9)
    assert ids_of(tracker, dets([square(10 + 4 * 82, 50)]), 82 / 30) == [-1]  # a new track: published from its 2nd box
    assert ids_of(tracker, dets([square(10 + 4 * 83, 50)]), 83 / 30) == [2]


def test_a_new_track_is_confirmed_on_its_second_box_and_a_one_frame_flicker_never_starts() -> None:
    tracker = ByteTracker()
    assert tracker.update(dets([square(10, 10)]), 0.0).started == {1}  # the first frame: confirmed at once
    res = tracker.update(dets([square(12, 10), square(300, 300)]), 1 / 30)
    assert res.started == frozenset() and res.rows.tolist() == [0]  # a new track's first box waits (counted)
    assert tracker.unconfirmed == 1
    res = tracker.update(dets([square(14, 10), square(302, 300)]), 2 / 30)
    assert res.started == {2}
    res = tracker.update(dets([square(16, 10), square(150, 150)]), 3 / 30)  # a flicker
    tracker.update(dets([square(18, 10)]), 4 / 30)
    assert tracker.update(dets([square(20, 10)]), 5 / 30).ended == ()  # the flicker ends unseen: no end event


def test_ids_count_the_published_objects_a_flicker_uses_none() -> None:
    """Ids jumped (1, 5, 6, 7, 12 ...): a new track that was never confirmed used one up. Users count objects by id."""
    tracker = ByteTracker()
    assert ids_of(tracker, dets([square(10, 10)]), 0.0) == [1]
    for f in range(1, 6):  # a one-frame flicker on every frame, each somewhere else: never confirmed
        assert ids_of(tracker, dets([square(10 + 2 * f, 10), square(100 + 60 * f, 300)]), f / 30) == [1, -1]
    assert ids_of(tracker, dets([square(22, 10), square(300, 100)]), 6 / 30) == [1, -1]
    res = tracker.update(dets([square(24, 10), square(302, 100)]), 7 / 30)
    assert res.ids.tolist() == [1, 2] and res.started == {2}  # the next object published is the 2nd: id 2
    assert tracker.unconfirmed == 6


def test_clock_going_back_ends_every_track() -> None:
    tracker = ByteTracker()
    tracker.update(dets([square(10, 10)]), 5.0)
    res = tracker.update(dets([square(10, 10)]), 0.0)  # a looping file started again
    assert [e.track_id for e in res.ended] == [1]
    assert tracker.update(dets([square(11, 10)]), 1 / 30).ids.tolist() == [2]


# ------------------------------------------------------------------------------------ zones and lines


def stage_for(zones: object = None, lines: object = None, track: TrackConfig | None = TrackConfig()) -> ObjectStage:
    z, ln = parse_regions("gate", zones, lines)
    return ObjectStage([SourceTracking("gate", track, z, ln)], NAMES, 0.25)


def frame(i: int, size: tuple[int, int] = (400, 200)) -> Frame:
    w, h = size
    return Frame("gate", i, np.zeros((h, w, 3), np.uint8), 0, 0, i / 30)


def feed(stage: ObjectStage, path: list[tuple[float, float]], cls: int = 0) -> list[tuple[int, str, str | None]]:
    """One object whose bottom centre follows `path` (pixels); returns (frame, event, zone/line+direction)."""
    events = []
    for i, (x, y) in enumerate(path):
        objects = stage(frame(i), dets([(x - 10, y - 30, x + 10, y)], cls=cls))
        events += [(i, e.kind, e.zone or (f"{e.line} {e.direction}" if e.line else None)) for e in objects.events]
    return events


def test_a_line_counts_a_crossing_once_however_the_object_jitters_on_it() -> None:
    stage = stage_for(lines={"gate": [[0.5, 0.0], [0.5, 1.0]]})  # x = 200 px, drawn top to bottom: `in` is right -> left
    jitter = [(200 + (3 if i % 2 else -3), 100) for i in range(20)]  # inside the margin (0.01 of 447 px = 4.5 px)
    path = [(260 - 5 * i, 100) for i in range(10)] + jitter + [(195 - 5 * i, 100) for i in range(10)]
    path += [(150 + 5 * i, 100) for i in range(20)]  # and back
    crossings = [e for e in feed(stage, path) if e[1] == "cross"]
    assert [c[2] for c in crossings] == ["gate in", "gate out"]
    counts = stage.counts().crossings
    assert counts == {("gate", "gate", "in", "person"): 1, ("gate", "gate", "out", "person"): 1}


def test_two_people_passing_each_other_on_the_line_never_add_a_count_the_wrong_way() -> None:
    """The ids swap as they meet, 5 px either side of the line: each track jumps across it and walks back.
    Counted from one box's side, that is two crossings each way; the line waits for two boxes past it."""
    for inertia, expected in ((1, 4), (2, 0)):
        zones, lines = parse_regions("gate", None, {"gate": {"points": [[0.5, 0.0], [0.5, 1.0]], "inertia": inertia}})
        events = RegionEvents(resolve("gate", zones, lines, NAMES))  # fed the tracks as given: the swap is forced
        crossings = []
        for f in range(41):
            a, b = 100 + 5 * f, 300 - 5 * f  # A walks right (out), B walks left (in): they meet at x = 200
            xa, xb = (a, b) if f < 19 else (b, a)  # track 1 is A until frame 19, then B
            boxes = np.array([[xa - 10, 50, xa + 10, 100], [xb - 10, 50, xb + 10, 100]], np.float64)
            _, raised = events.update(
                f / 30, np.array([1, 2]), boxes, np.zeros(2, np.int64), np.ones(2), np.zeros((2, 0), bool), (400, 200)
            )
            crossings += [(e.track_id, e.direction) for e in raised if e.kind == "cross"]
        assert len(crossings) == expected, crossings
    assert expected == 0  # the default: no count rather than a wrong one (both people are missed: off by 1 each way)
    assert LineSpec("gate", ((0.5, 0.0), (0.5, 1.0))).inertia == 2


def test_a_track_whose_boxes_never_reach_confirm_conf_is_never_published() -> None:
    """A static false detection (a poster, a reflection) at 0.3 for three seconds: no id, nothing published,
    every box counted as unconfirmed. A person at 0.3 who then shows at 0.6 is published from that box on."""
    tracker = ByteTracker(TrackerSettings(conf=0.25))
    for f in range(90):
        assert tracker.update(dets([square(50, 50, 60)], conf=0.3), f / 30).ids.tolist() == []
    assert tracker.unconfirmed == 90
    res = tracker.update(dets([square(50, 50, 60)], conf=0.6), 90 / 30)
    assert res.ids.tolist() == [1] and res.started == {1}
    assert tracker.update(dets([square(51, 50, 60)], conf=0.3), 91 / 30).ids.tolist() == [1]  # confirmed: it stays
    low = ByteTracker(TrackerSettings(conf=0.25, confirm_conf=0.25))  # as Ultralytics: any second box confirms
    low.update(dets([square(50, 50, 60)], conf=0.3), 0.0)
    assert low.update(dets([square(50, 50, 60)], conf=0.3), 1 / 30).ids.tolist() == [1]


def test_a_line_ignores_objects_passing_beyond_its_ends_and_classes_outside_its_filter() -> None:
    stage = stage_for(lines={"half": [[0.5, 0.0], [0.5, 0.4]]})  # top 40 % only (y < 80 px)
    assert [e for e in feed(stage, [(260 - 10 * i, 150) for i in range(15)]) if e[1] == "cross"] == []
    stage = stage_for(lines={"cars": {"points": [[0.5, 0.0], [0.5, 1.0]], "classes": ["car"]}})
    assert [e for e in feed(stage, [(260 - 10 * i, 150) for i in range(15)], cls=0) if e[1] == "cross"] == []
    stage = stage_for(lines={"cars": {"points": [[0.5, 0.0], [0.5, 1.0]], "classes": ["car"]}})
    assert [e[2] for e in feed(stage, [(260 - 10 * i, 150) for i in range(15)], cls=1) if e[1] == "cross"] == ["cars in"]


def test_zone_enter_exit_debounced_loiter_once_and_exit_when_the_track_ends() -> None:
    stage = stage_for(zones={"dock": {"points": [[0.0, 0.5], [0.5, 0.5], [0.5, 1.0], [0.0, 1.0]], "loiter_s": 1.0}})
    walk_in = [(float(x), 150.0) for x in range(260, 145, -5)]  # the zone is x < 200
    stay = [(150.0, 150.0)] * 40  # 1.3 s: past loiter_s
    walk_out = [(float(x), 150.0) for x in range(150, 265, 5)]
    jitter = [(200.0 + (3 if i % 2 else -3), 150.0) for i in range(12)]  # on the edge: never 2 frames in a row on one side
    path = walk_in + stay + walk_out + [(float(x), 150.0) for x in range(260, 200, -5)] + jitter + walk_in[-10:]
    events = feed(stage, path)
    kinds = [(k, z) for _, k, z in events if k != "start"]
    assert kinds == [("enter", "dock"), ("loiter", "dock"), ("exit", "dock"), ("enter", "dock")]
    assert stage.counts().in_zone == {("gate", "dock", "person"): 1}
    # The object vanishes: once lost_s passes its track ends, and it leaves the zone with it.
    tail = [stage(frame(len(path) + k), dets([])).events for k in range(40)]
    flat = [(e.kind, e.zone) for batch in tail for e in batch]
    assert flat == [("exit", "dock"), ("end", None)]
    assert stage.counts().in_zone == {("gate", "dock", "person"): 0}
    # A source that ends (a file, or shutdown) ends what it still tracks: it leaves its zone, then ends.
    feed(stage, walk_in)
    last, finished = stage.finish("gate")
    assert last is not None and [(e.kind, e.zone) for e in finished] == [("exit", "dock"), ("end", None)]
    assert stage.counts().in_zone == {("gate", "dock", "person"): 0} and stage.finish("gate")[1] == []


def test_detections_list_the_zones_they_are_in_and_untracked_sources_pass_through() -> None:
    stage = stage_for(zones={"left": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "all": [[0, 0], [1, 0], [1, 1], [0, 1]]})
    zones = [stage(frame(i), dets([(40, 40, 60, 90), (300, 40, 320, 90)])).zones for i in range(3)]
    assert zones[-1] == (("left", "all"), ("all",))
    other = Frame("other", 0, np.zeros((10, 10, 3), np.uint8), 0, 0)
    out = stage(other, dets([(1, 1, 5, 5), (2, 2, 6, 6)], conf=[0.9, 0.2]))  # not tracked: only the --conf filter
    assert out.track_ids is None and out.zones is None and out.dets.conf.tolist() == [pytest.approx(0.9)]


BAD = [
    ({"zones": {"dock": [[0.1, 0.1], [0.2, 0.2]]}}, "zones.dock: needs at least 3 points, got 2"),
    ({"lines": {"gate": [[0.5, 0.5]]}}, "lines.gate: needs 2 points, got 1"),
    ({"lines": {"gate": [[0.5, 0.0], [0.5, 1.2]]}}, "lines.gate[1]: [0.5, 1.2] is outside the frame"),
    ({"zones": {"dock": [[0, 0], [1, 0], [1, 1]]}, "lines": {"dock": [[0, 0], [1, 1]]}}, "the name 'dock' is used twice"),
    ({"zones": {"dock": {"points": [[0, 0], [1, 0], [1, 1]], "loiter": 3}}}, "zones.dock: unknown key 'loiter'"),
    ({"zones": {"dock": {"points": [[0, 0], [1, 0], [1, 1]], "loiter_s": -1}}}, "zones.dock.loiter_s: expected a number > 0"),
    ({"zones": {"dock": [[0, 0], [1, 0], [1, 1]]}, "track": False}, "track: false, but zones and lines need tracking"),
    ({"track": {"lost": 2}}, "track: unknown key 'lost'"),
    ({"track": {"confirm_conf": 1.5}}, "track.confirm_conf: expected a number in [0, 1]"),
    ({"lines": {"gate": {"points": [[0.5, 0.0], [0.5, 1.0]], "inertia": 0}}}, "lines.gate.inertia: expected a whole number > 0"),
]


@pytest.mark.parametrize(("entry", "message"), BAD)
def test_config_mistakes_name_the_source_and_the_key(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        source_tracking("gate", entry, None)
    assert "gate" in str(err.value)


def test_an_unknown_class_in_a_filter_is_named_with_what_the_model_has() -> None:
    zones, lines = parse_regions("gate", {"dock": {"points": [[0, 0], [1, 0], [1, 1]], "classes": ["forklift"]}}, None)
    with pytest.raises(
        ConfigError, match=r"source 'gate': zones.dock.classes: the model has no class 'forklift' \(it has: person, car\)"
    ):
        resolve("gate", zones, lines, NAMES)
    assert parse_track("track", True) == TrackConfig() and parse_track("track", {"lost_s": 2}) == TrackConfig(lost_s=2.0)
    assert parse_track("track", {"confirm_conf": 0.3}) == TrackConfig(confirm_conf=0.3)


def test_prometheus_shows_objects_in_zones_crossings_and_events() -> None:
    from prometheus_client import generate_latest

    from edge_rt.ops.prometheus import PrometheusMetrics

    stage = stage_for(zones={"left": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}, lines={"middle": [[0.5, 0.0], [0.5, 1.0]]})
    feed(stage, [(float(x), 100.0) for x in range(260, 140, -5)])  # right to left: crosses `in`, enters `left`
    metrics = PrometheusMetrics(lambda: {}, lambda: {}, objects=stage.counts)
    text = generate_latest(metrics.registry).decode()
    assert 'edge_rt_zone_objects{label="person",source="gate",zone="left"} 1.0' in text
    assert 'edge_rt_line_crossings_total{direction="in",label="person",line="middle",source="gate"} 1.0' in text
    assert 'edge_rt_events_total{event="enter",source="gate"} 1.0' in text
    assert 'edge_rt_boxes_unconfirmed_total{source="gate"} 0.0' in text  # the first frame confirms at once
