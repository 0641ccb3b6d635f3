"""Letterbox frames into a reused input tensor, exactly as Ultralytics' predict does."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How one frame was placed in the model input; postprocess inverts it."""

    src_w: int
    src_h: int
    new_w: int  # resized size before padding
    new_h: int
    left: int
    top: int

    @property
    def gain_x(self) -> float:
        return self.new_w / self.src_w

    @property
    def gain_y(self) -> float:
        return self.new_h / self.src_h


def plan_letterbox(src_hw: tuple[int, int], target_hw: tuple[int, int], stride: int, auto: bool) -> tuple[Letterbox, tuple[int, int]]:
    """Ultralytics' LetterBox.get_params (scaleup, centred): the placement and the padded shape."""
    h0, w0 = src_hw
    r = min(target_hw[0] / h0, target_hw[1] / w0)
    new_w, new_h = max(round(w0 * r), 1), max(round(h0 * r), 1)
    dw, dh = target_hw[1] - new_w, target_hw[0] - new_h
    if auto:  # smallest stride multiple: less compute for 16:9 cameras
        dw, dh = dw % stride, dh % stride
    left, right = round(dw / 2 - 0.1), round(dw / 2 + 0.1)
    top, bottom = round(dh / 2 - 0.1), round(dh / 2 + 0.1)
    return Letterbox(w0, h0, new_w, new_h, left, top), (new_h + top + bottom, new_w + left + right)


@dataclass(frozen=True, eq=False)
class Prepared:
    """A batch's input tensor and each frame's letterbox; the tensor's first `count` rows are real."""

    tensor: np.ndarray
    letterboxes: tuple[Letterbox, ...]

    @property
    def count(self) -> int:
        return len(self.letterboxes)


class Preprocessor:
    """Owns a small ring of input buffers so steady-state batches allocate nothing.

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
    ) -> None:
        self.imgsz = imgsz
        self.stride = stride
        self.auto = auto
        self.dtype = np.dtype(dtype)
        self.fixed_batch = fixed_batch
        self._ring = ring
        self._buffers: dict[tuple[int, ...], list[np.ndarray]] = {}
        self._next: dict[tuple[int, ...], int] = {}
        self._canvas: dict[tuple[int, int], np.ndarray] = {}

    def _buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        bufs = self._buffers.get(shape)
        if bufs is None:
            bufs = self._buffers[shape] = [np.zeros(shape, self.dtype) for _ in range(self._ring)]
            self._next[shape] = 0
        i = self._next[shape]
        self._next[shape] = (i + 1) % self._ring
        return bufs[i]

    def __call__(self, images: list[np.ndarray]) -> Prepared:
        if not images:
            raise ValueError("Preprocessor: expected at least one image, got none")
        n = len(images)
        batch = self.fixed_batch or n
        if n > batch:
            raise ValueError(f"Preprocessor: {n} images for a model with fixed batch {batch}")
        # Like Ultralytics: a rectangle only when every image in the batch has the same shape.
        auto = self.auto and len({im.shape for im in images}) == 1
        plans = [plan_letterbox(im.shape[:2], self.imgsz, self.stride, auto) for im in images]
        out_h, out_w = plans[0][1] if auto else self.imgsz
        tensor = self._buffer((batch, 3, out_h, out_w))
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
        canvas.fill(PAD_VALUE)
        resized = im if (lb.new_w, lb.new_h) == (lb.src_w, lb.src_h) else cv2.resize(im, (lb.new_w, lb.new_h), interpolation=cv2.INTER_LINEAR)
        canvas[lb.top : lb.top + lb.new_h, lb.left : lb.left + lb.new_w] = resized
        return canvas
