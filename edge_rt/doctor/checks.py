"""What `edge-rt doctor` looks at on a new box: each check says what it found and, when something is off,
the one line that fixes it. Nothing here needs a GPU; on a box without one it says so and passes."""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import platform
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

IDENTITY = Path(__file__).with_name("identity.onnx")  # a 78-byte model: a real session per provider
OK, INFO, WARN, FAIL = "ok", "info", "warn", "fail"  # fail: the box cannot run edge_rt as it is


@dataclass(frozen=True)
class Check:
    area: str
    status: str
    found: str
    fix: str = ""


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def python_and_packages() -> Iterator[Check]:
    ok = sys.version_info >= (3, 10)
    yield Check("python", OK if ok else FAIL, platform.python_version(), "" if ok else "edge_rt needs Python 3.10 or newer")
    needed = {"numpy": "numpy", "pyzmq": "pyzmq", "pyyaml": "pyyaml", "orjson": "orjson", "lap": "lap", "paho-mqtt": "paho-mqtt"}
    for label, dist in needed.items():
        v = _version(dist)
        yield Check(f"package {label}", OK if v else FAIL, v or "missing", "" if v else f"pip install '{dist}' (or reinstall edge_rt)")
    cv = _version("opencv-python") or _version("opencv-python-headless") or _version("opencv-contrib-python")
    try:
        import cv2

        cv = cv or cv2.__version__  # JetPack's own build has no pip metadata
    except ImportError:
        cv = None
    yield Check("package opencv", OK if cv else FAIL, cv or "missing", "" if cv else "pip install opencv-python-headless")
    optional = {
        "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
        "openvino": ("openvino",),
        "av (event clips)": ("av",),
        "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
        "cuda-python": ("cuda-python", "cuda-bindings"),
    }
    for label, dists in optional.items():
        v = next((x for x in map(_version, dists) if x), None)
        yield Check(f"package {label}", OK if v else INFO, v or "not installed", "")


def opencv_build() -> Iterator[Check]:
    try:
        import cv2
    except ImportError:
        return
    info = {}
    for line in cv2.getBuildInformation().splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key in ("FFMPEG", "GStreamer"):
            info[key] = value.strip().split()[0] if value.strip() else "NO"
    ffmpeg = info.get("FFMPEG", "NO") == "YES"
    yield Check("opencv FFmpeg", OK if ffmpeg else FAIL, "yes" if ffmpeg else "no", "" if ffmpeg else "files and RTSP need OpenCV with FFmpeg: pip install opencv-python-headless")
    gst = info.get("GStreamer", "NO") == "YES"
    yield Check("opencv GStreamer", OK if gst else INFO, "yes" if gst else "no (GStreamer pipelines and CSI cameras need JetPack's OpenCV)")
    try:
        n = cv2.cuda.getCudaEnabledDeviceCount()
    except Exception:  # noqa: BLE001 - a build without the cuda module
        n = 0
    yield Check("opencv CUDA", INFO, f"{n} device(s)" if n else "no (edge_rt letterboxes on the CPU or in the model's graph)")


def onnxruntime_providers() -> Iterator[Check]:
    """Each provider ONNX Runtime lists, tried with a real session: a listed CUDA provider whose libraries
    are missing only shows when a session falls back."""
    try:
        import onnxruntime as ort
    except ImportError:
        yield Check("onnxruntime", WARN, "not installed", "pip install 'edge_rt[cpu]' (or [gpu]), unless you run TensorRT engines only")
        return
    ort.set_default_logger_severity(4)
    for provider in ort.get_available_providers():
        try:
            session = ort.InferenceSession(str(IDENTITY), providers=[provider])
            active = session.get_providers()[0]
        except Exception as exc:  # noqa: BLE001 - whatever ORT raises, the provider does not load
            active, detail = None, str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        name = provider.replace("ExecutionProvider", "")
        if active == provider:
            yield Check(f"onnxruntime {name}", OK, "loads")
        else:
            why = f"fell back to {active}" if active else detail
            fix = "CUDA/cuDNN libraries of the versions onnxruntime-gpu was built for (see its release notes), or --device cpu"
            yield Check(f"onnxruntime {name}", WARN, f"listed but does not load: {why}", fix)


def openvino_devices() -> Iterator[Check]:
    """The devices OpenVINO finds: CPU always; an Intel GPU or NPU only with its driver (and, in a container, its device node)."""
    try:
        import openvino as ov
    except ImportError:
        yield Check("openvino", INFO, "not installed (Intel CPUs, GPUs and NPUs run fastest with it)", "pip install 'edge_rt[openvino]'")
        return
    core = ov.Core()
    devices = list(core.available_devices)
    for name in devices:
        try:
            full = str(core.get_property(name, "FULL_DEVICE_NAME"))
        except Exception:  # noqa: BLE001 - a plugin that cannot answer is still listed
            full = "name unknown"
        yield Check(f"openvino {name}", OK, full)
    fixes = {
        "GPU": ("/dev/dri", "an Intel GPU needs intel-opencl-icd + intel-level-zero-gpu and /dev/dri/renderD128 (the render group)"),
        "NPU": ("/dev/accel", "an Intel NPU needs the NPU driver (intel-driver-compiler-npu, intel-level-zero-npu) and /dev/accel"),
    }
    for name, (node, fix) in fixes.items():
        if not any(d.startswith(name) for d in devices):
            present = Path(node).exists()
            yield Check(f"openvino {name}", WARN if present else INFO, f"none ({node} {'exists' if present else 'absent'})", fix if present else "")


