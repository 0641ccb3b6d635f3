"""What a benchmark ran on: the parsers against the text the tools print, and the probes on this
machine and on stand-in tools (an NVIDIA box and a Jetson are not here; their tools' output is).

The tool output below is what nvidia-smi, nvpmodel, jetson_clocks and /etc/nv_tegra_release print,
with field values taken from real machines (an H100 SXM, a Jetson Orin on JetPack 6, a Nano).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_rt.bench import hardware
from edge_rt.bench.hardware import (
    describe_host,
    host_line,
    parse_cuda_version,
    parse_jetson_clocks,
    parse_l4t,
    parse_nvidia_smi,
    parse_nvpmodel,
    run_tool,
)

pytestmark = pytest.mark.timeout(60)

# nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.limit
#            --format=csv,noheader,nounits
H100 = "NVIDIA H100 80GB HBM3, 550.54.15, 81559, 345, 1980, 2619, 2619, 700.00"
ORIN = "Orin (nvgpu), 540.4.0, [N/A], [N/A], [N/A], [N/A], [N/A], [N/A]"  # a Jetson: unified memory, no NVML clocks
SMI_BANNER = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.127.05             Driver Version: 550.127.05     CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
"""
TEGRA_RELEASE = "# R36 (release), REVISION: 4.7, GCID: 42132812, BOARD: generic, EABI: aarch64, DATE: Thu Sep 18 22:54:44 UTC 2025\n"
NVPMODEL = "NV Power Mode: MAXN\n0\n"
NVPMODEL_VERBOSE = "NVPM VERB: Config file: /etc/nvpmodel.conf\nNVPM VERB: Current mode: NV Power Mode: MODE_15W_6CORE\n2\n"
JETSON_CLOCKS_DEFAULT = """\
SOC family:tegra210  Machine:NVIDIA Jetson Nano Developer Kit
Online CPUs: 0-3
cpu0: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1428000 CurrentFreq=1428000 IdleStates: WFI=1 c7=1
cpu1: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1428000 CurrentFreq=921600 IdleStates: WFI=1 c7=1
GPU MinFreq=76800000 MaxFreq=921600000 CurrentFreq=384000000
EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=0
Fan: speed=0
NV Power Mode: MAXN
"""
JETSON_CLOCKS_PINNED = """\
SOC family:tegra234  Machine:NVIDIA Jetson AGX Orin Developer Kit
Online CPUs: 0-11
cpu0: Online=1 Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
cpu11: Online=0 Governor=schedutil MinFreq=115200 MaxFreq=2201600 CurrentFreq=729600 IdleStates: WFI=0 c7=0
GPU MinFreq=1300500000 MaxFreq=1300500000 CurrentFreq=1300500000
EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=1
NV Power Mode: MAXN
"""


def test_parse_nvidia_smi_query_line() -> None:
    (gpu,) = parse_nvidia_smi(H100 + "\n")
    assert gpu == {
        "name": "NVIDIA H100 80GB HBM3", "driver": "550.54.15", "memory_mib": 81559, "sm_clock_mhz": 345, "sm_clock_max_mhz": 1980,
        "mem_clock_mhz": 2619, "mem_clock_max_mhz": 2619, "power_limit_w": 700.0,
    }


def test_parse_nvidia_smi_keeps_gpus_without_values_and_names_with_commas() -> None:
    gpus = parse_nvidia_smi(f"{ORIN}\n\nNVIDIA RTX A2000, Laptop GPU, 535.98, 4096, 210, 2100, 405, 5501, [Not Supported]\ngarbage\n")
    assert [g["name"] for g in gpus] == ["Orin (nvgpu)", "NVIDIA RTX A2000, Laptop GPU"]
    assert gpus[0]["memory_mib"] is None and gpus[0]["sm_clock_max_mhz"] is None and gpus[0]["driver"] == "540.4.0"
    assert gpus[1]["power_limit_w"] is None and gpus[1]["sm_clock_max_mhz"] == 2100


