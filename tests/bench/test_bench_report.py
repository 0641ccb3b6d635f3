"""`edge-rt bench report --quick` runs for real on the demo model and writes a Markdown and a JSON file
with every section's figures or the reason it has none; bad input is one line before anything runs."""

from __future__ import annotations

import datetime
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edge_rt.bench.report import (
    ERROR,
    SECTIONS,
    SKIPPED,
    Report,
    ReportSettings,
    default_stem,
    model_facts,
    report_paths,
    run_section,
)
from edge_rt.bench.report_md import render_markdown
from tests.helpers import ROOT, assert_clean_failure, run_cli

DEMO = ROOT / "models" / "demo" / "demo.onnx"
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real quick report (about 15 s on 2 CPU cores), shared by the tests that read it."""
    out = tmp_path_factory.mktemp("report") / "box"
    proc = run_cli("bench", "report", "--quick", "--duration", "0.5", "-m", str(DEMO), "--output", str(out), timeout=150)
    assert proc.returncode == 0, proc.stderr
    return {"proc": proc, "md": (out.with_suffix(".md")).read_text(), "json": json.loads(out.with_suffix(".json").read_text())}


def test_the_report_has_every_section_with_figures(quick: dict[str, Any]) -> None:
    data, md, proc = quick["json"], quick["md"], quick["proc"]
    assert data["schema"] == "edge_rt.bench_report" and data["exit_code"] == 0 and data["problems"] == []
    assert list(data["sections"]) == list(SECTIONS) and data["skipped"] == {}, "Ultralytics is installed here: nothing skipped"
    assert all(s["status"] == "ok" for s in data["sections"].values()), data["sections"]
    assert data["host"]["cores"] >= 1 and data["host"]["device"] == "cpu" and data["versions"]["edge_rt"]
    assert data["model"]["name"] == "demo.onnx" and data["model"]["imgsz"] == [320, 320] and data["settings"]["quick"] is True

    doctor = data["sections"]["doctor"]["result"]
    assert doctor["healthy"] is True and any(c["area"] == "onnxruntime CPU" and c["status"] == "ok" for c in doctor["checks"])

    parity = data["sections"]["parity"]["result"]
    assert [i["image"] for i in parity["images"]] == ["bus.jpg", "zidane.jpg"]
    assert parity["all_matched"] is True and parity["reference_boxes"] > 0, "the demo model finds something on them: a real check"
    assert all(i["matched"] == i["reference_boxes"] == i["candidate_boxes"] for i in parity["images"])

    engine = data["sections"]["engine"]["result"]
    assert [r["batch"] for r in engine["results"]] == [1] and engine["batches_not_run"] == [4], "demo.onnx has a fixed batch of 1"
    assert "fixed at 1" in engine["why_not_run"]
    for r in engine["results"]:
        assert 0 < r["call_ms"]["p50"] <= r["call_ms"]["p99"] and r["images_per_s"] > 0

    pipeline = data["sections"]["pipeline"]["result"]
    assert [r["sources"] for r in pipeline["runs"]] == [1, 8, 16] and pipeline["errors"] == {}
    for r in pipeline["runs"]:
        # a half-second window on a busy 2-core box may see no frame of a few of 16 cameras: at least one, none extra
        assert r["total_fps"] > 0 and 1 <= len(r["source_names"]) <= r["sources"] and r["to_subscriber"]["p50"] > 0
        assert r["engine_alone_fps"] > 0 and r["stages"]["inference"]["p99"] > 0

    compare = data["sections"]["compare"]["result"]
    assert compare["ratio"] > 0 and compare["edge_fps"] > 0 and compare["ultralytics_fps"] > 0 and compare["frames"] == 24
    assert compare["boxes"]["found"] > 0.9, compare["boxes"]

    for title in ("## Doctor", "## Parity with Ultralytics", "## Engine alone", "## Pipeline with synthetic cameras",
                  "## edge_rt vs Ultralytics on a clip"):
        assert title in md
    assert "- **result:** ok" in md and "ran on: " in md and "| bus.jpg | " in md and "edge_rt / Ultralytics = " in md
    assert "batch 4 not run: the model's batch is fixed at 1" in md
    rows = [line.split("|")[1].split()[0] for line in md.split("## Pipeline")[1].split("## ")[0].splitlines() if line.startswith("| ")][1:]
    assert rows == ["1", "8", "16"]

    progress = [line for line in proc.stderr.splitlines() if line.startswith("bench report [")]
    assert len(progress) == len(SECTIONS) and "Traceback" not in proc.stderr
    assert proc.stdout.rstrip().endswith(f"json: {Path(str(proc.args[-1]) + '.json')}")
    assert proc.stdout.splitlines()[0].startswith("report: "), proc.stdout  # no Ultralytics `Loading ...` lines (issue 28)
    # the pipeline's "engine alone" names its input: it is not the Engine section's figure (issue 28)
    hw = "x".join(map(str, data["sections"]["pipeline"]["result"]["runs"][0]["input_shape"]))
    assert f" at {hw} |" in md.split("## Pipeline")[1] and "engine alone: the bare engine, same run" in md


def test_without_ultralytics_parity_and_compare_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """A runtime-only image has no torch and no Ultralytics: those sections are skipped with the reason, not failed."""
    settings = ReportSettings.make(DEMO, "cpu", quick=True)
    model = model_facts(DEMO, "cpu")
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # what `import ultralytics` and find_spec see when it is absent
    sections = tuple(run_section(name, settings, model) for name in ("parity", "compare"))
    assert [(s.status, s.reason) for s in sections] == [(SKIPPED, "Ultralytics not installed")] * 2
    report = Report("2026-01-01T00:00:00+00:00", "box", {"quick": True, "device": "cpu"}, model, {}, {"edge_rt": "0"}, sections, 1.0)
    assert report.exit_code == 0 and report.to_json()["skipped"] == {"parity": "Ultralytics not installed", "compare": "Ultralytics not installed"}
    md = render_markdown(report)
    assert md.count("_skipped: Ultralytics not installed_") == 2 and "- **result:** ok" in md


def test_a_section_that_raises_is_its_one_line_and_exit_1() -> None:
    model = model_facts(DEMO, "cpu")
    broken = run_section("engine", replace(ReportSettings.make(DEMO, "cpu", quick=True), iters=0), model)
    assert broken.status == ERROR and broken.reason == "--iters must be >= 1 and --warmup >= 0" and broken.result is None
    report = Report("t", "box", {"quick": True, "device": "cpu"}, model, {}, {}, (broken,), 1.0)
    assert report.exit_code == 1
    assert "**error:** --iters must be >= 1" in render_markdown(report) and "problems: engine: --iters" in render_markdown(report)


@pytest.mark.parametrize(
    "args,expected,code",
    [
        (["-m", "missing.onnx"], "model 'missing.onnx': no such file", 4),
        (["-m", str(DEMO), "--output", "/nonexistent-dir/r"], "does not exist", 2),
        (["-m", str(DEMO), "--device", "cuda"], "cuda", None),  # no GPU here: the device is refused before anything runs
        (["-m", str(DEMO), "--duration", "0"], "--duration 0: must be > 0", 2),
        (["-m", str(DEMO), "--device", "gpu"], "argument --device: choose one of", 2),
    ],
)
def test_bad_input_is_one_line(args: list[str], expected: str, code: int | None, tmp_path: Path) -> None:
    if "cuda" in args:
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            pytest.skip("this box has CUDA")
    proc = run_cli("bench", "report", "--quick", "--output", str(tmp_path / "r"), *args, timeout=60)
    assert_clean_failure(proc, expected)
    assert code is None or proc.returncode == code
    assert not list(tmp_path.iterdir()), "nothing written"


def test_report_names() -> None:
    assert default_stem("my box!", datetime.datetime(2026, 1, 2, 3, 4, 5)) == "edge-rt-report-my-box-20260102-030405"
    assert report_paths("r.md", None) == (Path("r.md"), Path("r.json"))
    assert report_paths("r", "x.json") == (Path("r.md"), Path("x.json"))


def test_no_demo_model_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Installed from a wheel, outside a checkout: the default model is not there; say what to pass."""
    import edge_rt.demo
    from edge_rt.cli import main

    monkeypatch.setattr(edge_rt.demo, "default_model", lambda: tmp_path / "models" / "demo" / "demo.onnx")
    assert main(["bench", "report", "--quick", "--output", str(tmp_path / "r")]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not here" in err[0] and "pass --model FILE.onnx" in err[0], err
