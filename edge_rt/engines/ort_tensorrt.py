"""ONNX Runtime's TensorRT provider: its one shape profile, built from the run's batch and input size, and
the provider versions that decide whether that profile can be built as written.

The profile is fixed when the session is made; a batch or an input size outside it fails mid-run at
`setInputShape()`. So the profile comes from what the run will send: its batch (from the number of
sources and --max-batch) and its --imgsz, never from a default.

onnxruntime-gpu built against TensorRT >= 10.11 passes a shape tensor's OPT values as MAX and its MAX
values as OPT (`setShapeValuesV2` in `ApplyProfileShapesFromProviderOptions`; fixed upstream by
microsoft/onnxruntime#32415). A letterbox plan is such a shape tensor: with opt below max the swapped
profile is invalid, the engine build fails and ORT runs the model on CUDA instead.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..detect.model_info import ModelInfo
from ..errors import EngineError

log = logging.getLogger("edge_rt.engines.onnxruntime")

SWAP_SINCE_TENSORRT = (10, 11)  # the first TensorRT whose headers make ORT take the setShapeValuesV2 branch
# No onnxruntime-gpu release is confirmed to carry #32415 (merged 2026-09): every build against TensorRT
# >= 10.11 counts as affected until a GPU run shows a fixed one; set the first fixed (major, minor) here then.
SWAP_FIXED_IN_ORT: tuple[int, int] | None = None
TENSORRT_DISTS = ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-cu12-libs", "tensorrt-cu13-libs")
NATIVE_PATH = "export a native engine instead: edge-rt export --weights MODEL.pt --target trt-fp16, then --model MODEL.engine"


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """(major, minor, ...) from '1.31.1', '1.23.0+cu128', '10.11.0.33'; None when it has no leading number."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", text or "")
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def _dotted(v: tuple[int, ...] | None) -> str:
    return ".".join(map(str, v)) if v else "unknown"


@dataclass(frozen=True)
class ProviderVersions:
    """What the TensorRT provider was built with, as far as this box can tell, and where that was read."""

    ort: tuple[int, ...] | None
    tensorrt: tuple[int, ...] | None
    tensorrt_from: str  # "onnxruntime build info", "package tensorrt-cu12", "libnvinfer", or "" when unread

    @property
    def swaps_shape_opt_max(self) -> bool | None:
        """True for a build with the OPT/MAX swap, False without it, None when the TensorRT version is unread."""
        if self.ort is not None and SWAP_FIXED_IN_ORT is not None and self.ort[:2] >= SWAP_FIXED_IN_ORT:
            return False
        if self.tensorrt is None:
            return None
        return self.tensorrt[:2] >= SWAP_SINCE_TENSORRT

    def describe(self) -> str:
        where = f" ({self.tensorrt_from})" if self.tensorrt_from else ""
        return f"onnxruntime {_dotted(self.ort)} with TensorRT {_dotted(self.tensorrt)}{where}"