def test_parse_the_other_tools() -> None:
    assert parse_cuda_version(SMI_BANNER) == "12.4"
    assert parse_cuda_version("no banner") is None
    assert parse_l4t(TEGRA_RELEASE) == "R36.4.7"
    assert parse_nvpmodel(NVPMODEL) == "MAXN (mode 0)"
    assert parse_nvpmodel(NVPMODEL_VERBOSE) == "MODE_15W_6CORE (mode 2)"
    assert parse_nvpmodel("") is None
    assert parse_jetson_clocks(JETSON_CLOCKS_PINNED) == "yes", "every online CPU and the GPU pinned at max; offline cores do not count"
    assert parse_jetson_clocks(JETSON_CLOCKS_DEFAULT) == "no", "dynamic frequency scaling: the GPU idles at 384 of 921 MHz"
    assert parse_jetson_clocks("jetson_clocks: need root\n") == "unknown"


def test_run_tool_never_raises(tmp_path: Path) -> None:
    assert run_tool(["edge-rt-no-such-tool"]) is None
    assert run_tool(["false"]) is None
    assert run_tool(["sleep", "5"], timeout=0.2) is None
    assert run_tool(["echo", "hi"]) == "hi\n"


def test_this_machine_is_described() -> None:
    host = describe_host("cpu")
    assert host["device"] == "cpu" and host["cores"] >= 1 and host["python"].count(".") == 2
    assert host["onnxruntime"] != "unknown" and "CPUExecutionProvider" in host["onnxruntime_providers"]
    assert host["opencv"] != "unknown" and host["cpu"] and host["os"]
    line = host_line(host)
    assert line.startswith("ran on: ") and line.endswith("; device cpu") and "\n" not in line
    assert f"Python {host['python']}" in line and f"onnxruntime {host['onnxruntime']} [" in line


def _tool(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A PATH with stand-ins for the vendor tools, printing what the real ones print."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(hardware, "TEGRA_RELEASE", tmp_path / "nv_tegra_release")
    hardware._static.cache_clear()
    yield bin_dir
    hardware._static.cache_clear()


def test_an_nvidia_box_is_described_with_its_gpu_and_clocks(fake_tools: Path) -> None:
    _tool(fake_tools, "nvidia-smi", f'case "$1" in --query-gpu=*) echo "{H100}";; *) cat <<EOF\n{SMI_BANNER}EOF\n;; esac\n')
    host = describe_host("cuda")
    assert host["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3" and host["cuda"] == "12.4" and "l4t" not in host
    line = host_line(host)
    assert "GPU NVIDIA H100 80GB HBM3 (80 GiB, driver 550.54.15, SM 345/1980 MHz, memory 2619/2619 MHz, 700 W limit)" in line
    assert "CUDA 12.4" in line and line.endswith("; device cuda")


def test_a_jetson_is_described_with_its_power_mode_and_a_slow_tool_reads_unknown(
    fake_tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hardware.TEGRA_RELEASE.write_text(TEGRA_RELEASE)
    _tool(fake_tools, "nvidia-smi", f'case "$1" in --query-gpu=*) echo "{ORIN}";; *) echo "CUDA Version: 12.6";; esac\n')
    _tool(fake_tools, "nvpmodel", f"printf '{NVPMODEL}'\n")
    _tool(fake_tools, "jetson_clocks", "exec sleep 10\n")  # hangs: must cost its timeout, nothing more
    monkeypatch.setattr(hardware, "TOOL_TIMEOUT_S", 0.3)
    host = describe_host("tensorrt")
    assert (host["l4t"], host["nvpmodel"], host["max_clocks"], host["cuda"]) == ("R36.4.7", "MAXN (mode 0)", "unknown", "12.6")
    line = host_line(host)
    assert "GPU Orin (nvgpu) (shared memory, driver 540.4.0, SM ?/? MHz, memory ?/? MHz, power limit n/a)" in line
    assert "Jetson L4T R36.4.7, nvpmodel MAXN (mode 0), max clocks unknown" in line
    _tool(fake_tools, "jetson_clocks", f"cat <<EOF\n{JETSON_CLOCKS_PINNED}EOF\n")
    assert describe_host("tensorrt")["max_clocks"] == "yes"


def test_a_jetson_without_its_tools_reads_unknown(fake_tools: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hardware.TEGRA_RELEASE.write_text("not the format\n")
    monkeypatch.setenv("PATH", str(fake_tools))  # no nvidia-smi, nvpmodel or jetson_clocks at all
    host = describe_host("cpu")
    assert (host["l4t"], host["nvpmodel"], host["max_clocks"]) == ("unknown", "unknown", "unknown")
    assert "gpus" not in host and host_line(host).startswith("ran on: ")
