"""What a benchmark ran on. Every result carries it (`host`), and every table starts with one line
of it ("ran on: ..."): a figure without its CPU, GPU, clocks and versions cannot be compared.

Each probe is best effort with a short timeout: a missing tool, file or package reads "unknown"
(or is left out), never an exception, so describing the machine never fails a benchmark.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

UNKNOWN = "unknown"
TOOL_TIMEOUT_S = 5.0
TEGRA_RELEASE = Path("/etc/nv_tegra_release")
# Field names as `nvidia-smi --help-query-gpu` lists them (clocks.sm = clocks.current.sm, clocks.mem =
# clocks.current.memory, clocks.max.mem = clocks.max.memory); with nounits: MiB, MHz, W.
NVIDIA_SMI_FIELDS = (
    "name",
    "driver_version",
    "memory.total",
    "clocks.sm",
    "clocks.max.sm",
    "clocks.mem",
    "clocks.max.mem",
    "power.limit",
)
NVIDIA_SMI_QUERY = ["nvidia-smi", f"--query-gpu={','.join(NVIDIA_SMI_FIELDS)}", "--format=csv,noheader,nounits"]


def run_tool(cmd: list[str], timeout: float | None = None) -> str | None:
    """A tool's stdout, or None when it is missing, fails, or takes longer than `timeout` (TOOL_TIMEOUT_S)."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout or TOOL_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _number(text: str, kind: type) -> Any:
    """nvidia-smi writes "[N/A]" or "[Not Supported]" where a GPU (a Jetson, a VM) has no value."""
    try:
        return kind(float(text))
    except ValueError:
        return None


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """One dict per GPU from `nvidia-smi --query-gpu=<NVIDIA_SMI_FIELDS> --format=csv,noheader,nounits`."""
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < len(NVIDIA_SMI_FIELDS) or not parts[0]:
            continue
        numbers = parts[-6:]
        name = ", ".join(parts[: len(parts) - 7])  # a name with a comma in it stays whole
        gpus.append(
            {
                "name": name,
                "driver": parts[-7],
                "memory_mib": _number(numbers[0], int),
                "sm_clock_mhz": _number(numbers[1], int),
                "sm_clock_max_mhz": _number(numbers[2], int),
                "mem_clock_mhz": _number(numbers[3], int),
                "mem_clock_max_mhz": _number(numbers[4], int),
                "power_limit_w": _number(numbers[5], float),
            }
        )
    return gpus


def parse_cuda_version(smi_header: str) -> str | None:
    """The CUDA version the driver supports, from plain `nvidia-smi`'s banner."""
    m = re.search(r"CUDA(?: UMD)? Version:\s*([\d.]+)", smi_header)
    return m.group(1) if m else None


def parse_l4t(text: str) -> str | None:
    """`# R36 (release), REVISION: 4.3, GCID: ...` (/etc/nv_tegra_release) -> "R36.4.3"."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"R{m.group(1)}.{m.group(2)}" if m else None


def parse_nvpmodel(text: str) -> str | None:
    """`nvpmodel -q` prints "NV Power Mode: MAXN" and the mode id on the next line -> "MAXN (mode 0)"."""
    m = re.search(r"NV Power Mode:\s*(\S.*)", text)
    if not m:
        return None
    ids = [line.strip() for line in text[m.end() :].splitlines() if line.strip().isdigit()]
    return f"{m.group(1).strip()} (mode {ids[0]})" if ids else m.group(1).strip()


_JC_FREQ = re.compile(r"^(?P<unit>cpu\d+|GPU)\b.*?MinFreq=(?P<min>\d+) MaxFreq=(?P<max>\d+) CurrentFreq=(?P<cur>\d+)")


def parse_jetson_clocks(text: str) -> str:
    """`jetson_clocks --show`: "yes" when every online CPU and the GPU run pinned at their maximum
    (MinFreq = MaxFreq = CurrentFreq, what `jetson_clocks` sets), "no" when one does not, else "unknown"."""
    pinned = []
    for line in text.splitlines():
        line = line.strip()
        if " Online=0 " in line:
            continue
        m = _JC_FREQ.match(line)
        if m:
            pinned.append(m["min"] == m["max"] == m["cur"])
    if not pinned:
        return UNKNOWN
    return "yes" if all(pinned) else "no"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        return Path("/proc/device-tree/model").read_text().strip("\x00 \n")  # Jetson and other ARM boards
    except OSError:
        return platform.processor() or platform.machine() or UNKNOWN


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip(chr(34))} (kernel {platform.release()})"
    except OSError:
        pass
    return platform.platform()


def _cuda_from_packages() -> str | None:
    """When nvidia-smi is absent (older JetPack): cuda-python, or a torch that is already loaded."""
    try:
        try:
            from cuda.bindings import runtime as cudart  # type: ignore[import-not-found]
        except ImportError:
            from cuda import cudart  # type: ignore[import-not-found,no-redef]
        err, version = cudart.cudaDriverGetVersion()
        if int(err) == 0 and version:
            return f"{version // 1000}.{version % 1000 // 10}"
    except Exception:  # noqa: BLE001 - a probe: no package, no driver, an old binding
        pass
    torch = sys.modules.get("torch")  # never imported for this: it takes seconds
    return getattr(getattr(torch, "version", None), "cuda", None)


@lru_cache(maxsize=1)
def _static() -> dict[str, Any]:
    """What does not change during a run: read once per process."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
    host: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": cores,
        "cores_total": os.cpu_count() or cores,
        "os": _os_name(),
        "python": platform.python_version(),
        "onnxruntime": UNKNOWN,
        "onnxruntime_providers": [],
        "opencv": UNKNOWN,
    }
    try:
        import onnxruntime as ort

        host["onnxruntime"], host["onnxruntime_providers"] = ort.__version__, list(ort.get_available_providers())
    except Exception:  # noqa: BLE001 - not installed or broken: say so, do not fail the benchmark
        pass
    try:
        import cv2

        host["opencv"] = cv2.__version__
    except Exception:  # noqa: BLE001
        pass
    try:
        import tensorrt  # type: ignore[import-not-found]

        host["tensorrt"] = str(tensorrt.__version__)
    except Exception:  # noqa: BLE001 - absent everywhere but NVIDIA boxes
        pass
    if TEGRA_RELEASE.exists():
        try:
            host["l4t"] = parse_l4t(TEGRA_RELEASE.read_text()) or UNKNOWN
        except OSError:
            host["l4t"] = UNKNOWN
    return host


