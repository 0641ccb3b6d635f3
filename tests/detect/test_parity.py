"""The runtime's boxes must match Ultralytics' own predict on the same ONNX model and images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_rt.detect.postprocess import Detections, PostprocessSettings
from edge_rt.exporters.verify import runtime_detector, ultralytics_detector
from tests.conftest import IMGSZ


def runtime_detect(model: Path, images: list[np.ndarray], s: PostprocessSettings, imgsz: int | None = None) -> list[Detections]:
    detect = runtime_detector(model, s, "cpu", imgsz)  # one image at a time, as Ultralytics predicts a list
    return [detect(im) for im in images]


def ultralytics_detect(model: Path, images: list[np.ndarray], s: PostprocessSettings, imgsz: int = IMGSZ) -> list[Detections]:
    detect = ultralytics_detector(model, imgsz, s)
    return [detect(im) for im in images]


def assert_same(ours: Detections, ref: Detections, box_tol: float = 0.05, conf_tol: float = 1e-3) -> None:
    """Same boxes in the same order (both sort by confidence), within float tolerance."""
    assert len(ours) == len(ref), f"{len(ours)} boxes, Ultralytics {len(ref)}"
    np.testing.assert_array_equal(ours.cls, ref.cls)
    np.testing.assert_allclose(ours.conf, ref.conf, atol=conf_tol)
    np.testing.assert_allclose(ours.xyxy, ref.xyxy, atol=box_tol, rtol=1e-4)


@pytest.fixture(scope="module")
def images(assets: Path) -> list[np.ndarray]:
    ims = [cv2.imread(str(assets / "bus.jpg")), cv2.imread(str(assets / "zidane.jpg"))]
    assert all(im is not None for im in ims)
    return ims


@pytest.mark.parametrize(
    "fixture,settings",
    [
        ("onnx_static", PostprocessSettings()),
        ("onnx_static", PostprocessSettings(conf=0.5, iou=0.45, max_det=20)),
        ("onnx_dynamic", PostprocessSettings()),  # rectangular letterbox, like Ultralytics for dynamic exports
        ("onnx_e2e", PostprocessSettings()),
        ("onnx_e2e", PostprocessSettings(conf=0.4)),
        ("onnx_fp16", PostprocessSettings()),
    ],
)
def test_matches_ultralytics_predict(fixture: str, settings: PostprocessSettings, images: list[np.ndarray], request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(fixture)
    ours = runtime_detect(model, images, settings, imgsz=IMGSZ)
    ref = ultralytics_detect(model, images, settings)
    assert sum(len(r) for r in ref) > 0, "the reference found nothing: the test would prove nothing"
    tol = {"box_tol": 0.5, "conf_tol": 2e-3} if fixture == "onnx_fp16" else {}
    for o, r in zip(ours, ref):
        assert_same(o, r, **tol)


@pytest.mark.parametrize("fixture", ["onnx_static", "onnx_e2e"])
def test_class_filter_matches_ultralytics(fixture: str, images: list[np.ndarray], request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(fixture)
    found = np.concatenate([d.cls for d in ultralytics_detect(model, images, PostprocessSettings())])
    common = tuple(int(c) for c in np.bincount(found).argsort()[-3:])  # classes that do occur
    settings = PostprocessSettings(classes=common)
    ours = runtime_detect(model, images, settings, imgsz=IMGSZ)
    ref = ultralytics_detect(model, images, settings)
    assert sum(len(r) for r in ref) > 0
    assert sum(len(r) for r in ref) < len(found), "the filter removed nothing"
    for o, r in zip(ours, ref):
        assert set(o.cls.tolist()) <= set(common)
        assert_same(o, r)
