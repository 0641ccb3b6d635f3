"""`edge-rt draw zones|clip` on a real clip and the real demo model: what is drawn, where, and bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from edge_rt.cli import main
from edge_rt.draw import anchor_note, draw_regions, in_direction, legend_corner, place_labels, to_pixels, zone_label
from edge_rt.tracking.zones import LineSpec, ZoneSpec, side_of_line
from edge_rt.training.synth_video import synth_clip

from .helpers import ROOT, read_frames, run_cli

pytestmark = pytest.mark.timeout(120)

DEMO = ROOT / "models" / "demo" / "demo.onnx"
SIZE = (320, 180)
FRAMES = 30
DOCK = [[0.1, 0.5], [0.4, 0.5], [0.4, 0.9], [0.1, 0.9]]
ENTRY = [[0.7, 0.0], [0.7, 1.0]]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_clip(tmp_path_factory.mktemp("draw") / "clip.mp4", frames=FRAMES, size=SIZE)


def write_config(path: Path, *sources: dict[str, Any], model: str | None = str(DEMO)) -> Path:
    values: dict[str, Any] = {"sources": list(sources)}
    if model is not None:
        values["model"] = model
    path.write_text(yaml.safe_dump(values))
    return path


def gate(clip: Path, **extra: Any) -> dict[str, Any]:
    return {"name": "gate", "uri": str(clip), "zones": {"dock": DOCK}, "lines": {"entry": ENTRY}, **extra}


def cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_draw_zones_fills_the_zone_and_leaves_the_rest(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "run.yaml", {"name": "other", "uri": str(clip)}, gate(clip), model=None)  # no model needed
    out = tmp_path / "zones.png"
    code, stdout, err = cli("draw", "zones", "--config", str(config), "--frame", "3", "--output", str(out), capsys=capsys)
    assert code == 0, err
    assert "source gate, 1 zone, 1 line," in stdout and str(out) in stdout
    drawn, source = cv2.imread(str(out)), read_frames(clip)[3]
    assert drawn.shape == source.shape == (SIZE[1], SIZE[0], 3)
    w, h = SIZE
    inside = (slice(int(0.6 * h), int(0.8 * h)), slice(int(0.2 * w), int(0.35 * w)))  # the dock, clear of its label
    changed = np.abs(drawn[inside].astype(int) - source[inside].astype(int)).sum(axis=2) > 0
    assert changed.mean() > 0.95
    far = (slice(0, int(0.3 * h)), slice(int(0.45 * w), int(0.55 * w)))  # between the dock and the line, above the arrow
    assert np.array_equal(drawn[far], source[far])


def test_draw_zones_on_a_picture(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    picture = np.full((240, 400, 3), 90, np.uint8)
    cv2.imwrite(str(tmp_path / "snap.jpg"), picture)
    config = write_config(tmp_path / "run.yaml", gate(clip))
    out = tmp_path / "zones.png"
    code, _, err = cli(
        "draw", "zones", "--config", str(config), "--image", str(tmp_path / "snap.jpg"), "-o", str(out), capsys=capsys
    )
    assert code == 0, err
    drawn, source = cv2.imread(str(out)), cv2.imread(str(tmp_path / "snap.jpg"))
    assert drawn.shape == source.shape
    assert not np.array_equal(drawn[170, 80], source[170, 80])  # inside the dock
    assert np.array_equal(drawn[:60, 190:210], source[:60, 190:210])


@pytest.mark.parametrize(
    ("make", "args", "expected"),
    [
        (None, ("--config", "{tmp}/missing.yaml"), "no such file"),
        ("ok", ("--config", "{cfg}", "--source", "nope"), "--source 'nope': the config has no such source (it has: gate, plain)"),
        ("two_points", ("--config", "{cfg}"), "source 'gate': zones.dock: needs at least 3 points, got 2"),
        ("ok", ("--config", "{cfg}", "--frame", "99"), "--frame 99 is past the end of the file (30 frames)"),
        ("ok", ("--config", "{cfg}", "--image", "{tmp}/none.jpg"), "--image"),
        ("ok", ("--config", "{cfg}", "--output", "{tmp}/no/such/dir/z.png"), "no such folder"),
        ("ok", ("--config", "{cfg}", "--output", "/proc/zones.png"), "--output '/proc/zones.png'"),
        ("ok", ("--config", "{cfg}", "--output", "{tmp}/zones.gif"), "expected a .png (or .jpg) file"),
    ],
)
def test_draw_zones_bad_input_is_one_line(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], make: str | None, args: tuple[str, ...], expected: str
) -> None:
    cfg = tmp_path / "run.yaml"
    plain = {"name": "plain", "uri": str(clip)}
    if make == "ok":
        write_config(cfg, gate(clip), plain)
    elif make == "plain":
        write_config(cfg, plain)
    elif make == "two_points":
        write_config(cfg, gate(clip, zones={"dock": DOCK[:2]}))
    argv = [a.format(tmp=tmp_path, cfg=cfg) for a in args]
    if "--output" not in argv:
        argv += ["--output", str(tmp_path / "zones.png")]
    code, _, err = cli("draw", "zones", *argv, capsys=capsys)
    assert code != 0
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err, err


def test_draw_clip_writes_every_frame_annotated(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "run.yaml", gate(clip))
    out = tmp_path / "annotated.mp4"
    code, stdout, err = cli("draw", "clip", "--config", str(config), "--output", str(out), capsys=capsys)
    assert code == 0, err
    line = stdout.strip()
    assert line.startswith(f"draw clip: {FRAMES} frames, ") and line.endswith(f"-> {out}"), line
    assert int(line.split(", ")[1].split()[0]) > 0  # the demo model finds the shapes: tracks were seen
    cap = cv2.VideoCapture(str(out))
    assert (cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (30, *SIZE)
    cap.release()
    frames, source = read_frames(out), read_frames(clip)
    assert len(frames) == FRAMES and frames[0].shape == source[0].shape
    assert np.abs(frames[5].astype(int) - source[5].astype(int)).mean() > 2  # drawn over
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.mp4", "run.yaml"]  # no partial file left


def test_draw_clip_needs_a_file_source(tmp_path: Path) -> None:
    config = write_config(tmp_path / "run.yaml", {"name": "cam", "uri": "rtsp://127.0.0.1:9/live", "lines": {"entry": ENTRY}})
    proc = run_cli("draw", "clip", "--config", str(config), "--output", str(tmp_path / "out.mp4"))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "edge-rt draw: error: draw clip needs a file source; source 'cam' is a stream source "
        "(record a clip of it, or check its zones with `edge-rt draw zones`)"
    ]
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize(("a", "b"), [((0.5, 0.0), (0.5, 1.0)), ((0.1, 0.8), (0.9, 0.7)), ((0.9, 0.9), (0.2, 0.1))])
def test_arrow_points_to_the_in_side(a: tuple[float, float], b: tuple[float, float]) -> None:
    """The arrow drawn for a line points to where the objects stage counts `in` (side_of_line > 0)."""
    pa, pb = to_pixels([a, b], (640, 360))
    tip = (pa + pb) / 2 + 30 * in_direction(pa, pb)
    assert side_of_line(tip[None, :], pa, pb, float(np.hypot(640, 360)))[0] > 0


def test_draw_regions_is_pure_and_labels_say_the_filters() -> None:
    image = np.zeros((90, 160, 3), np.uint8)
    zone = ZoneSpec("aisle", ((0.1, 0.1), (0.5, 0.1), (0.5, 0.5)), ("circle",), 5.0, anchor="center")
    line = LineSpec("entry", ((0.7, 0.0), (0.7, 1.0)))
    drawn = draw_regions(image, [zone], [line])
    assert not image.any() and drawn.any()
    assert zone_label(zone) == "aisle [circle] loiter 5s" and zone_label(zone, 2) == "aisle: 2 [circle] loiter 5s"
    assert anchor_note([zone], [line]) == "anchors: aisle centre, entry bottom centre"
    assert anchor_note([], [line]) == "anchor: bottom centre"


def test_draw_zones_on_a_source_without_zones_gives_a_0_1_grid(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It refused ('no source in the config has zones'); a user choosing coordinates wants the frame with a grid."""
    config = write_config(tmp_path / "run.yaml", {"name": "plain", "uri": str(clip)}, model=None)
    out = tmp_path / "grid.png"
    code, stdout, err = cli("draw", "zones", "--config", str(config), "--output", str(out), capsys=capsys)
    assert code == 0, err
    assert "source plain, no zones or lines yet: a 0-1 grid" in stdout
    drawn, source = cv2.imread(str(out)), read_frames(clip)[0]
    w, h = SIZE
    x_half, y_half = round(0.5 * (w - 1)), round(0.5 * (h - 1))
    assert (drawn[h // 2 + 20 :, x_half] > 200).all() and (drawn[y_half, w // 2 + 20 :] > 200).all()  # the 0.5 lines, white
    assert np.abs(drawn[y_half + 10 : y_half + 15, 40:50].astype(int) - source[y_half + 10 : y_half + 15, 40:50]).max() < 40  # between lines: the frame


def test_labels_of_neighbouring_boxes_do_not_cover_each_other_and_the_legend_avoids_boxes() -> None:
    boxes = np.array([[100, 100, 160, 200], [110, 105, 170, 205], [300, 100, 360, 200]], np.float32)  # two on top of each other
    sizes = [(80, 18)] * 3
    spots = place_labels(boxes, sizes, (640, 360))
    rects = [(x, y, x + w, y + h) for (x, y), (w, h) in zip(spots, sizes)]
    for i in range(3):
        for j in range(i):
            a, b = rects[i], rects[j]
            assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1]), (a, b)
    assert spots[2] == (300, 100 - 18 - 4)  # a box alone: its label above it, as before
    assert legend_corner(boxes, [(120, 20)] * 3, (640, 360)) == "top_left"  # nothing there
    assert legend_corner(np.array([[0, 0, 200, 100]], np.float32), [(120, 20)] * 3, (640, 360)) == "top_right"
