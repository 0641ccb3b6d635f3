"""What a newcomer hit walking the README (issue 20): log lines that said the wrong thing, and checks
that disagreed with their own words. Each ran against the real CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .conftest import DEMO_DYNAMIC, DEMO_PT, free_port, write_clip
from .helpers import CliProcess, assert_clean_failure, run_cli

pytestmark = pytest.mark.timeout(120)


def _absent_camera() -> str:
    return next(str(i) for i in range(9, 64) if not Path(f"/dev/video{i}").exists())


def test_an_absent_camera_index_logs_only_edge_rts_own_lines_and_no_empty_table() -> None:
    """OpenCV's any-backend search printed `[ERROR:0@5.8] global obsensor_uvc_stream_channel.cpp:163 ...
    Camera index out of range` on every reopen, inside --log-format json too; a run that processed no
    frame printed a latency table with only its header."""
    run = CliProcess(
        "run", "--model", str(DEMO_DYNAMIC), "--source", _absent_camera(), "--log-format", "json",
        "--publish", f"tcp://127.0.0.1:{free_port()}",
    )
    run.wait_for("reconnecting", timeout=30)
    time.sleep(2.5)  # two or three reopen attempts
    run.stop()
    out = run.proc.stdout.read() if run.proc.stdout else ""
    assert run.lines, "the run said nothing"
    for line in run.lines:
        if line.strip():
            json.loads(line)  # every line on stderr is edge_rt's JSON: nothing from OpenCV
    assert "obsensor" not in run.stderr and "[ERROR" not in run.stderr and "WARN:" not in run.stderr
    assert "does not exist" in run.stderr
    assert "stage (ms)" not in out + run.stderr and "no frames processed" in out + run.stderr


def test_imgsz_on_a_dynamic_model_is_what_the_start_up_line_says(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4", frames=4)
    proc = run_cli("run", "--model", str(DEMO_DYNAMIC), "--source", str(clip), "--imgsz", "256",
                   "--publish", f"tcp://127.0.0.1:{free_port()}")
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stderr.splitlines() if "classes, input" in x)
    assert "input (256, 256) (dynamic; exported at (320, 320))" in line, line


def test_int8_with_fewer_calibration_frames_than_it_needs_is_refused(tmp_path: Path) -> None:
    """`--calibration-frames 3` was accepted and calibrated, although INT8 'needs at least 8'."""
    clip = write_clip(tmp_path / "c.mp4", frames=12)
    proc = run_cli("export", "--weights", str(DEMO_PT), "--target", "cpu-int8", "--imgsz", "320", "--calibration", str(clip),
                   "--calibration-frames", "3", "--output", str(tmp_path / "i8.onnx"))
    assert_clean_failure(proc, "--calibration-frames 3: INT8 needs at least 8")
    assert not (tmp_path / "i8.onnx").exists()


def test_a_missing_verify_source_is_named_as_such(tmp_path: Path) -> None:
    """It was reported as `calibration 'missing.mp4': no such file or folder`."""
    clip = write_clip(tmp_path / "c.mp4", frames=12)
    proc = run_cli("export", "--weights", str(DEMO_PT), "--target", "cpu-int8", "--imgsz", "320", "--calibration", str(clip),
                   "--verify", "--verify-source", str(tmp_path / "missing.mp4"), "--output", str(tmp_path / "i8.onnx"))
    assert_clean_failure(proc, "--verify-source ")
    assert "missing.mp4" in proc.stderr and "calibration '" not in proc.stderr
