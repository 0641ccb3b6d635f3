"""Event clips (`edge-rt run --record`): the camera's own H.264 copied around events, checked packet by
packet against the source, on real files, a real RTSP camera and the real CLI."""

from __future__ import annotations

import os
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml

from edge_rt.camera.sources import Frame, parse_source
from edge_rt.client import EndOfStream, EventMessage, Subscriber
from edge_rt.recording.clip import encode_h264
from edge_rt.recording.recorder import SourceRecorder
from edge_rt.recording.retention import sweep
from edge_rt.recording.settings import RecordConfig
from edge_rt.tracking.events import Event
from edge_rt.wire.schema import json_schema
from tests.conftest import write_clip
from tests.helpers import ROOT, assert_clean_failure, run_cli, start_cli

av = pytest.importorskip("av", reason="recording needs PyAV (edge_rt[record])")
pytestmark = pytest.mark.timeout(180)
FPS = 30
IMAGE = np.zeros((8, 8, 3), np.uint8)  # the recorder only reads a frame's times


@pytest.fixture(scope="module")
def h264_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s of 320x180 H.264, a keyframe every 2 s (frames 0, 60, 120, ...), as a camera sends it."""
    folder = tmp_path_factory.mktemp("h264")
    return encode_h264(write_clip(folder / "src.mp4", frames=12 * FPS, size=(320, 180), fps=FPS), folder / "cam.mp4")


def packets(path: Path) -> list[tuple[int, bool, bytes]]:
    """(pts in frames, keyframe, payload) of every video packet, in decode order."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [
            (round(float((p.pts - (s.start_time or 0)) * s.time_base) * FPS), bool(p.is_keyframe), bytes(p))
            for p in c.demux(s)
            if p.size
        ]


def frame(i: int) -> Frame:
    return Frame("cam", i, IMAGE, time.time_ns(), time.perf_counter_ns(), i / FPS)


def event(kind: str, track_id: int) -> Event:
    return Event(kind, track_id, 0, 0.9, (1.0, 2.0, 3.0, 4.0))


def drive(recorder: SourceRecorder, frames: int, events: dict[int, list[Event]]) -> dict[int, list[str | None]]:
    """Feed frames (and the events raised at them) as the pipeline does; returns each event's clip path."""
    paths: dict[int, list[str | None]] = {}
    for i in range(frames):
        recorder.on_frame(frame(i))
        for e in events.get(i, []):
            paths.setdefault(i, []).append(recorder.on_event(frame(i), e))
    return paths


def test_clips_copy_the_source_from_the_keyframe_before_pre_roll_to_post_roll(h264_clip: Path, tmp_path: Path) -> None:
    spec = parse_source(f"cam={h264_clip}", 0)
    rec = SourceRecorder(spec, RecordConfig(dir=str(tmp_path), pre_s=1.0, post_s=1.0))
    # Object 1 from 3 s to 4 s; object 2 from 8 s, lost at 9 s: two stretches of activity, two clips.
    paths = drive(rec, 12 * FPS, {90: [event("start", 1)], 120: [event("end", 1)], 240: [event("start", 2)], 270: [event("end", 2)]})
    assert rec.close(30), "the writer finished"
    first, second = paths[90][0], paths[240][0]
    assert first and second and first != second
    assert paths[120] == [first] and paths[270] == [second], "an object's end carries the clip it is in"
    assert Path(first).name.endswith("-1.mp4") and Path(first).parent == tmp_path / "cam", "DIR/SOURCE/TIME-TRACK.mp4"
    source = packets(h264_clip)
    by_pts = {pts: payload for pts, _, payload in source}
    for path, (lo, hi) in ((first, (60, 150)), (second, (180, 300))):
        # Pre-roll 1 s before frame 90 (frame 60) starts at keyframe 60; post-roll ends 1 s after the end (150).
        got = packets(Path(path))
        assert got[0][1], "a clip starts at a keyframe"
        assert [p for p, _, _ in got] == [p - lo for p in range(lo, hi + 1)], f"{path}: every frame from {lo} to {hi}"
        assert all(payload == by_pts[pts + lo] for pts, _, payload in got), "packets copied, not re-encoded"
    assert not list(tmp_path.glob("*/*.part")), "no half-written file left"
    assert rec.counters.clips == 2 and rec.counters.failed == 0