def describe_host(device: str) -> dict[str, Any]:
    """CPU, OS, versions, and on NVIDIA the GPU with its clocks now (call it right after measuring:
    current clocks below their maximum mean the GPU was throttled or idle), on Jetson the power mode."""
    host = {"device": device, **_static()}
    smi = run_tool(NVIDIA_SMI_QUERY)
    if smi is not None:
        host["gpus"] = parse_nvidia_smi(smi)
        host["cuda"] = parse_cuda_version(run_tool(["nvidia-smi"]) or "") or _cuda_from_packages() or UNKNOWN
    elif "l4t" in host:
        host["cuda"] = _cuda_from_packages() or UNKNOWN
    if "l4t" in host:
        host["nvpmodel"] = parse_nvpmodel(run_tool(["nvpmodel", "-q"]) or "") or UNKNOWN
        show = run_tool(["jetson_clocks", "--show"])  # usually needs root: "unknown" without it
        host["max_clocks"] = parse_jetson_clocks(show) if show is not None else UNKNOWN
    return host


def _mhz(cur: int | None, top: int | None) -> str:
    return f"{cur if cur is not None else '?'}/{top if top is not None else '?'} MHz"


def host_line(host: dict[str, Any]) -> str:
    """The one line above every table."""
    if not host:
        return "ran on: unknown"
    providers = ",".join(p.replace("ExecutionProvider", "") for p in host.get("onnxruntime_providers", []))
    parts = [
        f"{host.get('cpu', UNKNOWN)} ({host.get('cores', '?')} cores)",
        host.get("os", UNKNOWN),
        f"Python {host.get('python', UNKNOWN)}",
        f"onnxruntime {host.get('onnxruntime', UNKNOWN)} [{providers or 'no providers'}]",
        f"OpenCV {host.get('opencv', UNKNOWN)}",
    ]
    for gpu in host.get("gpus", []):
        mem = f"{gpu['memory_mib'] / 1024:.0f} GiB" if gpu.get("memory_mib") else "shared memory"
        power = f"{gpu['power_limit_w']:.0f} W limit" if gpu.get("power_limit_w") else "power limit n/a"
        parts.append(
            f"GPU {gpu['name']} ({mem}, driver {gpu['driver']}, SM {_mhz(gpu['sm_clock_mhz'], gpu['sm_clock_max_mhz'])}, "
            f"memory {_mhz(gpu['mem_clock_mhz'], gpu['mem_clock_max_mhz'])}, {power})"
        )
    if "cuda" in host:
        parts.append(f"CUDA {host['cuda']}")
    if "tensorrt" in host:
        parts.append(f"TensorRT {host['tensorrt']}")
    if "l4t" in host:
        parts.append(
            f"Jetson L4T {host['l4t']}, nvpmodel {host.get('nvpmodel', UNKNOWN)}, max clocks {host.get('max_clocks', UNKNOWN)}"
        )
    return f"ran on: {', '.join(parts)}; device {host.get('device', UNKNOWN)}"
