"""Tracking against ground truth: the synthetic clip's true ids, TrackEval scores, `edge-rt bench track`.

Real mp4s written with OpenCV, the real demo model, real TrackEval, Ultralytics' real trackers.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from edge_rt.cli import main
from edge_rt.errors import ConfigError
from edge_rt.tracking.mot import MotRows, read_mot, score, write_mot
from edge_rt.training.synth_tracks import gt_path, iter_track_clip, synth_track_clip
from tests.helpers import ROOT, cli, env, run_cli

DEMO_ONNX = ROOT / "models" / "demo" / "demo.onnx"
FRAMES, SIZE, CROSSING, OBJECTS = 120, (480, 270), 80.0, 6  # small and quick; objects enter and leave within it
TOLERANCE = 0.02  # edge_rt's tracker against Ultralytics' ByteTrack: IDF1 and HOTA, absolute


@pytest.fixture(scope="module")
def track_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tracks")
    return synth_track_clip(
        folder / "clip.mp4", frames=FRAMES, size=SIZE, fps=30, seed=3, objects=OBJECTS, crossing=CROSSING
    ).video


@pytest.fixture(scope="module")
def gt(track_clip: Path) -> MotRows:
    return read_mot(gt_path(track_clip))


@pytest.fixture(scope="module")
def bench(track_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`edge-rt bench track` on the clip, run once as a user runs it: its stdout and its JSON."""
    out = tmp_path_factory.mktemp("bench") / "track.json"
    proc = subprocess.run(
        [
            *cli("bench", "track", "--model", str(DEMO_ONNX), "--source", str(track_clip)),
            *("--gt", str(gt_path(track_clip)), "--every", "1,2", "--json", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env(),
    )
    assert proc.returncode == 0, proc.stderr
    return {"stdout": proc.stdout, "json": json.loads(out.read_text())}


# --------------------------------------------------------------------------------------- the generator


def test_ground_truth_is_self_consistent(track_clip: Path, gt: MotRows) -> None:
    frames = [boxes for _, boxes in iter_track_clip(FRAMES, SIZE, seed=3, objects=OBJECTS, crossing=CROSSING)]
    rows = [(f + 1, b) for f, boxes in enumerate(frames) for b in boxes]
    # the file says what the generator says (MOTChallenge's 1-based pixels, read back to 0-based)
    assert len(gt) == len(rows)
    order = np.lexsort((gt.ids, gt.frame))
    assert gt.frame[order].tolist() == [f for f, _ in rows]
    assert gt.ids[order].tolist() == [b.track_id for _, b in rows]
    assert np.allclose(gt.xyxy[order], [(b.x1, b.y1, b.x2, b.y2) for _, b in rows], atol=0.01)
    assert gt.cls[order].tolist() == [b.cls + 1 for _, b in rows]  # 1-based classes
    assert (gt.conf == 1).all()
    # ids 1..n, unique within every frame, boxes inside the frame
    ids = np.unique(gt.ids)
    assert ids.tolist() == list(range(1, OBJECTS + 1))
    pairs = np.stack([gt.frame, gt.ids], axis=1)
    assert len(np.unique(pairs, axis=0)) == len(gt)
    w, h = SIZE
    assert (gt.xyxy[:, :2] >= -1e-6).all() and (gt.xyxy[:, 2] <= w + 1e-6).all() and (gt.xyxy[:, 3] <= h + 1e-6).all()
    # occlusions: objects well inside the frame but mostly or wholly hidden by a nearer one
    hidden = [b for _, b in rows if b.in_frame > 0.99 and b.visibility < 0.5]
    assert len({b.track_id for b in hidden}) >= 2
    assert any(b.visibility == 0 for b in hidden), "no full occlusion"
    # every object enters from an edge after the first frame, and most leave before the end
    entered = left = 0
    for tid in ids:
        mine = sorted((f, b) for f, b in rows if b.track_id == tid)
        (f0, b0), (f1, b1) = mine[0], mine[-1]
        entered += f0 > 1 and _at_edge(b0, w, h)
        left += f1 < FRAMES and _at_edge(b1, w, h)
    assert entered == OBJECTS
    assert left >= OBJECTS // 2


def _at_edge(b: object, w: int, h: int) -> bool:
    x1, y1, x2, y2 = (getattr(b, k) for k in ("x1", "y1", "x2", "y2"))
    return min(x1, y1) <= 1 or x2 >= w - 1 or y2 >= h - 1


def test_generator_is_deterministic_per_seed() -> None:
    def first(seed: int) -> tuple[np.ndarray, list]:
        gen = iter_track_clip(40, (320, 180), seed=seed, objects=4, crossing=40)
        frames = list(gen)
        return frames[-1][0], [b for _, boxes in frames for b in boxes]

    a_img, a_boxes = first(5)
    b_img, b_boxes = first(5)
    c_img, c_boxes = first(6)
    assert np.array_equal(a_img, b_img) and a_boxes == b_boxes
    assert not np.array_equal(a_img, c_img) and a_boxes != c_boxes


# --------------------------------------------------------------------------------------- scoring


def test_ground_truth_scores_perfectly_against_itself(gt: MotRows) -> None:
    s = score(gt, gt)
    assert (s.hota, s.mota, s.idf1, s.idsw) == (pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0), 0)
    assert (s.frames, s.gt_ids, s.tracker_ids, s.fp, s.fn) == (FRAMES, OBJECTS, OBJECTS, 0, 0)
    odd = score(gt, gt.select(gt.frame % 2 == 1), frames=range(1, FRAMES + 1, 2))  # a tracker that saw every other frame
    assert (odd.hota, odd.idf1, odd.frames) == (pytest.approx(1.0), pytest.approx(1.0), FRAMES // 2)
    assert odd.gt_boxes == int((gt.frame % 2 == 1).sum())


def test_swapped_ids_lower_idf1_and_count_switches(gt: MotRows) -> None:
    mid = FRAMES // 2
    present = [set(gt.ids[gt.frame == f].tolist()) for f in (mid - 1, mid)]
    a, b = sorted(present[0] & present[1])[:2]
    ids = gt.ids.copy()
    later = gt.frame >= mid
    ids[later & (gt.ids == a)] = b
    ids[later & (gt.ids == b)] = a
    swapped = MotRows(gt.frame, ids, gt.xyxy, gt.conf, gt.cls, gt.visibility)
    s = score(gt, swapped)
    assert s.idsw == 2
    assert s.idf1 < 0.95 and s.hota < 0.99
    assert s.mota == pytest.approx(1 - 2 / len(gt))  # boxes all right: only the switches cost


def test_invisible_ground_truth_can_be_ignored(gt: MotRows) -> None:
    seen = gt.select(gt.visibility >= 0.5)  # a tracker that only follows what can be seen
    everything, visible_only = score(gt, seen), score(gt, seen, min_visibility=0.5)
    assert everything.fn == len(gt) - len(seen) and everything.idf1 < 1
    assert visible_only.fn == 0 and visible_only.idf1 == pytest.approx(1.0)
    assert visible_only.ignored_gt_boxes == len(gt) - len(seen)


def test_scores_equal_trackeval_on_files(gt: MotRows, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The in-memory data fed to TrackEval's metrics gives what TrackEval's own MOTChallenge reader gives."""
    import trackeval

    rng = np.random.default_rng(0)
    keep = rng.random(len(gt)) > 0.15  # missed boxes
    ids = gt.ids + 100 * (gt.frame > FRAMES // 3)  # every track broken once
    ids[gt.ids == 2] = 1000 + (gt.frame[gt.ids == 2] // 7)  # one object fragmented often
    xyxy = gt.xyxy + rng.normal(0, 3, gt.xyxy.shape)  # imprecise boxes
    xyxy[:, 2:] = np.maximum(xyxy[:, 2:], xyxy[:, :2] + 1)
    tracks = MotRows(gt.frame, ids, xyxy, gt.conf, np.full(len(gt), -1), np.ones(len(gt))).select(keep)
    write_mot(
        tmp_path / "gt" / "seq" / "gt" / "gt.txt",
        MotRows(gt.frame, gt.ids, gt.xyxy, gt.conf, np.ones(len(gt), np.int64), gt.visibility),
    )
    (tmp_path / "gt" / "seq" / "seqinfo.ini").write_text(f"[Sequence]\nname=seq\nseqLength={FRAMES}\n")
    write_mot(tmp_path / "trackers" / "t" / "data" / "seq.txt", tracks)
    quiet = {"PRINT_CONFIG": False}
    evaluator = trackeval.Evaluator(
        {
            "PRINT_RESULTS": False,
            "PRINT_CONFIG": False,
            "TIME_PROGRESS": False,
            "OUTPUT_SUMMARY": False,
            "OUTPUT_DETAILED": False,
            "PLOT_CURVES": False,
        }
    )
    dataset = trackeval.datasets.MotChallenge2DBox(
        {
            "GT_FOLDER": str(tmp_path / "gt"),
            "TRACKERS_FOLDER": str(tmp_path / "trackers"),
            "SKIP_SPLIT_FOL": True,
            "SEQ_INFO": {"seq": FRAMES},
            **quiet,
        }
    )
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR(dict(quiet)), trackeval.metrics.Identity(dict(quiet))]
    res, _ = evaluator.evaluate([dataset], metrics)
    capsys.readouterr()
    ref = res["MotChallenge2DBox"]["t"]["seq"]["pedestrian"]
    mine = score(read_mot(tmp_path / "gt" / "seq" / "gt" / "gt.txt"), read_mot(tmp_path / "trackers" / "t" / "data" / "seq.txt"))
    assert mine.hota == pytest.approx(float(np.mean(ref["HOTA"]["HOTA"])), abs=1e-9)
    assert mine.assa == pytest.approx(float(np.mean(ref["HOTA"]["AssA"])), abs=1e-9)
    assert mine.mota == pytest.approx(float(ref["CLEAR"]["MOTA"]), abs=1e-9)
    assert mine.idf1 == pytest.approx(float(ref["Identity"]["IDF1"]), abs=1e-9)
    assert mine.idsw == int(ref["CLEAR"]["IDSW"]) > 0
    assert 0.3 < mine.hota < 0.9


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("1,2,3,4,5\n", "is not a MOTChallenge line"),
        ("1,1,10,10,5,5,1,1,1\nframe,id,x,y,w,h\n", ":2: 'frame,id,x,y,w,h'"),
        ("0,1,10,10,5,5\n", "frame must be an integer >= 1"),
        ("1,1,10,10,-5,5\n", "width and height >= 0"),
        ("1,1,10,10,5,5\n1,1,20,20,5,5\n", "id 1 appears twice in frame 1"),
        ("\n", "holds no boxes"),
    ],
)
def test_read_mot_refuses_what_is_not_mot(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "gt.txt"
    path.write_text(text)
    with pytest.raises(ConfigError, match=says.replace("(", r"\(")) as info:
        read_mot(path)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------- bench track


def test_bench_track_scores_every_tracker(bench: dict, track_clip: Path) -> None:
    out, result = bench["stdout"], bench["json"]
    for label in ("edge_rt ByteTracker", "ultralytics ByteTrack", "ultralytics BoT-SORT"):
        assert sum(line.startswith(label) for line in out.splitlines()) == 2, out  # every 1 and every 2
    rows = {(r["tracker"], r["every"]): r for r in result["rows"]}
    assert set(rows) == {(t, k) for t in ("edge_rt", "bytetrack", "botsort") for k in (1, 2)}
    assert result["frames"] == FRAMES and result["gt_ids"] == OBJECTS
    for (_, every), row in rows.items():
        s = row["score"]
        assert s["frames"] == len(range(0, FRAMES, every))
        assert 0.2 < s["hota"] <= 1 and 0.2 < s["idf1"] <= 1, row  # the demo model finds these shapes
        assert row["cost_ms"]["p50"] > 0


@pytest.mark.parametrize("every", [1, 2])
def test_edge_rt_tracker_keeps_up_with_ultralytics_bytetrack(bench: dict, every: int) -> None:
    rows = {(r["tracker"], r["every"]): r["score"] for r in bench["json"]["rows"]}
    ours, theirs = rows[("edge_rt", every)], rows[("bytetrack", every)]
    figures = f"every {every}: edge_rt IDF1 {ours['idf1']:.3f} HOTA {ours['hota']:.3f}; Ultralytics ByteTrack IDF1 {theirs['idf1']:.3f} HOTA {theirs['hota']:.3f}"
    assert ours["idf1"] >= theirs["idf1"] - TOLERANCE, figures
    assert ours["hota"] >= theirs["hota"] - TOLERANCE, figures


def test_bench_track_scores_recorded_messages(
    track_clip: Path, gt: MotRows, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--messages`: `edge-rt subscribe` lines; a perfect record scores 1, untracked detections are left out."""
    lines = [json.dumps({"schema": "edge_rt.health", "source": "cam", "state": "online"})]
    for f in range(1, FRAMES + 1):
        here = gt.select(gt.frame == f)
        dets = [
            {"cls": 0, "label": "circle", "conf": 0.9, "box": [float(v) for v in box], "track_id": int(i)}
            for i, box in zip(here.ids, here.xyxy)
        ]
        dets.append({"cls": 1, "label": "square", "conf": 0.3, "box": [0.0, 0.0, 5.0, 5.0]})  # not on a track
        lines.append(json.dumps({"schema": "edge_rt.detections", "source": "cam", "frame_index": f - 1, "detections": dets}))
    lines.append(json.dumps({"schema": "edge_rt.eos", "source": "cam"}))
    messages = tmp_path / "run.jsonl"
    messages.write_text("\n".join(lines) + "\n")
    report = tmp_path / "report.json"
    assert main(["bench", "track", "--gt", str(gt_path(track_clip)), "--messages", str(messages), "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "recorded run.jsonl" in out
    (row,) = json.loads(report.read_text())["rows"]
    assert row["tracker"] == "messages" and row["score"]["frames"] == FRAMES
    assert row["score"]["hota"] == pytest.approx(1.0) and row["score"]["idsw"] == 0


def test_a_real_tracked_run_scores_against_ground_truth(track_clip: Path, tmp_path: Path) -> None:
    """`edge-rt run --track` on the clip, recorded by `edge-rt subscribe`, scored by `bench track --messages`."""
    endpoint = f"ipc://{tmp_path}/run.sock"
    messages = tmp_path / "run.jsonl"
    with messages.open("w") as fh:
        sub = subprocess.Popen(
            [*cli("subscribe", endpoint, "--until-eos", "--timeout", "60")],
            stdout=fh,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        try:
            time.sleep(0.5)
            run = run_cli(
                "run",
                "--model",
                str(DEMO_ONNX),
                "--source",
                str(track_clip),
                "--track",
                "--publish",
                endpoint,
                "--await-subscribers",
                "1",
                "--device",
                "cpu",
                timeout=120,
            )
            assert run.returncode == 0, run.stderr
            sub.wait(timeout=60)
        finally:
            if sub.poll() is None:
                sub.kill()
                sub.wait()
    report = tmp_path / "report.json"
    proc = run_cli("bench", "track", "--gt", str(gt_path(track_clip)), "--messages", str(messages), "--json", str(report))
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(report.read_text())["rows"]
    s = row["score"]
    assert s["frames"] == FRAMES  # a file source: every frame processed and published
    assert s["idf1"] > 0.4 and s["hota"] > 0.3, s
    assert s["tracker_ids"] >= OBJECTS


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--gt", "{missing}", "--messages", "{messages}"], "--gt"),
        (["--gt", "{notmot}", "--messages", "{messages}"], "not a MOTChallenge line"),
        (["--gt", "{gt}", "--model", "{model}", "--source", "{missing}"], "--source"),
        (["--gt", "{gt}", "--messages", "{missing}"], "--messages"),
        (["--gt", "{gt}", "--messages", "{notjson}"], "not a JSON line"),
        (["--gt", "{gt}", "--messages", "{untracked}"], "track_id"),
        (["--gt", "{gt}", "--messages", "{messages}", "--every", "0"], "--every '0'"),
        (["--gt", "{gt}", "--messages", "{messages}", "--every", "1,x"], "--every '1,x'"),
        (["--gt", "{gt}", "--messages", "{messages}", "--every", "2,-1"], "--every '2,-1'"),
        (["--gt", "{gt}", "--messages", "{messages}", "--trackers", "sort"], "--trackers"),
        (["--gt", "{gt}", "--model", "{model}"], "--model and --source go together"),
        (["--gt", "{gt}"], "nothing to score"),
    ],
)
def test_bench_track_bad_input_is_one_line(
    args: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = {
        "missing": tmp_path / "nope.txt",
        "gt": tmp_path / "gt.txt",
        "notmot": tmp_path / "notmot.txt",
        "model": DEMO_ONNX,
        "messages": tmp_path / "ok.jsonl",
        "notjson": tmp_path / "bad.jsonl",
        "untracked": tmp_path / "untracked.jsonl",
    }
    paths["gt"].write_text("1,1,10,10,20,20,1,1,1.0\n")
    paths["notmot"].write_text("<html>not a ground truth</html>\n")
    det = {"cls": 0, "label": "circle", "conf": 0.9, "box": [10, 10, 30, 30]}
    paths["messages"].write_text(
        json.dumps({"schema": "edge_rt.detections", "source": "c", "frame_index": 0, "detections": [{**det, "track_id": 1}]})
        + "\n"
    )
    paths["notjson"].write_text("{not json\n")
    paths["untracked"].write_text(
        json.dumps({"schema": "edge_rt.detections", "source": "c", "frame_index": 0, "detections": [det]}) + "\n"
    )
    argv = ["bench", "track", *(a.format(**{k: str(v) for k, v in paths.items()}) for a in args)]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and says in err, err
    assert "Traceback" not in err


def test_bench_track_bad_input_from_the_real_cli(tmp_path: Path) -> None:
    proc = run_cli(
        "bench", "track", "--gt", str(tmp_path / "missing.txt"), "--model", str(DEMO_ONNX), "--source", str(tmp_path / "c.mp4")
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--gt" in proc.stderr and "Traceback" not in proc.stderr


def test_dataset_clip_tracks_writes_clip_and_ground_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c.mp4"
    assert main(["dataset", "clip", str(out), "--tracks", "--frames", "30", "--size", "320x180", "--objects", "2"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and f"gt: {tmp_path / 'c.gt.txt'}" in printed
    assert out.stat().st_size > 0 and "frameRate=30" in (tmp_path / "c.seqinfo.ini").read_text()
    read_mot(tmp_path / "c.gt.txt")
    assert main(["dataset", "clip", str(out), "--objects", "3"]) == 2  # --objects needs --tracks
