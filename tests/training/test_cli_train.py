"""`edge-rt dataset` and `edge-rt train` from the command line: one line per mistake, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers import assert_clean_failure, run_cli

pytestmark = pytest.mark.timeout(300)

DEMO_PT = Path(__file__).resolve().parents[2] / "models" / "demo" / "demo.pt"


def test_dataset_synth_check_and_clip(tmp_path: Path) -> None:
    proc = run_cli("dataset", "synth", str(tmp_path / "ds"), "--images", "6", "--imgsz", "64", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("data.yaml")
    ok = run_cli("dataset", "check", str(tmp_path / "ds" / "data.yaml"))
    assert ok.returncode == 0 and "OK" in ok.stdout
    assert ok.stdout.splitlines()[2].split() == ["images", "5", "1"] and "boxes past the image edge: 0" in ok.stdout
    half = run_cli("dataset", "synth", str(tmp_path / "half"), "--images", "6", "--imgsz", "64", "--val", "0.5")
    assert half.returncode == 0 and len(list((tmp_path / "half" / "images" / "val").iterdir())) == 3
    assert_clean_failure(run_cli("dataset", "synth", str(tmp_path / "bad"), "--val", "1.5"), "--val 1.5: must be between 0 and 1")
    clip = run_cli("dataset", "clip", str(tmp_path / "c.mp4"), "--frames", "5", "--size", "160x96")
    assert clip.returncode == 0 and (tmp_path / "c.mp4").stat().st_size > 1000


def test_dataset_check_lists_each_problem_then_fails(tmp_path: Path) -> None:
    run_cli("dataset", "synth", str(tmp_path / "ds"), "--images", "4", "--imgsz", "64")
    label = next((tmp_path / "ds" / "labels" / "train").glob("*.txt"))
    label.write_text("7 0.5 0.5 0.2 0.2\n0 1.5 0.5 0.2\n")
    proc = run_cli("dataset", "check", str(tmp_path / "ds" / "data.yaml"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    problems = [line for line in proc.stderr.splitlines() if label.name in line]
    assert len(problems) == 2, proc.stderr
    assert "2 problem(s)" in proc.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--data", "{tmp}/ds/data.yaml", "--epochs", "0"], "--epochs must be >= 1"),
        (["lr=0.01", "--data", "{tmp}/ds/data.yaml"], "unknown Ultralytics setting 'lr' (did you mean 'lrf' or 'lr0'?)"),
        (
            ["--data", "{tmp}/ds/data.yaml", "--resume", "--project", "{tmp}/runs"],
            "/runs/exp*/weights/last.pt; pass the checkpoint",
        ),
    ],
)
def test_train_mistakes_are_one_line(args: list[str], expected: str, tmp_path: Path) -> None:
    run_cli("dataset", "synth", str(tmp_path / "ds"), "--images", "4", "--imgsz", "64")
    proc = run_cli("train", *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert_clean_failure(proc, expected)


def test_tune_mistakes_are_one_line(tmp_path: Path) -> None:
    run_cli("dataset", "synth", str(tmp_path / "ds"), "--images", "4", "--imgsz", "64")
    proc = run_cli(
        "tune", "--data", str(tmp_path / "ds" / "data.yaml"), "--iterations", "2", "epochs=3", "--project", str(tmp_path / "runs")
    )
    assert_clean_failure(proc, "epochs=: use the tune options (--data, --model, --epochs...) instead")
    assert not (tmp_path / "runs").exists()


def test_train_output_off_a_terminal_is_short_plain_and_names_the_preset(tmp_path: Path) -> None:
    """Into a pipe: no colour codes or redrawn bars, edge_rt's lines instead of Ultralytics' log, the preset confirmed."""
    run_cli("dataset", "synth", str(tmp_path / "ds"), "--images", "8", "--imgsz", "64")
    proc = run_cli(
        *("train", "--data", str(tmp_path / "ds" / "data.yaml"), "--model", str(DEMO_PT), "--epochs", "1", "--imgsz", "64"),
        *("--batch", "8", "--augment", "night", "lr0=0.001", "--project", str(tmp_path / "runs"), "--name", "n"),
        timeout=240,
    )
    both = proc.stdout + proc.stderr
    assert proc.returncode == 0, both
    assert "\x1b" not in both and "\r" not in both, both
    assert len(both.splitlines()) <= 16, both
    assert "augment preset night: hsv_v=0.5; adds LowLight to the training pipeline (grey IR" in proc.stderr, proc.stderr
    assert "optimizer=AdamW: Ultralytics' default optimizer=auto would replace lr0=0.001" in proc.stderr, proc.stderr
    assert "train epochs: 1/1" in proc.stderr and "best weights:" in proc.stdout
    args = yaml.safe_load((tmp_path / "runs" / "n" / "args.yaml").read_text())
    assert (args["optimizer"], args["lr0"], args["hsv_v"]) == ("AdamW", 0.001, 0.5)
