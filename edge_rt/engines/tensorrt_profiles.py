"""Optimization-profile planning for a TensorRT build: pure shape arithmetic, testable without TensorRT or a GPU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..detect.letterbox import plan_letterbox
from ..detect.model_info import ModelInfo
from ..errors import ConfigError, ModelError

FRAME_MIN, FRAME_OPT, FRAME_MAX = (32, 32), (720, 1280), (2160, 3840)  # camera frames of graph-preprocess models


@dataclass(frozen=True)
class Profile:
    """One optimization profile: the image input at its smallest, the shape tuned for, and its largest.

    [B, 3, H, W] for plain models; [B, H, W, 3] frames for graph-preprocess models, whose `plan`
    holds the (min, opt, max) values of the letterbox plan, a shape tensor (`set_shape_input`).
    """

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]
    plan: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None

    @property
    def dynamic(self) -> bool:
        return self.min != self.max


def engine_profiles(
    info: ModelInfo,
    onnx_meta: Mapping[str, str],
    input_shape: Sequence[int],
    *,
    min_batch: int | None = None,
    opt_batch: int | None = None,
    max_batch: int | None = None,
    imgsz: tuple[int, int] | None = None,
    max_frame: tuple[int, int] = FRAME_MAX,
) -> tuple[Profile, list[Profile]]:
    """The whole input range an engine takes, and the per-batch profiles it is built with.

    One optimization profile per batch size (1, 2, 4, ... max), each exact on the batch axis, so the
    runtime runs every batch on kernels tuned for it. A graph-preprocess ONNX (`edge_rt_preprocess`
    metadata: uint8 frames and a letterbox plan in) takes any camera size, and its plan is a shape
    tensor whose value range each profile states. The batch range defaults to 1..the ONNX's export
    batch; `imgsz` may only change the largest input of a dynamic-shape, plain ONNX.
    """
    if imgsz is not None and not info.dynamic_shape and tuple(imgsz) != tuple(info.imgsz):
        raise ConfigError(f"imgsz {list(imgsz)}: this ONNX has a fixed input size {list(info.imgsz)}")
    if imgsz is not None and info.graph_preprocess and tuple(imgsz) != tuple(info.imgsz):
        raise ConfigError(f"imgsz {list(imgsz)}: the letterbox inside this ONNX targets {list(info.imgsz)}; export it again")
    exported = onnx_meta.get("batch", "")
    default_batch = info.batch or (int(exported) if exported.isdigit() else 1)
    shape = [int(d) for d in input_shape]
    batches = (min_batch, opt_batch, max_batch, default_batch)
    if info.graph_preprocess:
        profile = plan_frames_profile(shape, info.imgsz, info.stride, info.dynamic_shape, *batches, max_frame=max_frame)
    else:
        profile = plan_profile(shape, imgsz or info.imgsz, info.stride, *batches)
    return profile, batch_profiles(profile)


def batch_range(
    fixed: int, min_batch: int | None, opt_batch: int | None, max_batch: int | None, default_batch: int = 1
) -> tuple[int, int, int]:
    """(min, opt, max) batch: a fixed batch is the only batch its engine takes; else min..max tuned for opt."""
    asked = {"min_batch": min_batch, "opt_batch": opt_batch, "max_batch": max_batch}
    for key, value in asked.items():
        if value is not None and value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")
    if fixed > 0:
        wrong = {k: v for k, v in asked.items() if v is not None and v != fixed}
        if wrong:
            bad = ", ".join(f"{k}={v}" for k, v in wrong.items())
            raise ConfigError(
                f"{bad}: this ONNX has a fixed batch of {fixed}, so its engine runs batch {fixed} only; "
                "export the ONNX with dynamic=True for a batch range"
            )
        return fixed, fixed, fixed
    hi = max_batch or max(opt_batch or 0, min_batch or 0, default_batch, 1)
    lo = min_batch or 1
    opt = opt_batch or hi
    if not lo <= opt <= hi:
        raise ConfigError(f"batch range must satisfy min <= opt <= max, got min={lo} opt={opt} max={hi}")
    return lo, opt, hi


def plan_profile(
    input_shape: Sequence[int],
    imgsz: tuple[int, int],
    stride: int,
    min_batch: int | None = None,
    opt_batch: int | None = None,
    max_batch: int | None = None,
    default_batch: int = 1,
) -> Profile:
    """The whole range for an input shape (-1 = dynamic); `batch_profiles` splits it per batch size.

    A dynamic height/width spans every stride multiple up to `imgsz`, because the runtime letterboxes
    dynamic-shape models to the smallest rectangle (384x640 for a 16:9 camera at 640), not the square.
    """
    if len(input_shape) != 4:
        raise ModelError(f"expected a 4-D image input [B, 3, H, W], got {list(input_shape)}")
    if input_shape[1] not in (3, -1):
        raise ModelError(f"expected 3 input channels, got {input_shape[1]}")
    lo, opt, hi = batch_range(int(input_shape[0]), min_batch, opt_batch, max_batch, default_batch)
    h, w = int(input_shape[2]), int(input_shape[3])
    if h > 0 and w > 0:
        return Profile((lo, 3, h, w), (opt, 3, h, w), (hi, 3, h, w))
    th, tw = (h if h > 0 else imgsz[0]), (w if w > 0 else imgsz[1])
    mh, mw = (h if h > 0 else min(stride, th)), (w if w > 0 else min(stride, tw))
    return Profile((lo, 3, mh, mw), (opt, 3, th, tw), (hi, 3, th, tw))


def letterbox_plan(frame_hw: tuple[int, int], inner_hw: tuple[int, int], stride: int, auto: bool) -> tuple[int, ...]:
    """(new_h, new_w, top, left, bottom, right): what `preprocess` feeds a graph-preprocess model."""
    lb, (ph, pw) = plan_letterbox(frame_hw, inner_hw, stride, auto)
    return (lb.new_h, lb.new_w, lb.top, lb.left, ph - lb.new_h - lb.top, pw - lb.new_w - lb.left)


def plan_frames_profile(
    input_shape: Sequence[int],
    inner_hw: tuple[int, int],
    stride: int,
    dynamic_inner: bool,
    min_batch: int | None = None,
    opt_batch: int | None = None,
    max_batch: int | None = None,
    default_batch: int = 1,
    max_frame: tuple[int, int] = FRAME_MAX,
) -> Profile:
    """The range of a graph-preprocess model: frames [B, H, W, 3] of any camera size, and its plan values.

    Pads are bounded by how the letterbox centres a frame: at most half the inner size, or half a
    stride when the inner size follows the frame (dynamic). Loose bounds cost device memory, because
    TensorRT sizes activations for the largest padded input the plan values allow.
    """
    if len(input_shape) != 4 or int(input_shape[3]) not in (3, -1):
        raise ModelError(f"expected camera frames [B, H, W, 3], got {list(input_shape)}")
    lo, opt, hi = batch_range(int(input_shape[0]), min_batch, opt_batch, max_batch, default_batch)
    fh, fw = int(input_shape[1]), int(input_shape[2])
    small = (fh if fh > 0 else FRAME_MIN[0], fw if fw > 0 else FRAME_MIN[1])
    large = (fh if fh > 0 else max_frame[0], fw if fw > 0 else max_frame[1])
    mid = (fh if fh > 0 else min(FRAME_OPT[0], large[0]), fw if fw > 0 else min(FRAME_OPT[1], large[1]))
    h, w = inner_hw
    ph, pw = (stride // 2, stride // 2) if dynamic_inner else ((h + 1) // 2, (w + 1) // 2)
    plan_lo, plan_hi = (1, 1, 0, 0, 0, 0), (h, w, ph, pw, ph, pw)
    plan_opt = letterbox_plan(mid, inner_hw, stride, dynamic_inner)
    return Profile((lo, *small, 3), (opt, *mid, 3), (hi, *large, 3), (plan_lo, plan_opt, plan_hi))


def batch_sizes(lo: int, opt: int, hi: int) -> list[int]:
    """The batch of each profile: min, the powers of two between, opt and max (1, 2, 4, 8 for 1..8)."""
    sizes = {lo, opt, hi}
    b = 1
    while b < hi:
        if b > lo:
            sizes.add(b)
        b *= 2
    return sorted(sizes)


def batch_profiles(profile: Profile) -> list[Profile]:
    """One profile per batch size, each with min = opt = max on the batch axis (H/W ranges kept).

    A profile tuned for exactly its batch beats one range tuned for a single opt batch, and the
    runtime picks the profile whose batch equals the call's (padding up to the next one otherwise).
    """
    lo, opt, hi = profile.min[0], profile.opt[0], profile.max[0]
    return [
        Profile((b, *profile.min[1:]), (b, *profile.opt[1:]), (b, *profile.max[1:]), profile.plan)
        for b in batch_sizes(lo, opt, hi)
    ]
