"""The common mistakes of `edge-rt train`, `tune` and `dataset`: one line on stderr, a non-zero exit, no traceback.

Each row runs the real CLI in its own process. Most rows import Ultralytics (about 3 s each on two
cores), so the table runs once per module, a few processes at a time, and each test reads its row.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edge_rt.training.synth import synth_dataset
from tests.helpers import run_cli

pytestmark = pytest.mark.timeout(240)

DEMO_PT = str(Path(__file__).resolve().parents[2] / "models" / "demo" / "demo.pt")
TINY = ("--epochs", "1", "--imgsz", "64", "--batch", "4")

# (id, command line, what the one line must say, exit code). {ds}: a valid data.yaml; {file}: a
# plain file, so '{file}/x' is a folder that cannot be created (root writes anywhere, chmod or not).
CASES: list[tuple[str, tuple[str, ...], str, int]] = [
    ("train-missing-pt", ("train", "--data", "{ds}", "--model", "{tmp}/missing.pt"), "missing.pt: no such file", 4),
    ("train-missing-yaml", ("train", "--data", "{ds}", "--model", "missing.yaml"), "--model missing.yaml: no such model YAML", 4),
    ("train-offline-weights", ("train", "--data", "{ds}", "--model", "yolo11n.pt"), "start untrained from yolo11n.yaml", 4),
    ("train-missing-data", ("train", "--data", "{tmp}/none.yaml", "--model", DEMO_PT), "none.yaml: data yaml not found", 2),
    ("train-bad-override", ("train", "--data", "{ds}", "--model", DEMO_PT, "lr0"), "'lr0': expected KEY=VALUE", 2),
    (
        "train-unwritable-project",
        ("train", "--data", "{ds}", "--model", DEMO_PT, *TINY, "--project", "{file}/runs"),
        "/runs: cannot write there ({file} is a file, not a folder)",
        2,
    ),
    (
        "train-auto-optimizer-with-lr0",
        ("train", "--data", "{ds}", "--model", DEMO_PT, *TINY, "--project", "{tmp}/r", "optimizer=auto", "lr0=0.01"),
        "optimizer=auto with lr0=0.01: Ultralytics' auto picks its own lr0",
        2,
    ),
    ("train-resume-with-epochs", ("train", "--resume", "--epochs", "3"), "drop --epochs", 2),
    ("train-one-fold", ("train", "--data", "{ds}", "--folds", "1"), "--folds must be >= 2", 2),
    (
        "tune-missing-yaml",
        ("tune", "--data", "{ds}", "--model", "missing.yaml", "--iterations", "1", "--project", "{tmp}/t"),
        "no such model YAML",
        4,
    ),
    (
        "tune-unwritable-project",
        ("tune", "--data", "{ds}", "--model", DEMO_PT, "--iterations", "1", *TINY, "--project", "{file}/t"),
        "/t/tune: cannot write there ({file} is a file, not a folder)",
        2,
    ),
    (
        "tune-auto-optimizer",
        ("tune", "--data", "{ds}", "--model", DEMO_PT, "--iterations", "1", "--project", "{tmp}/t", "optimizer=auto"),
        "tuning them would change nothing",
        2,
    ),
    ("tune-zero-iterations", ("tune", "--data", "{ds}", "--iterations", "0"), "--iterations must be >= 1", 2),
    (
        "synth-unwritable",
        ("dataset", "synth", "{file}/ds", "--images", "4", "--imgsz", "64"),
        "cannot write {file}/ds ({file} is a file, not a folder)",
        2,
    ),
    ("synth-bad-val", ("dataset", "synth", "{tmp}/ds2", "--val", "1.5"), "--val 1.5: must be between 0 and 1", 2),
    ("clip-unwritable", ("dataset", "clip", "{file}/c.mp4", "--frames", "3"), "cannot write {file}/c.mp4", 2),
    ("clip-bad-size", ("dataset", "clip", "{tmp}/c.mp4", "--size", "640"), "--size '640': expected WIDTHxHEIGHT", 2),
    ("check-missing-yaml", ("dataset", "check", "{tmp}/none.yaml"), "none.yaml: data yaml not found", 2),
    ("split-missing-dir", ("dataset", "split", "{tmp}/nowhere"), "nowhere: not a folder", 2),
    (
        "import-missing-json",
        ("dataset", "import", "{tmp}/none.json", "--from", "coco", "--out", "{tmp}/i"),
        "COCO JSON not found",
        2,
    ),
    (
        "preview-unwritable",
        ("dataset", "preview", "{ds}", "--out", "{file}/p.png", "--imgsz", "64", "--n", "2"),
        "cannot write {file}/p.png",
        2,
    ),
]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[subprocess.CompletedProcess[str], dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("bad_input")
    ds = synth_dataset(tmp / "ds", images=4, imgsz=64, seed=1)
    file = tmp / "a_file"
    file.write_text("not a folder\n")
    subs = {"{ds}": str(ds), "{tmp}": str(tmp), "{file}": str(file)}

    def fill(text: str) -> str:
        for key, value in subs.items():
            text = text.replace(key, value)
        return text

    def one(case: tuple[str, tuple[str, ...], str, int]) -> tuple[str, tuple[subprocess.CompletedProcess[str], dict[str, str]]]:
        name, args, _, _ = case
        return name, (run_cli(*(fill(a) for a in args), timeout=120), subs)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, CASES))


@pytest.mark.parametrize(("name", "args", "expected", "code"), CASES, ids=[c[0] for c in CASES])
def test_mistake_is_one_line(
    results: dict[str, tuple[subprocess.CompletedProcess[str], dict[str, str]]],
    name: str,
    args: tuple[str, ...],
    expected: str,
    code: int,
) -> None:
    proc, subs = results[name]
    for key, value in subs.items():
        expected = expected.replace(key, value)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"edge-rt {args[0]}: error: ") and expected in lines[0], lines[0]
    assert proc.returncode == code, (proc.returncode, lines[0])


def test_weights_that_cannot_be_downloaded_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without YOLO_OFFLINE, Ultralytics downloads an official name not on disk; offline, that is its ConnectionError."""
    from ultralytics.utils import SETTINGS, downloads

    from edge_rt.cli import main

    if (Path(SETTINGS["weights_dir"]) / "yolo11n.pt").is_file():
        pytest.skip("yolo11n.pt is in Ultralytics' weights_dir here, so nothing would be downloaded")

    def no_network(url: str, *args: object, **kwargs: object) -> None:
        raise ConnectionError(f"❌  Download failure for {url}. Environment may be offline.")

    monkeypatch.setattr(downloads, "safe_download", no_network)  # nothing is fetched, whatever the box can reach
    monkeypatch.delenv("YOLO_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)
    ds = synth_dataset(tmp_path / "ds", images=4, imgsz=64)
    code = main(["train", "--data", str(ds), "--model", "yolo11n.pt", "--project", str(tmp_path / "runs"), *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 4 and len(err) == 1, err
    assert "yolo11n.pt: not on disk and the download failed (Download failure for" in err[0], err[0]
    assert "copy yolo11n.pt here" in err[0] and "start untrained from yolo11n.yaml" in err[0], err[0]
