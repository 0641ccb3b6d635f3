"""The bench commands run for real on tiny inputs and print the tables and JSON users rely on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import write_clip
from tests.helpers import assert_clean_failure, run_cli

pytestmark = pytest.mark.timeout(300)


def test_bench_engine_table_and_json(onnx_dynamic: Path, onnx_static: Path, tmp_path: Path) -> None:
    out = tmp_path / "engine.json"
    proc = run_cli("bench", "engine", "-m", str(onnx_dynamic), "-m", str(onnx_static), "--batch", "1,2", "--shape", "192x320",
                   "--iters", "5", "--warmup", "1", "--json", str(out), timeout=180)
    assert proc.returncode == 0, proc.stderr
    ran_on, header, rule, *rows = proc.stdout.splitlines()
    assert ran_on.startswith("ran on: ") and ran_on.endswith("; device cpu"), "one line of what it ran on, above the table"
    assert header.split() == ["model", "device", "batch", "input", "p50", "p90", "p99", "max", "img-p50", "img-p99", "img/s"]
    table = [r.split() for r in rows if r.startswith("y11_")]
    assert [(r[0], r[2], r[3]) for r in table] == [
        ("y11_dynamic.onnx", "1", "192x320"), ("y11_dynamic.onnx", "2", "192x320"), ("y11_static.onnx", "1", "320x320")
    ], "a fixed-batch model runs only its own batch and shape"
    data = json.loads(out.read_text())
    assert len(data) == 3 and {"call_ms", "image_ms", "image_p99_ms", "images_per_s", "batch", "input", "host"} <= set(data[0])
    for r in data:
        c = r["call_ms"]
        assert 0 < c["p50"] <= c["p90"] <= c["p99"] <= c["max"]
        assert r["images_per_s"] > 0 and r["input"] == "float"
        assert r["image_ms"] == pytest.approx(c["p50"] / r["batch"]) and r["image_p99_ms"] == pytest.approx(c["p99"] / r["batch"])
        assert r["host"]["device"] == "cpu" and r["host"]["cores"] >= 1 and "CPUExecutionProvider" in r["host"]["onnxruntime_providers"]


@pytest.mark.serial  # measures rates or waits against a clock: run alone, after the parallel part
def test_bench_pipeline_reports_stages_rates_and_a_plot(onnx_dynamic: Path, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4", frames=20)
    out, plot = tmp_path / "p.json", tmp_path / "p.png"
    proc = run_cli("bench", "pipeline", "-m", str(onnx_dynamic), "-s", f"door={clip}", "--fps", "15", "--duration", "3",
                   "--json", str(out), "--plot", str(plot), timeout=180)
    assert proc.returncode == 0, proc.stderr
    for stage in ("wait", "preprocess", "queue", "inference", "postprocess", "publish", "total", "capture->sub"):
        assert any(line.startswith(stage) for line in proc.stdout.splitlines()), stage
    assert "vs engine alone" in proc.stdout and "door:" in proc.stdout
    assert proc.stdout.startswith("ran on: ")
    data = json.loads(out.read_text())
    assert data["engine_batch"] == 1 and data["batch_mean"] == 1.0 and data["host"]["device"] == "cpu"
    assert 10 <= data["fps"]["door"] <= 17, "paced at 15 frames/s, and the engine keeps up with that"
    assert data["input_shape"] == [192, 320], "a 16:9 clip runs on the stride rectangle"
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"


def test_bench_publish_meets_the_format(tmp_path: Path) -> None:
    out = tmp_path / "pub.json"
    proc = run_cli("bench", "publish", "--count", "5000", "--rate", "500", "--json", str(out), timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["delivered"] == 5000 and data["messages_per_s"] > 1000
    assert data["latency_us"]["p50"] > 0 and "messages/s saturated" in proc.stdout


def test_bench_compare_runs_both(onnx_static: Path, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4", frames=10)
    proc = run_cli("bench", "compare", "-m", str(onnx_static), "-s", str(clip), "--rounds", "2", timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "edge_rt y11_static.onnx" in proc.stdout and "ultralytics y11_static.onnx" in proc.stdout
    assert "2 rounds, alternating (medians above)" in proc.stdout
    assert "x on 10 frames" in proc.stdout and proc.stdout.startswith("ran on: ")  # no "Loading ..." lines of Ultralytics
    devices = [line.split()[2] for line in proc.stdout.splitlines() if line.startswith(("edge_rt y11", "ultralytics y11"))]
    assert devices == ["cpu", "cpu"], "both ran on the CPU"
    boxes = next(line for line in proc.stdout.splitlines() if line.startswith("boxes: "))
    # the same model finds as many boxes; this random-weight model's many zero-height boxes have no IoU, so no rate is asserted
    ref_n, edge_n = boxes.split("y11_static.onnx's ")[1].split()[0], boxes.split("extra (")[1].split()[0]
    assert ref_n == edge_n and int(ref_n) > 0, boxes


def test_bench_compare_on_a_gpu_device_without_one_is_one_line(onnx_static: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this box has CUDA: the GPU comparison runs in the gpu-marked tests")
    clip = write_clip(tmp_path / "c.mp4", frames=4)
    assert_clean_failure(run_cli("bench", "compare", "-m", str(onnx_static), "-s", str(clip), "--device", "cuda"), "--device cuda")


@pytest.mark.parametrize(
    "args,expected",
    [
        (["engine", "-m", "missing.onnx"], "no such file"),
        (["engine", "-m", "{model}", "--batch", "1,x"], "comma-separated integers"),
        (["engine", "-m", "{model}", "--shape", "big"], "HEIGHTxWIDTH"),
        (["pipeline", "-m", "{model}", "-s", "nope.mp4"], "no such file"),
        (["pipeline", "-m", "{model}"], "pass --source (repeatable) or --synthetic N"),
        (["pipeline", "-m", "{model}", "--synthetic", "-1"], "--synthetic -1: must be >= 0"),
        (["pipeline", "-m", "{model}", "--synthetic", "2", "--frame-size", "720p"], "expected WIDTHxHEIGHT"),
        (["pipeline", "-m", "{model}", "-s", "synthetic://1280"], "expected synthetic://WIDTHxHEIGHT"),
        (["engine", "-m", "{model}", "--frame-size", "0x0"], "each side must be 16..8192"),
        (["compare", "-m", "{model}", "-s", "nope.mp4"], "no such file"),
        (["compare", "-m", "{model}", "-s", "synthetic://640x360"], "compare runs a video file"),
        (["publish", "--count", "10"], "--count must be >= 1000"),
    ],
)
def test_bench_mistakes_are_one_line(args: list[str], expected: str, onnx_static: Path) -> None:
    assert_clean_failure(run_cli("bench", *[a.replace("{model}", str(onnx_static)) for a in args]), expected)
