"""Fixtures that build real resources: ONNX models exported by Ultralytics, video files, free ports."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")  # Ultralytics must never try to download in tests

IMGSZ = 320  # small input: these tests check logic, not accuracy
DEMO_PT = Path(__file__).resolve().parents[1] / "models" / "demo" / "demo.pt"
DEMO_DYNAMIC = DEMO_PT.with_name("demo_dynamic.onnx")


def cuda_missing() -> str | None:
    """Why the `gpu` tests cannot run here, or None: they need ONNX Runtime's CUDA provider and a GPU."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "no CUDA: ONNX Runtime here has no CUDAExecutionProvider (pip install 'edge_rt[gpu]' on an NVIDIA box)"
    if not _nvidia_gpu_visible():
        return "no NVIDIA GPU visible (no nvidia-smi, /dev/nvidia0 or Jetson release file)"
    return None


def _nvidia_gpu_visible() -> bool:
    return shutil.which("nvidia-smi") is not None or Path("/dev/nvidia0").exists() or Path("/etc/nv_tegra_release").exists()


def tensorrt_missing() -> str | None:
    """Why the `tensorrt` tests cannot run here, or None: TensorRT, cuda-python and a GPU."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed (pip install 'edge_rt[gpu]'; JetPack ships it)"
    try:
        from cuda.bindings import runtime  # noqa: F401
    except ImportError:
        try:
            from cuda import cudart  # noqa: F401
        except ImportError:
            return "cuda-python is not installed (pip install 'edge_rt[gpu]')"
    return None if _nvidia_gpu_visible() else "no NVIDIA GPU visible (no nvidia-smi, /dev/nvidia0 or Jetson release file)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Hardware tests skip with the reason where the hardware is absent (`make test-gpu` runs only them)."""
    reasons = {"gpu": cuda_missing, "tensorrt": tensorrt_missing}
    cache: dict[str, str | None] = {}
    for item in items:
        for marker, why in reasons.items():
            if item.get_closest_marker(marker) is None:
                continue
            if marker not in cache:
                cache[marker] = why()
            if cache[marker]:
                item.add_marker(pytest.mark.skip(reason=str(cache[marker])))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def port() -> int:
    return free_port()


def _calibrate_head(model: object, seed: int) -> None:
    """Make an untrained YOLO give varied, image-dependent scores, so decode and NMS have real work.

    Ultralytics initialises BatchNorm weights to zero, which makes every feature constant; give
    them unit scale, then scale each class conv so its logits vary by about one unit over a real image.
    """
    import torch
    import ultralytics

    g = torch.Generator().manual_seed(seed)
    net = model.model  # type: ignore[attr-defined]
    head = net.model[-1]
    heads = [head.cv3] + ([head.one2one_cv3] if getattr(head, "one2one_cv3", None) is not None else [])
    convs = [seq[-1] for cv3 in heads for seq in cv3]
    inputs: dict[object, torch.Tensor] = {}
    hooks = [c.register_forward_hook(lambda mod, inp, out: inputs.__setitem__(mod, inp[0].detach())) for c in convs]
    im = cv2.imread(str(Path(ultralytics.__file__).parent / "assets" / "bus.jpg"))
    x = torch.from_numpy(cv2.resize(im, (IMGSZ, IMGSZ))[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    net.eval()
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.copy_(1 + 0.1 * torch.randn(mod.weight.shape, generator=g))
                mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=g))
        net(x)
        for c in convs:
            f = inputs[c]
            mean, std = f.mean((0, 2, 3)), f.std((0, 2, 3)).clamp_min(1e-6)
            w = torch.randn(c.weight.shape, generator=g) / std.view(1, -1, 1, 1) / f.shape[1] ** 0.5 * 0.7
            c.weight.copy_(w)
            c.bias.copy_(-(w[:, :, 0, 0] @ mean) - 3.5 + 0.5 * torch.randn(c.bias.shape, generator=g))
    for h in hooks:
        h.remove()


