"""Where a frame goes in the model input: Ultralytics' letterbox placement, as plain arithmetic.

Apart from preprocess.py's buffers because postprocess (to map boxes back) and TensorRT's profiles
(engines/tensorrt_profiles.py: the shapes a camera's frames become) need the geometry without them.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def plan_letterbox(
    src_hw: tuple[int, int], target_hw: tuple[int, int], stride: int, auto: bool
) -> tuple[Letterbox, tuple[int, int]]:
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


def plan_vector(lb: Letterbox, padded_hw: tuple[int, int]) -> np.ndarray:
    """The int64 vector a graph-preprocess model takes: (new_h, new_w, top, left, bottom, right)."""
    bottom = padded_hw[0] - lb.new_h - lb.top
    right = padded_hw[1] - lb.new_w - lb.left
    return np.array([lb.new_h, lb.new_w, lb.top, lb.left, bottom, right], np.int64)


__all__ = ["PAD_VALUE", "Letterbox", "plan_letterbox", "plan_vector"]
