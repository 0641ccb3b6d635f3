"""The one protocol every inference backend implements."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..model_info import ModelInfo


class Engine(Protocol):
    """Runs a batch tensor [B, 3, H, W] and returns the raw detection output [B, ...]."""

    info: ModelInfo
    device: str  # what actually runs it, e.g. "cpu", "cuda:0", "tensorrt"

    def infer(self, tensor: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...
