"""Letterbox frames into a reused input tensor, exactly as Ultralytics' predict does.

Two forms: `Preprocessor` letterboxes on the host into float NCHW (any model); `FramePacker` only
packs the uint8 frames and a letterbox plan (letterbox.py) for models that letterbox inside their graph (built by
`edge-rt export --graph-preprocess`), so on a GPU the frames cross to the device once, as uint8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .letterbox import PAD_VALUE, Letterbox, plan_letterbox, plan_vector

if TYPE_CHECKING:
    from .model_info import ModelInfo

@dataclass(frozen=True, eq=False)
class Prepared:
    """A batch's input tensor and each frame's letterbox; the tensor's first `count` rows are real.

    `plan` is set for graph-preprocess models: the letterbox the graph applies to every row.
    """

    tensor: np.ndarray
    letterboxes: tuple[Letterbox, ...]
    plan: np.ndarray | None = None

    @property
    def count(self) -> int:
        return len(self.letterboxes)


class BufferRing:
    """A few reused buffers per shape, handed out in turn, so steady-state batches allocate nothing.

    `size` must exceed the number of batches in flight (being filled, queued, in the engine).
    """

    def __init__(self, dtype: np.dtype, size: int = 4) -> None:
        self.dtype = dtype
        self.size = size
        self._buffers: dict[tuple[int, ...], list[np.ndarray]] = {}
        self._next: dict[tuple[int, ...], int] = {}

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        bufs = self._buffers.get(shape)
        if bufs is None:
            bufs = self._buffers[shape] = [np.zeros(shape, self.dtype) for _ in range(self.size)]
            self._next[shape] = 0
        i = self._next[shape]
        self._next[shape] = (i + 1) % self.size
        return bufs[i]


def check_batch(images: list[np.ndarray], fixed_batch: int | None, who: str) -> int:
    """The batch the tensor has: the model's fixed batch (padded) or the number of images."""
    if not images:
        raise ValueError(f"{who}: expected at least one image, got none")
    batch = fixed_batch or len(images)
    if len(images) > batch:
        raise ValueError(f"{who}: {len(images)} images for a model with fixed batch {batch}")
    return batch


class Preprocessor:
    """Letterboxes on the host into float NCHW, in buffers from a ring.

    `ring` must exceed the number of batches in flight (being filled, queued, in the engine).
    """

    def __init__(
        self,
        imgsz: tuple[int, int],
        stride: int,
        auto: bool,
        dtype: str = "float32",
        fixed_batch: int | None = None,
        ring: int = 4,
        nhwc: bool = False,
    ) -> None:
        self.imgsz = imgsz
        self.stride = stride
        self.auto = auto
        self.nhwc = nhwc  # uint8 BGR [B, H, W, 3] for an engine that converts itself; else float RGB [B, 3, H, W]
        self.dtype = np.dtype(np.uint8 if nhwc else dtype)
        self.fixed_batch = fixed_batch
        self._ring = BufferRing(self.dtype, ring)
        self._canvas: dict[tuple[int, int], np.ndarray] = {}

    def __call__(self, images: list[np.ndarray]) -> Prepared:
        batch = check_batch(images, self.fixed_batch, "Preprocessor")
        # Like Ultralytics: a rectangle only when every image in the batch has the same shape.
        auto = self.auto and len({im.shape for im in images}) == 1
        plans = [plan_letterbox(im.shape[:2], self.imgsz, self.stride, auto) for im in images]
        out_h, out_w = plans[0][1] if auto else self.imgsz
        if self.nhwc:  # the engine converts (OpenVINO's pre-processing): letterbox straight into the uint8 batch
            tensor = self._ring.take((batch, out_h, out_w, 3))
            for i, (im, (lb, _)) in enumerate(zip(images, plans)):
                letterbox_into(tensor[i], im, lb)
            return Prepared(tensor, tuple(lb for lb, _ in plans))
        tensor = self._ring.take((batch, 3, out_h, out_w))
        boxes = []
        for i, (im, (lb, _)) in enumerate(zip(images, plans)):
            canvas = self._letterbox(im, lb, out_h, out_w)
            # BGR HWC uint8 -> RGB CHW float in [0, 1], written straight into the reused buffer.
            np.divide(canvas[..., ::-1].transpose(2, 0, 1), 255, out=tensor[i], dtype=self.dtype, casting="unsafe")
            boxes.append(lb)
        return Prepared(tensor, tuple(boxes))

    def _letterbox(self, im: np.ndarray, lb: Letterbox, out_h: int, out_w: int) -> np.ndarray:
        canvas = self._canvas.get((out_h, out_w))
        if canvas is None:
            canvas = self._canvas[(out_h, out_w)] = np.empty((out_h, out_w, 3), np.uint8)
        return letterbox_into(canvas, im, lb)


