"""The one protocol every inference backend implements."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from ..detect.model_info import ModelInfo


class Engine(Protocol):
    """Runs one batch and returns the raw detection output [B, ...] as a host array.

    `tensor` is what the model's image input takes: float [B, 3, H, W] letterboxed on the host, or,
    for a model with the letterbox inside its graph (`info.graph_preprocess`), the camera frames
    themselves as uint8 BGR [B, H, W, 3] plus `plan`, the int64 letterbox vector that
    `preprocess.plan_vector` makes (fed to the input named `info.plan_input`).
    """

    info: ModelInfo
    device: str  # what actually runs it, e.g. "cpu", "cuda:0", "tensorrt"

    def infer(self, tensor: np.ndarray, plan: np.ndarray | None = None) -> np.ndarray: ...

    def close(self) -> None: ...


def cache_root() -> Path:
    """Where backends keep what they compile (TensorRT engines, OpenVINO blobs), so a restart does not redo it."""
    base = os.environ.get("EDGE_RT_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edge_rt")
    return Path(base)


def first_line(exc: BaseException, limit: int = 200) -> str:
    """A runtime's own error as one line for the user: its first line, or its type when it says nothing."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