def test_an_object_keeps_its_clip_open_until_it_ends_and_a_long_stay_is_cut(h264_clip: Path, tmp_path: Path) -> None:
    rec = SourceRecorder(parse_source(f"cam={h264_clip}", 0), RecordConfig(dir=str(tmp_path), pre_s=0.0, post_s=0.5, max_clip_s=4.0))
    # One object from 1 s to 11 s that enters a zone at 6.7 s: a clip from its start, cut at 5 s (nothing goes on
    # after a cut but events), a second from the enter, cut at 10.7 s; its end (11 s) names the clip it was last in.
    paths = drive(rec, 12 * FPS, {30: [event("start", 7)], 200: [event("enter", 7)], 330: [event("end", 7)]})
    assert rec.close(30)
    first, second = paths[30][0], paths[200][0]
    assert first and second and first != second and paths[330] == [second]
    assert [p for p, _, _ in packets(Path(first))] == list(range(0, 151)), "keyframe 0 to the cut at 1 s + 4 s"
    assert [p for p, _, _ in packets(Path(second))] == list(range(0, 141)), "keyframe 180 (6 s) to the cut at 6.7 s + 4 s"
    assert len(list((tmp_path / "cam").glob("*.mp4"))) == 2


def test_a_source_that_is_not_h264_is_re_encoded_to_h264(tmp_path: Path) -> None:
    mpeg4 = write_clip(tmp_path / "mpeg4.mp4", frames=90, size=(320, 180), fps=FPS)  # OpenCV's mp4v, as most test clips
    rec = SourceRecorder(parse_source(f"cam={mpeg4}", 0), RecordConfig(dir=str(tmp_path / "clips"), pre_s=0.5, post_s=0.5))
    paths = drive(rec, 90, {45: [event("start", 1)]})
    assert rec.close(30)
    with av.open(paths[45][0]) as c:
        s = c.streams.video[0]
        assert (s.codec_context.name, s.codec_context.pix_fmt) == ("h264", "yuv420p"), "what every browser plays"
        assert sum(1 for _ in c.decode(s)) >= 30


def test_clip_is_browser_ready_mp4_with_its_index_first(h264_clip: Path, tmp_path: Path) -> None:
    rec = SourceRecorder(parse_source(f"cam={h264_clip}", 0), RecordConfig(dir=str(tmp_path)))
    paths = drive(rec, 4 * FPS, {30: [event("enter", 3)]})
    assert rec.close(30)
    data = Path(paths[30][0]).read_bytes()
    assert data[4:8] == b"ftyp" and data.find(b"moov") < data.find(b"mdat"), "faststart: playable while it downloads"


def test_retention_deletes_by_age_then_oldest_first_by_size(tmp_path: Path) -> None:
    now = time.time()
    (tmp_path / "cam").mkdir()
    for i, age_days in enumerate((10, 3, 2, 1)):
        p = tmp_path / "cam" / f"c{i}.mp4"
        p.write_bytes(b"x" * 400_000)
        os.utime(p, (now - age_days * 86400, now - age_days * 86400))
    stale = tmp_path / "cam" / "old.mp4.part"
    stale.write_bytes(b"x")
    os.utime(stale, (now - 7200, now - 7200))
    other = tmp_path / "notes.mp4"  # not in a source folder: not ours
    other.write_bytes(b"x" * 10)
    assert sweep(tmp_path, keep_days=7, keep_mb=1.0, now=now) == 3  # c0 by age, .part left by a kill, c1 by size
    assert sorted(p.name for p in (tmp_path / "cam").iterdir()) == ["c2.mp4", "c3.mp4"]
    assert other.exists()


def test_live_rtsp_camera_clip_survives_the_camera_dropping(tmp_path: Path) -> None:
    from tests.support.rtsp import RtspServer, free_port, rtsp_available

    ok, reason = rtsp_available()
    if not ok:
        pytest.skip(reason)
    with RtspServer(port=free_port(), width=320, height=240, fps=15) as cam:
        spec = parse_source(f"gate={cam.url}", 0)
        rec = SourceRecorder(spec, RecordConfig(dir=str(tmp_path), pre_s=1.0, post_s=1.0))
        deadline = time.monotonic() + 15
        while rec.packets.buffered_bytes() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # a pre-roll's worth in the ring
        live = Frame("gate", 0, IMAGE, time.time_ns(), time.perf_counter_ns())
        path = rec.on_event(live, event("start", 1))
        time.sleep(1.0)
        cam.stop()  # the camera dies mid-clip and comes back
        time.sleep(0.5)
        cam.start()
        for i in range(40):  # frames keep coming from the detector's side while the object lives
            time.sleep(0.1)
            rec.on_frame(Frame("gate", i, IMAGE, time.time_ns(), time.perf_counter_ns()))
        rec.on_event(Frame("gate", 41, IMAGE, time.time_ns(), time.perf_counter_ns()), event("end", 1))
        for i in range(20):
            time.sleep(0.1)
            rec.on_frame(Frame("gate", 42 + i, IMAGE, time.time_ns(), time.perf_counter_ns()))
        assert rec.close(15)
    assert path is not None
    got = packets(Path(path))
    assert got[0][1], "starts at a keyframe"
    seconds = (got[-1][0] - got[0][0]) / FPS
    assert seconds >= 3.0, f"pre-roll + the object's life + post-roll, across the reconnect: {seconds:.1f}s"
    with av.open(path) as c:
        assert sum(1 for _ in c.decode(video=0)) >= 15 * 3 * 0.6, "it decodes after the gap"