def letterbox_into(canvas: np.ndarray, im: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Resize `im` and place it on `canvas` (uint8 HWC, padded with 114), as Ultralytics' LetterBox does."""
    canvas.fill(PAD_VALUE)
    resized = (
        im
        if (lb.new_w, lb.new_h) == (lb.src_w, lb.src_h)
        else cv2.resize(im, (lb.new_w, lb.new_h), interpolation=cv2.INTER_LINEAR)
    )
    canvas[lb.top : lb.top + lb.new_h, lb.left : lb.left + lb.new_w] = resized
    return canvas


class FramePacker:
    """Packs uint8 BGR frames [B, H, W, 3] and one letterbox plan; the model's graph does the rest.

    Frames of one batch normally share a size (cameras of a site usually do) and go as they are:
    4x fewer bytes than float input, and a single frame is passed without a copy. When sizes differ,
    each frame is letterboxed here into the model's input size (still uint8) and the plan is the
    identity, so the boxes are the same either way. Buffers come from a ring, as in `Preprocessor`.
    """

    def __init__(self, imgsz: tuple[int, int], stride: int, auto: bool, fixed_batch: int | None = None, ring: int = 4) -> None:
        self.imgsz = imgsz
        self.stride = stride
        self.auto = auto
        self.fixed_batch = fixed_batch
        self._ring = BufferRing(np.dtype(np.uint8), ring)

    def __call__(self, images: list[np.ndarray]) -> Prepared:
        batch = check_batch(images, self.fixed_batch, "FramePacker")
        same = len({im.shape for im in images}) == 1
        auto = self.auto and same
        plans = [plan_letterbox(im.shape[:2], self.imgsz, self.stride, auto) for im in images]
        boxes = tuple(lb for lb, _ in plans)
        if same:
            h, w = images[0].shape[:2]
            if batch == 1 and images[0].flags.c_contiguous:
                tensor = images[0][None]  # a view: the one copy is the engine's, to its input buffer
            else:
                tensor = self._ring.take((batch, h, w, 3))
                for i, im in enumerate(images):
                    tensor[i] = im
            return Prepared(tensor, boxes, plan_vector(boxes[0], plans[0][1]))
        out_h, out_w = self.imgsz
        tensor = self._ring.take((batch, out_h, out_w, 3))
        for i, (im, lb) in enumerate(zip(images, boxes)):
            letterbox_into(tensor[i], im, lb)
        identity = Letterbox(out_w, out_h, out_w, out_h, 0, 0)
        return Prepared(tensor, boxes, plan_vector(identity, (out_h, out_w)))


def make_preprocessor(info: ModelInfo, imgsz: tuple[int, int] | None = None, ring: int = 4) -> Preprocessor | FramePacker:
    """The preprocessing a model needs: host letterbox to float, or frames packed for its graph."""
    size = imgsz or info.imgsz
    if info.graph_preprocess:
        return FramePacker(size, info.stride, auto=info.dynamic_shape, fixed_batch=info.batch, ring=ring)
    nhwc = info.input_layout == "nhwc"
    return Preprocessor(size, info.stride, info.dynamic_shape, info.input_dtype, info.batch, ring, nhwc)
