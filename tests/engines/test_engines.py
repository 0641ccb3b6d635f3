"""Models load with no extra files: everything the runtime needs comes from the ONNX itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_rt.engines import load_engine
from edge_rt.errors import ConfigError, MissingDependencyError, ModelError
from tests.conftest import _export


def test_metadata_of_each_export(onnx_static: Path, onnx_dynamic: Path, onnx_e2e: Path, onnx_fp16: Path) -> None:
    s, d, e, h = (load_engine(p, "cpu").info for p in (onnx_static, onnx_dynamic, onnx_e2e, onnx_fp16))
    assert (s.imgsz, s.batch, s.dynamic_shape, s.end2end, s.stride, s.num_classes) == ((320, 320), 1, False, False, 32, 80)
    assert (d.batch, d.dynamic_shape, d.imgsz) == (None, True, (320, 320))
    assert e.end2end and not s.end2end
    assert h.input_dtype == "float16"


def test_foreign_onnx_without_metadata_still_loads(onnx_static: Path, tmp_path: Path) -> None:
    model = onnx.load(str(onnx_static))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    engine = load_engine(bare, "cpu")
    assert engine.info.names[79] == "class79" and engine.info.imgsz == (320, 320)
    out = engine.infer(np.zeros((1, 3, 320, 320), np.float32))
    assert out.shape == (1, 84, 2100)


def test_segmentation_model_is_refused_clearly(model_dir: Path) -> None:
    seg = _export("yolo11n-seg.yaml", model_dir / "seg.onnx", batch=1)
    with pytest.raises(ModelError, match="task 'segment' is not supported"):
        load_engine(seg, "cpu")


def test_device_and_format_errors(onnx_static: Path, tmp_path: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(MissingDependencyError, match=r"edge_rt\[gpu\]"):
            load_engine(onnx_static, "cuda")
    with pytest.raises(ConfigError, match="choose one of"):
        load_engine(onnx_static, "npu")
    other = tmp_path / "model.tflite"
    other.write_bytes(b"x")
    with pytest.raises(ModelError, match="unknown format"):
        load_engine(other, "cpu")


def test_engine_built_for_another_tensorrt_or_gpu_is_refused(tmp_path: Path) -> None:
    from edge_rt.engines.tensorrt import check_sidecar

    meta = {"tensorrt": "10.3.0", "gpu": "Orin"}
    check_sidecar(meta, "10.3.0", "Orin", tmp_path / "m.engine")
    with pytest.raises(ModelError, match="built with TensorRT 10.3.0, this machine has 10.13.0"):
        check_sidecar(meta, "10.13.0", "Orin", tmp_path / "m.engine")
    with pytest.raises(ModelError, match="built for GPU 'Orin', this machine has 'NVIDIA H100'"):
        check_sidecar(meta, "10.3.0", "NVIDIA H100", tmp_path / "m.engine")


def test_engine_without_tensorrt_is_one_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here; this checks the message on machines without it")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0")
    with pytest.raises(MissingDependencyError, match="TensorRT is not installed"):
        load_engine(engine, "auto")
