"""The runtime's boxes must match Ultralytics' own predict on the same ONNX model and images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_rt.engines import load_engine
from edge_rt.postprocess import Detections, Postprocessor, PostprocessSettings
from edge_rt.preprocess import Preprocessor

from .conftest import IMGSZ


def runtime_detect(model: Path, images: list[np.ndarray], s: PostprocessSettings, imgsz: int | None = None) -> list[Detections]:
    engine = load_engine(model, "cpu")
    info = engine.info
    size = (imgsz, imgsz) if imgsz else info.imgsz
    pre = Preprocessor(size, info.stride, auto=info.dynamic_shape, dtype=info.input_dtype, fixed_batch=info.batch)
    post = Postprocessor(info.num_classes, info.end2end, s)
    out = []
    for im in images:  # one at a time, as Ultralytics predicts a list of differently sized images
        prepared = pre([im])
        out.extend(post(engine.infer(prepared.tensor), prepared.letterboxes))
    return out


def ultralytics_detect(model: Path, images: list[np.ndarray], s: PostprocessSettings, imgsz: int = IMGSZ) -> list[Detections]:
    from ultralytics import YOLO

    yolo = YOLO(str(model), task="detect")
    out = []
    for im in images:
        r = yolo.predict(im, imgsz=imgsz, conf=s.conf, iou=s.iou, max_det=s.max_det, classes=list(s.classes) if s.classes else None, verbose=False, device="cpu")[0]
        b = r.boxes
        out.append(Detections(b.xyxy.numpy().astype(np.float32), b.conf.numpy().astype(np.float32), b.cls.numpy().astype(np.int64)))
    return out


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
