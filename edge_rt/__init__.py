"""edge_rt: real-time YOLO detection on edge boxes, published over ZeroMQ.

The package root imports nothing heavy: the client and the runtime stages load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .client import Detection, DetectionMessage, EndOfStream, EventMessage, HealthMessage, Subscriber

__all__ = ["Detection", "DetectionMessage", "EndOfStream", "EventMessage", "HealthMessage", "Subscriber", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Detection", "DetectionMessage", "EndOfStream", "EventMessage", "HealthMessage", "Subscriber"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'edge_rt' has no attribute {name!r}")
