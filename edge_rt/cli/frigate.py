"""`edge-rt frigate`: serve Frigate's zmq detector protocol (see edge_rt/frigate.py). Stub, being written."""

from __future__ import annotations

from typing import Any


def add_frigate(sub: Any) -> None:
    """Register the `frigate` command (filled in by the Frigate work)."""