def _export(yaml: str, out: Path, seed: int = 0, **kwargs: object) -> Path:
    import torch
    from ultralytics import YOLO

    torch.manual_seed(seed)
    cwd = os.getcwd()
    # Ultralytics writes a YAML-built model's export into the working directory: one of its own, so two
    # exports (two xdist workers) never write the same file.
    build = Path(tempfile.mkdtemp(prefix="export-", dir=out.parent))
    os.chdir(build)
    try:
        model = YOLO(yaml)
        _calibrate_head(model, seed)
        produced = Path(model.export(format="onnx", imgsz=IMGSZ, simplify=True, verbose=False, **kwargs))
        shutil.move(str(produced), out)
    finally:
        os.chdir(cwd)
        shutil.rmtree(build, ignore_errors=True)
    return out


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def shared_file(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """A file made once per test run, however many xdist workers want it: the first to take its lock
    builds it in the run's base folder (common to all workers), the others wait and reuse it."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    folder = base / "shared"
    folder.mkdir(exist_ok=True)
    out = folder / name
    with _locked(folder / f"{name}.lock"):
        if not out.exists():
            build(out)
    return out


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def onnx_static(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """YOLO11n, classic head [1, 84, A], static 1x3x320x320."""
    return shared_file(tmp_path_factory, "y11_static.onnx", lambda out: _export("yolo11n.yaml", out, batch=1))


@pytest.fixture(scope="session")
def onnx_dynamic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights with dynamic batch, height and width."""
    return shared_file(tmp_path_factory, "y11_dynamic.onnx", lambda out: _export("yolo11n.yaml", out, dynamic=True, batch=4))


@pytest.fixture(scope="session")
def onnx_batch2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Static batch of 2: fewer frames than that are padded."""
    return shared_file(tmp_path_factory, "y11_b2.onnx", lambda out: _export("yolo11n.yaml", out, batch=2))


@pytest.fixture(scope="session")
def onnx_e2e(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """YOLO26n end-to-end head: [1, 300, 6], NMS inside the model."""
    return shared_file(tmp_path_factory, "y26_e2e.onnx", lambda out: _export("yolo26n.yaml", out, batch=1, nms=False))


@pytest.fixture(scope="session")
def onnx_fp16(onnx_static: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """float16 inputs and outputs, as a GPU fp16 export has."""

    def build(out: Path) -> None:
        import onnx
        from onnxruntime.transformers import float16

        onnx.save(float16.convert_float_to_float16(onnx.load(str(onnx_static)), keep_io_types=False), str(out))

    return shared_file(tmp_path_factory, "y11_fp16.onnx", build)


@pytest.fixture(scope="session")
def assets() -> Path:
    """The two images Ultralytics ships with its package."""
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets"


def write_clip(path: Path, frames: int = 12, size: tuple[int, int] = (480, 270), fps: int = 30, seed: int = 0) -> Path:
    """A real mp4 of moving shapes; frame i has a bright bar at a position that encodes i."""
    rng = np.random.default_rng(seed)
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), "OpenCV cannot write mp4 here"
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    for i in range(frames):
        img = base.copy()
        x = 10 + (i * 17) % (w - 60)
        cv2.rectangle(img, (x, 40), (x + 50, 120), (255, 255, 255), -1)
        cv2.circle(img, (w - 60, 60 + (i * 7) % (h - 120)), 30, (0, 0, 255), -1)
        writer.write(img)
    writer.release()
    return path


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.mp4")


@pytest.fixture(scope="session")
def hd_frames(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """160 frames of four real 16:9 mp4s with the shapes the demo model was trained on.

    A one-level pixel difference flips the odd box that sits right at the threshold, so the rate is
    pooled over many frames (measured over 8 clips x 60 frames: 99.5%, per clip 98.9% to 100%).
    """
    from edge_rt.training.synth_video import synth_clip

    folder = tmp_path_factory.mktemp("clips")
    return [f for seed in range(1, 5) for f in _read_frames(synth_clip(folder / f"hd{seed}.mp4", frames=40, size=(1280, 720), fps=30, seed=seed))]


@pytest.fixture(scope="session")
def device_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo weights exported for the GPU path: uint8 frames in, letterbox and NMS in the graph."""
    from edge_rt.exporters import ExportOptions, export

    options = ExportOptions(imgsz=320, dynamic=True, max_batch=4, graph_preprocess=True, nms=True).check()
    return shared_file(tmp_path_factory, "demo_gpu.onnx", lambda out: export(DEMO_PT, out, options))


def _read_frames(path: Path) -> list[np.ndarray]:
    from .helpers import read_frames

    return read_frames(path)