def test_run_record_events_carry_the_clip_and_the_clip_is_the_camera_stream(tmp_path: Path) -> None:
    from edge_rt.training.synth_tracks import synth_track_clip

    made = synth_track_clip(tmp_path / "mpeg4.mp4", frames=150, size=(640, 360), seed=1, objects=3)
    video = encode_h264(made.video, tmp_path / "gate.mp4")
    endpoint = f"ipc://{tmp_path}/pub.sock"
    config = tmp_path / "gate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": str(ROOT / "models/demo/demo.onnx"),
                "publish": endpoint,
                "await_subscribers": 1,
                "stats_interval": 0,
                "sources": [{"name": "gate", "uri": str(video)}],
                "record": {"dir": str(tmp_path / "clips"), "pre_s": 0.5, "post_s": 0.5},
            }
        )
    )
    events: list[EventMessage] = []
    events_schema = jsonschema.Draft202012Validator(json_schema("events"))
    with Subscriber(endpoint, events=True) as sub:
        proc = start_cli("run", "--config", str(config))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            msg = sub.receive(500)
            if isinstance(msg, EventMessage):
                events_schema.validate(dict(msg.raw))
                events.append(msg)
            elif isinstance(msg, EndOfStream):
                break
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert events and all(e.clip for e in events), "every event in a clip names it"
    ends = [e for e in events if e.event == "end"]
    assert ends, "objects end"
    clips = {e.clip for e in events if e.clip}
    for clip in clips:
        assert Path(clip).is_file(), f"{clip} written by the time the run ended"
        with av.open(clip) as c:
            assert c.streams.video[0].codec_context.name == "h264"
    source = {payload for _, _, payload in packets(video)}
    assert all(payload in source for clip in clips for _, _, payload in packets(Path(clip))), "copied packets"
    assert "clip" in err and "record gate" in err


def test_record_mistakes_get_one_line_before_any_camera_opens(tmp_path: Path, h264_clip: Path) -> None:
    model = str(ROOT / "models/demo/demo.onnx")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_clean_failure(run_cli("run", "-m", model, "-s", str(h264_clip), "--record", str(blocker / "clips")), "cannot write clips")
    config = tmp_path / "c.yaml"
    for record, expected in (
        ({"dir": "x", "pre_s": -1}, "record.pre_s"),
        ({"dir": "x", "every": 1}, "unknown key 'every'"),
        ({"dir": "x", "events": ["stop"]}, "unknown event 'stop'"),
        (True, "no folder"),
    ):
        config.write_text(yaml.safe_dump({"model": model, "sources": [str(h264_clip)], "record": record}))
        assert_clean_failure(run_cli("run", "--config", str(config)), expected)
    config.write_text(yaml.safe_dump({"model": model, "sources": [{"uri": "0", "record": str(tmp_path)}]}))
    assert_clean_failure(run_cli("run", "--config", str(config)), "cannot be opened a second time")


@pytest.mark.parametrize("how", ["-s cam=0", "-s /dev/video0", "record: with uri: 0"])
def test_record_on_a_camera_alone_stops_before_it_opens(tmp_path: Path, how: str) -> None:
    """--record (or a top-level record:) on a camera index or /dev/video device is not a silent no-op."""
    model = str(ROOT / "models/demo/demo.onnx")
    if how.startswith("-s"):
        result = run_cli("run", "-m", model, *how.split(), "--record", str(tmp_path / "clips"), timeout=30)
    else:
        config = tmp_path / "c.yaml"
        config.write_text(yaml.safe_dump({"model": model, "sources": [{"uri": 0}], "record": str(tmp_path / "clips")}))
        result = run_cli("run", "--config", str(config), timeout=30)
    assert_clean_failure(result, "cannot be opened a second time")
    assert result.returncode == 2
    assert "retry" not in result.stderr.lower() and not (tmp_path / "clips").exists()
