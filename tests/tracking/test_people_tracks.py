"""People clips (real people cut out of Ultralytics' photos) with true ids and true line crossings, and
`edge-rt bench track` on one of them with the shipped people detector, beside Ultralytics' trackers.

Real mp4s written with OpenCV, the real people model through ONNX Runtime, Ultralytics' real trackers,
TrackEval. Short clips keep it to seconds; docs/tracking.md has the figures of the four 10 s clips and twelve more.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_rt.bench.track_lines import read_truth
from edge_rt.tracking.mot import read_mot
from edge_rt.training.people import load_people
from edge_rt.training.people_clips import SCENES, iter_people_clip, people_clip
from edge_rt.training.synth_tracks import gt_path
from tests.helpers import ROOT, run_cli

PEOPLE_ONNX = ROOT / "models" / "people" / "people.onnx"
SIZE, FRAMES = (640, 360), 150


@pytest.fixture(scope="module")
def kit():  # type: ignore[no-untyped-def]
    return load_people()


@pytest.fixture(scope="module")
def line_clip(tmp_path_factory: pytest.TempPathFactory, kit) -> Path:  # type: ignore[no-untyped-def]
    return people_clip(tmp_path_factory.mktemp("people") / "line.mp4", "line", frames=FRAMES, size=SIZE, seed=0, kit=kit).video


@pytest.fixture(scope="module")
def groups_clip(tmp_path_factory: pytest.TempPathFactory, kit) -> Path:  # type: ignore[no-untyped-def]
    return people_clip(tmp_path_factory.mktemp("people") / "groups.mp4", "groups", frames=FRAMES, seed=0, kit=kit).video


def test_people_are_cut_from_the_photos_not_drawn(kit) -> None:  # type: ignore[no-untyped-def]
    """Five people, each a tight matte with most of its box covered (a person, not a rectangle or a sliver),
    and the photos' scenes with their people painted out."""
    assert len(kit.cutouts) == 5 and len(kit.scenes) == 2
    for c in kit.cutouts:
        assert c.bgr.shape[:2] == c.alpha.shape and c.bgr.shape[0] > 250
        assert 0.3 < float((c.alpha > 0.5).mean()) < 0.9, c.name
        assert c.bgr[c.alpha > 0.5].std() > 20  # real pixels: texture, not a flat fill


@pytest.mark.parametrize("scene", SCENES)
def test_each_scene_has_people_entering_leaving_and_hiding_each_other(scene: str, kit) -> None:  # type: ignore[no-untyped-def]
    seen: dict[int, list[int]] = {}
    least_visible = 1.0
    for f, (image, boxes, feet) in enumerate(iter_people_clip(scene, frames=300, size=SIZE, seed=0, kit=kit)):
        assert image.shape == (SIZE[1], SIZE[0], 3)
        for b in boxes:
            seen.setdefault(b.track_id, []).append(f)
            least_visible = min(least_visible, b.visibility)
        assert set(feet) == {b.track_id for b in boxes}
    assert len(seen) >= 6
    assert sorted(seen) == list(range(1, len(seen) + 1))  # ids in order of appearance, never reused
    entered = [i for i, frames in seen.items() if frames[0] > 0]
    left = [i for i, frames in seen.items() if frames[-1] < 299]
    assert len(entered) >= 4 and len(left) >= 4
    assert least_visible < 0.3  # someone is (nearly) hidden by someone else at some point


def test_line_scene_truth_counts_both_ways_and_not_those_who_turn_back(line_clip: Path) -> None:
    truth = json.loads(line_clip.with_name("line.lines.json").read_text())
    assert truth["line"]["points"] == [[0.5, 0.0], [0.5, 1.0]]
    assert truth["in"] >= 2 and truth["out"] >= 2
    crossers = {c["id"] for c in truth["crossings"]}
    gt = read_mot(gt_path(line_clip))
    assert len(crossers) < len(np.unique(gt.ids))  # the ones who walk up to the line and turn back are not counted
    assert sum(c["direction"] == "in" for c in truth["crossings"]) == truth["in"]


def test_bench_track_on_people_scores_and_counts_beside_ultralytics(groups_clip: Path, line_clip: Path, tmp_path: Path) -> None:
    """Five seconds of 720p groups walking side by side and past each other (and a small line clip), through
    the shipped people detector and the CLI: a table per clip, then the mean. One clip decides little
    (docs/tracking.md has 16); this one guards the tracker's gain on people (confirm_conf) and the line's
    count from going backwards."""
    out = tmp_path / "track.json"
    done = run_cli(
        "bench", "track", "-m", str(PEOPLE_ONNX), "-s", str(groups_clip), "-s", str(line_clip),
        "--every", "1", "--trackers", "edge_rt,bytetrack", "--json", str(out), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "mean of 2 clips: groups, line" in done.stdout and "line miss" in done.stdout and "naive" in done.stdout
    groups = json.loads(out.read_text())[0]
    truth = read_truth(groups_clip.with_name("groups.lines.json"))
    assert groups["lines"]["counts"] == truth.counts and sum(truth.counts.values()) >= 6
    rows = {r["tracker"]: r for r in groups["rows"]}
    ours, theirs = rows["edge_rt"], rows["bytetrack"]
    assert theirs["score"]["idf1"] > 0.5  # the detector finds these people: tracks that follow them score
    assert ours["score"]["idf1"] >= theirs["score"]["idf1"] and ours["score"]["hota"] >= theirs["score"]["hota"]
    assert ours["score"]["fp"] < theirs["score"]["fp"]  # boxes that match no person
    assert max(abs(ours["lines"]["events"][d] - truth.counts[d]) for d in ("in", "out")) <= 1


def test_cli_writes_a_people_clip_and_refuses_bad_combinations(tmp_path: Path) -> None:
    out = tmp_path / "walk.mp4"
    done = run_cli("dataset", "clip", str(out), "--tracks", "--people", "cross", "--frames", "30", "--size", "320x180")
    assert done.returncode == 0, done.stderr
    assert gt_path(out).is_file() and out.with_name("walk.lines.json").is_file() and "people" in done.stdout
    for args, msg in (
        (("--people", "cross"), "--people goes with --tracks"),
        (("--tracks", "--people", "crowd"), "choose a scene from cross, groups, stopgo, line"),
        (("--tracks", "--people", "line", "--objects", "3"), "--objects is for shapes"),
    ):
        bad = run_cli("dataset", "clip", str(tmp_path / "x.mp4"), *args)
        assert bad.returncode == 2 and msg in bad.stderr and "Traceback" not in bad.stderr
    for args, msg in (
        (("-s", str(tmp_path / "gone.mp4")), "--source '"),
        (("-s", str(out), "-s", str(out), "--gt", str(gt_path(out))), "2 --source and 1 --gt"),
        (("-s", str(out), "--lines", str(tmp_path / "none.json")), "--lines"),
    ):
        bad = run_cli("bench", "track", "-m", str(PEOPLE_ONNX), *args)
        assert bad.returncode == 2 and msg in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
