"""Benchmarks on synthetic cameras, and on models that take camera frames (letterbox in the graph):
real models, real capture threads, a real subscriber process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import write_clip
from tests.helpers import run_cli

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def onnx_graph(onnx_dynamic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dynamic fixture with edge_rt's letterbox composed in front: uint8 frames [B, H, W, 3] + plan."""
    from edge_rt.exporters.graph import add_graph_preprocess

    return add_graph_preprocess(onnx_dynamic, tmp_path_factory.mktemp("graph") / "y11_graph.onnx")


@pytest.mark.serial  # measures rates or waits against a clock: run alone, after the parallel part
def test_pipeline_on_synthetic_cameras_reports_the_ratio_to_the_engine(onnx_dynamic: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    proc = run_cli("bench", "pipeline", "-m", str(onnx_dynamic), "--synthetic", "2", "--frame-size", "640x360", "--duration", "2",
                   "--json", str(out), timeout=180)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["sources"] == ["syn0", "syn1"] and data["synthetic"] == 2
    assert data["engine_batch"] == 2, "one frame per camera per call, and the bare engine measured at that batch"
    assert 1.0 <= data["batch_mean"] <= 2.0
    assert data["input_shape"] == [192, 320], "640x360 frames letterbox to the stride rectangle"
    assert data["synthetic_fps"] == pytest.approx(1.5 * data["engine_alone_fps"] / 2, abs=0.1), "they offer more than the engine takes"
    assert sum(data["skipped"].values()) > 0, "live sources: what the pipeline cannot take is skipped and counted"
    ratio = sum(data["fps"].values()) / data["engine_alone_fps"]
    assert 0.1 < ratio < 1.3
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("ran on: ") and data["host"]["device"] == "cpu"
    assert f"synthetic sources: 2 at {data['synthetic_fps']:g} frames/s each (1.5x" in proc.stdout
    assert any(line.startswith("pipeline ") and "at batch 2 on input 192x320" in line and line.endswith(f"= {ratio:.1%}") for line in lines)


@pytest.mark.serial  # measures rates or waits against a clock: run alone, after the parallel part
def test_pipeline_mixes_files_and_paced_synthetic_cameras(onnx_dynamic: Path, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4", frames=20)
    out = tmp_path / "p.json"
    proc = run_cli("bench", "pipeline", "-m", str(onnx_dynamic), "-s", f"door={clip}", "--synthetic", "1", "--frame-size", "320x240",
                   "--fps", "10", "--duration", "2", "--json", str(out), timeout=180)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["sources"] == ["door", "syn0"] and data["synthetic_fps"] == 10
    assert all(7 <= fps <= 12 for fps in data["fps"].values()), data["fps"]
    assert "paced at 10 frames/s per source" in proc.stdout


def test_engine_on_a_model_that_takes_camera_frames(onnx_graph: Path, tmp_path: Path) -> None:
    out = tmp_path / "e.json"
    proc = run_cli("bench", "engine", "-m", str(onnx_graph), "--batch", "1,2", "--frame-size", "640x360", "--iters", "5",
                   "--warmup", "1", "--json", str(out), timeout=180)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("y11_graph")]
    assert [(r[2], r[3]) for r in rows] == [("1", "360x640*"), ("2", "360x640*")]
    assert "* uint8 camera frames" in proc.stdout
    data = json.loads(out.read_text())
    assert [(r["input"], r["height"], r["width"]) for r in data] == [("frames", 360, 640)] * 2
    assert all(r["images_per_s"] > 0 for r in data)


def test_pipeline_on_a_model_that_takes_camera_frames(onnx_graph: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    proc = run_cli("bench", "pipeline", "-m", str(onnx_graph), "--synthetic", "2", "--frame-size", "640x360", "--duration", "1",
                   "--json", str(out), timeout=180)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["engine_input"] == "frames" and data["input_shape"] == [360, 640], "the bare engine is fed what the pipeline feeds it"
    assert sum(data["frames"].values()) > 0 and "on frames 360x640" in proc.stdout
