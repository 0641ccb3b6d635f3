"""NMS and box mapping against torchvision and Ultralytics' own functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from ultralytics.utils import ops

from edge_rt.detect.postprocess import Detections, Postprocessor, PostprocessSettings, nms, to_source
from edge_rt.detect.preprocess import plan_letterbox


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("iou", [0.3, 0.5, 0.7])
def test_nms_equals_torchvision(seed: int, iou: float) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    xy = rng.uniform(0, 300, (n, 2)).astype(np.float32)
    wh = rng.uniform(5, 80, (n, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + wh], 1)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    ours = nms(boxes, scores, iou, limit=n)
    ref = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou).numpy()
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(nms(boxes, scores, iou, limit=7), ref[:7])


@pytest.mark.parametrize("src", [(720, 1280), (1080, 810), (360, 640)])
@pytest.mark.parametrize("auto", [False, True])
def test_boxes_map_back_like_scale_boxes(src: tuple[int, int], auto: bool) -> None:
    lb, shape = plan_letterbox(src, (320, 320), 32, auto)
    rng = np.random.default_rng(0)
    rows = np.zeros((50, 6), np.float32)
    rows[:, :2] = rng.uniform(-10, 300, (50, 2))
    rows[:, 2:4] = rows[:, :2] + rng.uniform(1, 100, (50, 2))
    rows[:, 4] = 0.5
    ours = to_source(rows, lb)
    ref = ops.scale_boxes(shape, torch.from_numpy(rows[:, :4].copy()), src).numpy()
    np.testing.assert_allclose(ours.xyxy, ref, atol=1e-3)
    assert ours.xyxy[:, [0, 2]].max() <= src[1] and ours.xyxy.min() >= 0


def test_end2end_output_is_thresholded_filtered_and_capped() -> None:
    out = np.zeros((1, 300, 6), np.float32)
    out[0, :, 2:4] = 10
    out[0, :, 4] = np.linspace(1, 0, 300)
    out[0, :, 5] = np.arange(300) % 3
    lb, _ = plan_letterbox((320, 320), (320, 320), 32, False)
    post = Postprocessor(3, end2end=True, settings=PostprocessSettings(conf=0.5, classes=(1,), max_det=20))
    (d,) = post(out, [lb])
    assert len(d) == 20 and set(d.cls.tolist()) == {1} and d.conf.min() > 0.5


def test_detections_check_their_shapes() -> None:
    with pytest.raises(ValueError, match=r"expected shape \(N, 4\)"):
        Detections(np.zeros((3, 5)), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"conf: expected shape \(3,\)"):
        Detections(np.zeros((3, 4)), np.zeros(2), np.zeros(3))
