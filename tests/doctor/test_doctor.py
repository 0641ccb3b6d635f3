"""`edge-rt doctor` on this box (no GPU): it runs, says plainly there is no GPU, tries ONNX Runtime's providers
with real sessions, and exits by whether the box can run edge_rt."""

from __future__ import annotations

import json

from edge_rt.doctor import FAIL, INFO, OK, Check, healthy
from tests.helpers import run_cli


def test_doctor_on_a_cpu_box_passes_and_says_there_is_no_gpu() -> None:
    proc = run_cli("doctor", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("ok") and "onnxruntime CPU" in line and "loads" in line for line in lines), proc.stdout
    assert any("NVIDIA GPU" in line and "none" in line for line in lines), "no GPU, said plainly"
    assert lines[-1] == "this box can run edge_rt"


def test_doctor_json_lists_every_check_with_its_fix() -> None:
    proc = run_cli("doctor", "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["healthy"] is True
    areas = {c["area"]: c for c in report["checks"]}
    for area in ("python", "package numpy", "opencv FFmpeg", "onnxruntime CPU", "ZeroMQ CURVE", "disk for engine caches"):
        assert area in areas, area
    assert all(set(c) == {"area", "status", "found", "fix"} for c in report["checks"])
    assert all(c["status"] in ("ok", "info", "warn", "fail") for c in report["checks"])


def test_a_broken_requirement_or_no_engine_is_not_healthy() -> None:
    cpu = Check("onnxruntime CPU", OK, "loads")
    assert healthy([cpu, Check("NVIDIA GPU", INFO, "none")])
    assert not healthy([cpu, Check("package numpy", FAIL, "missing", "pip install numpy")])
    assert not healthy([Check("onnxruntime", "warn", "not installed")]), "no engine at all"
    assert healthy([Check("package tensorrt", OK, "10.3.0")]), "TensorRT alone runs engines"
