"""Letterbox must equal Ultralytics' LetterBox pixel for pixel, for every shape a camera sends."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ultralytics.data.augment import LetterBox

from edge_rt.detect.preprocess import Preprocessor, plan_letterbox


@pytest.mark.parametrize("auto", [False, True])
@pytest.mark.parametrize("hw", [(720, 1280), (1080, 1920), (480, 640), (1080, 810), (250, 251), (3, 1000), (640, 640), (100, 60)])
def test_letterbox_equals_ultralytics(hw: tuple[int, int], auto: bool) -> None:
    rng = np.random.default_rng(sum(hw))
    im = rng.integers(0, 255, (*hw, 3), dtype=np.uint8)
    ref = LetterBox((320, 320), auto=auto, stride=32)(image=im)
    pre = Preprocessor((320, 320), 32, auto=auto)
    prepared = pre([im])
    expected = torch.from_numpy(ref[None]).permute(0, 3, 1, 2).flip(1).float().div_(255).numpy()
    assert prepared.tensor.shape == expected.shape
    np.testing.assert_array_equal(prepared.tensor, expected)
    lb, shape = plan_letterbox(hw, (320, 320), 32, auto)
    assert shape == ref.shape[:2]


def test_rectangle_only_when_the_whole_batch_shares_a_shape() -> None:
    pre = Preprocessor((320, 320), 32, auto=True)
    same = pre([np.zeros((720, 1280, 3), np.uint8)] * 2)
    mixed = pre([np.zeros((720, 1280, 3), np.uint8), np.zeros((480, 640, 3), np.uint8)])
    assert same.tensor.shape == (2, 3, 192, 320)
    assert mixed.tensor.shape == (2, 3, 320, 320)


def test_buffers_are_reused_and_fixed_batches_padded() -> None:
    pre = Preprocessor((64, 64), 32, auto=False, fixed_batch=4, ring=2)
    a = pre([np.zeros((64, 64, 3), np.uint8)])
    b = pre([np.zeros((64, 64, 3), np.uint8)])
    c = pre([np.zeros((64, 64, 3), np.uint8)])
    assert a.tensor.shape == (4, 3, 64, 64) and a.count == 1
    assert a.tensor is c.tensor and a.tensor is not b.tensor, "a ring of two buffers"
    with pytest.raises(ValueError, match="fixed batch 4"):
        pre([np.zeros((8, 8, 3), np.uint8)] * 5)


def test_float16_models_get_float16_input() -> None:
    t = Preprocessor((64, 64), 32, auto=False, dtype="float16")([np.full((64, 64, 3), 255, np.uint8)]).tensor
    assert t.dtype == np.float16 and float(t.max()) == 1.0