def _dist_version(names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        try:
            return name, importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _libnvinfer_version() -> str | None:
    """The libnvinfer the provider loads, by its own `getInferLibVersion` (e.g. 101100 for 10.11.0)."""
    for soname in ("libnvinfer.so.10", "libnvinfer.so.11"):
        try:
            v = int(ctypes.CDLL(soname).getInferLibVersion())
        except (OSError, AttributeError):
            continue
        return f"{v // 10000}.{v // 100 % 100}.{v % 100}"
    return None


def read_versions(
    ort: Any,
    dist: Callable[[tuple[str, ...]], tuple[str, str] | None] = _dist_version,
    library: Callable[[], str | None] = _libnvinfer_version,
) -> ProviderVersions:
    """The ORT version, and the TensorRT it was built with where its build info says so; else the TensorRT
    installed beside it (the provider loads that one, and a build needs at least its own minor)."""
    ort_v = parse_version(getattr(ort, "__version__", None))
    info = ""
    try:
        info = str(ort.get_build_info())
    except Exception:  # noqa: BLE001 - an older ORT without it, or a build that cannot say
        pass
    m = re.search(r"tensorrt[^0-9]{0,24}(\d+\.\d+(?:\.\d+)*)", info, re.IGNORECASE)
    if m:
        return ProviderVersions(ort_v, parse_version(m.group(1)), "onnxruntime build info")
    found = dist(TENSORRT_DISTS)
    if found is not None:
        return ProviderVersions(ort_v, parse_version(found[1]), f"package {found[0]}")
    lib = library()
    return ProviderVersions(ort_v, parse_version(lib), "libnvinfer" if lib else "")


def covered_size(run: tuple[int, int] | None, exported: tuple[int, int] | None) -> tuple[int, int]:
    """The largest (h, w) the profile takes: the export's size and the run's --imgsz, whichever is larger
    per side, so every load of one model (a probe, `bench engine`, the run) asks for the same engine and
    the provider's engine cache is built once."""
    sizes = [s for s in (run, exported) if s is not None] or [(640, 640)]
    return max(s[0] for s in sizes), max(s[1] for s in sizes)


@dataclass(frozen=True)
class RunShape:
    """What a run sends the engine: its largest batch and the size frames are letterboxed to."""

    max_batch: int
    imgsz: tuple[int, int] | None = None  # --imgsz; None: the model's own


def trt_profile_shapes(
    image_input: str, image_shape: tuple[object, ...], info: ModelInfo | None, run: RunShape, versions: ProviderVersions | None = None
) -> dict[str, str] | None:
    """One explicit profile for a dynamic image input, so the provider builds once, not per shape.

    The provider wants a profile for every dynamic input once any is given: a graph-preprocess model's
    letterbox plan is a shape tensor, whose profile holds its values (new_h, new_w and the pads), as the
    native builder sets them (`tensorrt_profiles.plan_frames_profile`).
    """
    dims = image_shape
    if all(isinstance(d, int) for d in dims):
        return None
    if info is not None and info.graph_preprocess and info.plan_input:
        return _plan_profile(image_input, dims, info, run, versions)
    max_batch = min(run.max_batch, info.max_batch or run.max_batch) if info is not None else run.max_batch
    fixed = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
    lo_b, hi_b = fixed or 1, fixed or max_batch
    nhwc = len(dims) == 4 and dims[3] == 3
    if nhwc:  # camera frames: anything from 32x32 to 4K
        lo, opt, hi = (lo_b, 32, 32, 3), (hi_b, 720, 1280, 3), (hi_b, 2160, 3840, 3)
    else:
        # a dynamic side spans every stride multiple up to the run's size: the runtime letterboxes to the
        # smallest rectangle (384x640 for a 16:9 camera at 640), never past --imgsz or the export's size
        size = covered_size(run.imgsz, info.imgsz if info is not None else None)
        h = dims[2] if isinstance(dims[2], int) else size[0]
        w = dims[3] if isinstance(dims[3], int) else size[1]
        mh = dims[2] if isinstance(dims[2], int) else 32
        mw = dims[3] if isinstance(dims[3], int) else 32
        lo, opt, hi = (lo_b, 3, mh, mw), (hi_b, 3, h, w), (hi_b, 3, h, w)

    def fmt(shape: tuple[object, ...]) -> str:
        return f"{image_input}:{_dims(shape)}"

    return {"trt_profile_min_shapes": fmt(lo), "trt_profile_opt_shapes": fmt(opt), "trt_profile_max_shapes": fmt(hi)}


def _plan_profile(
    image_input: str, dims: tuple[object, ...], info: ModelInfo, run: RunShape, versions: ProviderVersions | None
) -> dict[str, str]:
    from .tensorrt_profiles import plan_frames_profile  # shape arithmetic only: no onnx, no TensorRT

    shape = [d if isinstance(d, int) else -1 for d in dims]
    # a file from before the frames input stated a static export's batch: its metadata says it (info.batch)
    shape[0] = info.batch or shape[0]
    # a dynamic batch up to what the run batches, and never past an in-graph NMS's exported batch
    batch = None if shape[0] > 0 else min(run.max_batch, info.max_batch or run.max_batch)
    inner = covered_size(run.imgsz, info.imgsz) if info.dynamic_shape else info.imgsz
    p = plan_frames_profile(shape, inner, info.stride, info.dynamic_shape, 1 if batch else None, batch, batch)
    assert p.plan is not None
    plan_lo, plan_opt, plan_hi = p.plan
    if versions is not None and versions.swaps_shape_opt_max is not False:
        plan_opt = swap_safe_plan_opt(info, plan_opt, plan_hi, versions)
    keys = ("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes")
    return {
        key: f"{image_input}:{_dims(shape_)},{info.plan_input}:{_dims(values)}"
        for key, shape_, values in zip(keys, (p.min, p.opt, p.max), (plan_lo, plan_opt, plan_hi))
    }


def swap_safe_plan_opt(
    info: ModelInfo, plan_opt: tuple[int, ...], plan_hi: tuple[int, ...], versions: ProviderVersions
) -> tuple[int, ...]:
    """The plan's OPT values a provider with the OPT/MAX swap (or one whose TensorRT is unread) can build.

    OPT = MAX reads the same either way round. That is a plan TensorRT can tune for when the model's inner
    size follows the frame (dynamic): the largest plan pads by under a stride, a size the network takes.
    A fixed inner size has no such plan (its largest values pad to twice the input), so there is no
    profile that builds under the swap: one line names the bug and the native engine path.
    """
    if info.dynamic_shape:
        if plan_opt != plan_hi:
            log.info(
                "%s: the letterbox plan's TensorRT profile is tuned at its largest values (OPT = MAX), so that the "
                "OPT/MAX swap of microsoft/onnxruntime#32415 cannot invalidate it",
                versions.describe(),
            )
        return plan_hi
    if versions.swaps_shape_opt_max is None:
        return plan_opt  # unread: build as written; a failed build is refused by check_active_provider, naming the bug
    raise EngineError(
        f"--device tensorrt: {versions.describe()} swaps OPT and MAX of shape-tensor profiles "
        f"(microsoft/onnxruntime#32415), and this model's fixed-size letterbox has no profile that builds under it; "
        f"{NATIVE_PATH} (or run --device cuda)"
    )


def fallback_hint(versions: ProviderVersions | None, has_plan: bool) -> str:
    """What to add when the TensorRT provider was refused: the swap, when it may be the cause."""
    if versions is None or not has_plan or versions.swaps_shape_opt_max is False:
        return ""
    return f"; {versions.describe()} may swap OPT and MAX of the letterbox plan's profile (microsoft/onnxruntime#32415): {NATIVE_PATH}"


def _dims(values: tuple[object, ...] | list[object]) -> str:
    return "x".join(str(v) for v in values)