def _driver_cuda() -> int | None:
    """The driver's CUDA version (e.g. 12060) through libcuda itself: None without an NVIDIA driver."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    v = ctypes.c_int()
    return v.value if lib.cuDriverGetVersion(ctypes.byref(v)) == 0 else None


def nvidia() -> Iterator[Check]:
    driver = _driver_cuda()
    if driver is None:
        yield Check("NVIDIA GPU", INFO, "none: no NVIDIA driver (libcuda) on this box; edge_rt runs on the CPU")
        return
    yield Check("NVIDIA driver", OK, f"CUDA {driver // 1000}.{driver % 1000 // 10}")
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]
        except ImportError:
            yield Check("cuda-python", INFO, "not installed (TensorRT engines need it)", "pip install 'edge_rt[gpu]'")
            return
    from ..engines.cuda_runtime import cuda_mismatch, cuda_version

    err, bindings = cudart.cudaRuntimeGetVersion()  # the CUDA the bindings were built with, not a runtime here
    problem = cuda_mismatch(driver, int(bindings)) if int(err) == 0 else None
    if problem is not None:
        yield Check("cuda-python runtime", FAIL, problem.split(": ")[0], problem.split(": ", 1)[1])
        return
    built = f"built for CUDA {cuda_version(int(bindings))}" if int(err) == 0 else "its CUDA version unread"
    yield Check("cuda-python runtime", OK, f"{built}; the driver's CUDA {cuda_version(driver)} runs it (same major or newer)")
    err, props = cudart.cudaGetDeviceProperties(0)
    if int(err) == 0:
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        yield Check("GPU", OK, f"{name.rstrip(chr(0))}, compute capability {props.major}.{props.minor}")


def jetson() -> Iterator[Check]:
    """Model, L4T, power mode and clocks, read as `bench` reads them for its host line (bench/hardware.py)."""
    from ..bench.hardware import TEGRA_RELEASE, parse_jetson_clocks, parse_l4t, parse_nvpmodel, run_tool

    if not TEGRA_RELEASE.exists():
        return
    model = Path("/proc/device-tree/model")
    name = model.read_text(errors="replace").rstrip("\x00") if model.exists() else "Jetson"
    yield Check("Jetson", OK, f"{name}, L4T {parse_l4t(TEGRA_RELEASE.read_text(errors='replace')) or 'unknown'}")
    mode = parse_nvpmodel(run_tool(["nvpmodel", "-q"]) or "")
    maxn = mode is not None and "MAXN" in mode.upper()
    yield Check("nvpmodel", OK if maxn else WARN, mode or "unknown (nvpmodel -q failed)", "" if maxn else "sudo nvpmodel -m 0: the maximum power mode")
    show = run_tool(["jetson_clocks", "--show"])
    pinned = parse_jetson_clocks(show) if show is not None else "unknown (jetson_clocks --show needs root)"
    yield Check("jetson_clocks", OK if pinned == "yes" else INFO, f"clocks pinned at their maximum: {pinned}", "" if pinned == "yes" else "sudo jetson_clocks, for steady latency")


def zeromq() -> Iterator[Check]:
    try:
        import zmq
    except ImportError:
        return
    curve = zmq.has("curve")
    yield Check("ZeroMQ CURVE", OK if curve else WARN, f"libzmq {zmq.zmq_version()}, CURVE {'yes' if curve else 'no'}", "" if curve else "pip install --force-reinstall pyzmq (its wheels bundle libzmq with CURVE)")


def cameras() -> Iterator[Check]:
    devices = sorted(Path("/dev").glob("video*"))
    if not devices:
        yield Check("cameras", INFO, "no /dev/video* device (RTSP and files need none)")
        return
    for dev in devices:
        ok = os.access(dev, os.R_OK | os.W_OK)
        yield Check(f"camera {dev}", OK if ok else WARN, "readable" if ok else "no permission", "" if ok else "sudo usermod -aG video $USER (then log in again)")


def disk() -> Iterator[Check]:
    from ..engines.onnxruntime import default_cache_dir

    cache = default_cache_dir()
    probe = next((p for p in (cache, *cache.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free
    ok = free >= 2 << 30
    yield Check("disk for engine caches", OK if ok else WARN, f"{free / 2**30:.1f} GB free at {probe}", "" if ok else "TensorRT engines and their caches take 0.1-1 GB per model: free some space")


CHECKS: tuple[Callable[[], Iterator[Check]], ...] = (
    python_and_packages, opencv_build, onnxruntime_providers, openvino_devices, nvidia, jetson, zeromq, cameras, disk
)


def run_checks() -> list[Check]:
    out: list[Check] = []
    for check in CHECKS:
        try:
            out.extend(check())
        except Exception as exc:  # noqa: BLE001 - a check that breaks is itself a finding, never a traceback
            out.append(Check(check.__name__, WARN, f"the check failed: {type(exc).__name__}: {exc}"[:160]))
    return out


def healthy(checks: list[Check]) -> bool:
    """The box can run edge_rt on what it has: nothing it needs is broken (a CPU box with no GPU is fine),
    and it has an engine: ONNX Runtime's CPU provider, or TensorRT."""
    if any(c.status == FAIL for c in checks):
        return False
    engines = [c for c in checks if c.area in ("onnxruntime CPU", "package tensorrt") and c.status == OK]
    return bool(engines)
