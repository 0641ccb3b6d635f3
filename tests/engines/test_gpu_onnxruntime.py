"""ONNX Runtime on an NVIDIA GPU: the CUDA provider with I/O binding and CUDA graphs, and the device path
(letterbox and NMS in the graph) against the CPU path. Marked `gpu`: skipped with the reason elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_rt.detect.preprocess import make_preprocessor
from edge_rt.engines.onnxruntime import OnnxRuntimeEngine
from tests.exporters.test_graph_preprocess import DEMO_DYNAMIC, _detect, _match_rate

pytestmark = [pytest.mark.gpu, pytest.mark.timeout(300)]


def test_cuda_engine_binds_device_buffers_and_matches_the_cpu(hd_frames: list[np.ndarray], tmp_path: Path) -> None:
    cuda = OnnxRuntimeEngine(DEMO_DYNAMIC, "cuda", cache_dir=tmp_path)
    cpu = OnnxRuntimeEngine(DEMO_DYNAMIC, "cpu")
    assert cuda.device == "cuda" and cuda._binding is not None
    for frames in ([hd_frames[0]], hd_frames[1:5], [hd_frames[6]]):
        p = make_preprocessor(cpu.info)(frames)
        np.testing.assert_allclose(cuda.infer(p.tensor), cpu.infer(p.tensor), atol=2e-3, rtol=1e-3)


def test_cuda_graph_replays_new_inputs_of_a_static_model(onnx_static: Path, hd_frames: list[np.ndarray], tmp_path: Path) -> None:
    """A captured graph reads its input buffer afresh each replay: outputs follow the frames, not the first call."""
    cuda = OnnxRuntimeEngine(onnx_static, "cuda", cache_dir=tmp_path)
    cpu = OnnxRuntimeEngine(onnx_static, "cpu")
    pre = make_preprocessor(cpu.info)
    outputs = []
    for frame in hd_frames[:6]:
        p = pre([frame])
        got = cuda.infer(p.tensor)
        np.testing.assert_allclose(got, cpu.infer(p.tensor), atol=2e-3, rtol=1e-3)
        outputs.append(got)
    assert not np.allclose(outputs[0], outputs[-1]), "replays returned the first frame's output"


def test_device_path_on_cuda_matches_the_cpu_path(device_model: Path, hd_frames: list[np.ndarray], tmp_path: Path) -> None:
    """Same class and IoU >= 0.9 for >= 99% of boxes, uint8 frames in and (B, 300, 6) out on the GPU."""
    cuda = OnnxRuntimeEngine(device_model, "cuda", cache_dir=tmp_path)
    host = OnnxRuntimeEngine(DEMO_DYNAMIC, "cpu")
    got, ref = [], []
    for i in range(0, len(hd_frames) - 3, 4):
        got += _detect(cuda, hd_frames[i : i + 4])
        ref += _detect(host, hd_frames[i : i + 4])
    matched, total = _match_rate(ref, got)
    assert total > 500 and matched >= 0.99 * total, f"{matched}/{total}"
