"""`edge-rt mqtt`: bridge a box's messages to an MQTT broker and Home Assistant. Stub, being written."""

from __future__ import annotations

from typing import Any


def add_mqtt(sub: Any) -> None:
    """Register the `mqtt` command (filled in by the MQTT work)."""
