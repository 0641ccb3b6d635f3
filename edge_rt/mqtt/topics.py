"""The MQTT topic layout and Home Assistant's discovery configs: pure functions of names, no I/O.

    PREFIX/NODE/available                    online / offline (retained; the bridge's last will)
    PREFIX/BOX/SOURCE/events                 every event, the JSON the box published (not retained)
    PREFIX/BOX/SOURCE/LABEL/count            objects of that class now (retained)
    PREFIX/BOX/SOURCE/zones/ZONE/LABEL       objects of that class in that zone now (retained)
    PREFIX/BOX/SOURCE/health                 the camera's state, JSON (retained)
    PREFIX/BOX/SOURCE/detections             detections, at most --detections-rate per second (optional)

Names come from boxes, configs and models: a '/', '+', '#' or NUL in one would split a topic level
or make it a wildcard, so those characters become '_' in topics (never in the payloads).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from ..wire.received import HEALTH_STATES

COUNT, ZONE, HEALTH = "count", "zone", "health"
_NOT_IN_LEVEL = re.compile(r"[/+#\x00]")
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9_-]")
ON_IF_ANY = "{{ 'ON' if value | int(0) > 0 else 'OFF' }}"
HEALTH_ONLINE = "{{ 'online' if value_json.state == 'online' else 'offline' }}"


def level(name: str) -> str:
    """One topic level from a name (a box, a camera, a class, a zone)."""
    return _NOT_IN_LEVEL.sub("_", name) or "_"


def slug(name: str) -> str:
    """Home Assistant's node and object ids take only [A-Za-z0-9_-]; a name that needed changing gets a
    short hash of itself, so that 'a.b' and 'a_b' stay two entities."""
    clean = _NOT_IN_ID.sub("_", name)
    if clean == name and name:
        return name
    return f"{clean}_{hashlib.sha1(name.encode()).hexdigest()[:6]}"


@dataclass(frozen=True)
class Entity:
    """One retained state the bridge keeps: a class count, a zone count, or a camera's health."""

    kind: str  # COUNT, ZONE or HEALTH
    box: str
    source: str
    label: str = ""
    zone: str = ""


@dataclass(frozen=True)
class Topics:
    """Where everything goes, for one bridge."""

    prefix: str = "edge_rt"
    node: str = "edge-rt"  # the bridge's --name
    discovery_prefix: str | None = "homeassistant"

    @property
    def available(self) -> str:
        return f"{self.prefix}/{level(self.node)}/available"

    @property
    def ha_status(self) -> str | None:
        """Home Assistant's birth and will: `online` when it (re)starts, and then it wants the configs again."""
        return None if self.discovery_prefix is None else f"{self.discovery_prefix}/status"

    def source(self, box: str, source: str) -> str:
        return f"{self.prefix}/{level(box)}/{level(source)}"

    def events(self, box: str, source: str) -> str:
        return f"{self.source(box, source)}/events"

    def detections(self, box: str, source: str) -> str:
        return f"{self.source(box, source)}/detections"

    def health(self, box: str, source: str) -> str:
        return f"{self.source(box, source)}/health"

    def state(self, e: Entity) -> str:
        if e.kind == COUNT:
            return f"{self.source(e.box, e.source)}/{level(e.label)}/count"
        if e.kind == ZONE:
            return f"{self.source(e.box, e.source)}/zones/{level(e.zone)}/{level(e.label)}"
        return self.health(e.box, e.source)

    def discovery(self, e: Entity, version: str) -> list[tuple[str, bytes]]:
        """(config topic, retained JSON payload) for each Home Assistant entity behind `e`."""
        if self.discovery_prefix is None:
            return []
        node = f"edge_rt_{slug(e.box)}"
        src = slug(e.source)
        common = {
            "device": device(e.box, version),
            "origin": {"name": "edge_rt", "sw_version": version},
            "qos": 1,
        }
        if e.kind == HEALTH:
            return [
                self._config(
                    "sensor",
                    node,
                    f"{src}_health",
                    {
                        "name": f"{e.source} health",
                        "unique_id": f"edge_rt_{e.box}_{e.source}_health",
                        "state_topic": self.state(e),
                        "value_template": "{{ value_json.state }}",
                        "json_attributes_topic": self.state(e),
                        "device_class": "enum",
                        "options": list(HEALTH_STATES),
                        "icon": "mdi:cctv",
                        "availability_topic": self.available,
                        **common,
                    },
                )
            ]
        availability = {
            "availability": [
                {"topic": self.available},
                {"topic": self.health(e.box, e.source), "value_template": HEALTH_ONLINE},
            ],
            "availability_mode": "all",  # the bridge is up and the camera delivers frames
        }
        if e.kind == ZONE:
            return [
                self._config(
                    "sensor",
                    node,
                    f"{src}_zone_{slug(e.zone)}_{slug(e.label)}_count",
                    {
                        "name": f"{e.source} {e.zone} {e.label} count",
                        "unique_id": f"edge_rt_{e.box}_{e.source}_zone_{e.zone}_{e.label}_count",
                        "state_topic": self.state(e),
                        "state_class": "measurement",
                        "icon": "mdi:counter",
                        **availability,
                        **common,
                    },
                )
            ]
        lab = slug(e.label)
        return [
            self._config(
                "binary_sensor",
                node,
                f"{src}_{lab}_occupancy",
                {
                    "name": f"{e.source} {e.label} occupancy",
                    "unique_id": f"edge_rt_{e.box}_{e.source}_{e.label}_occupancy",
                    "state_topic": self.state(e),
                    "value_template": ON_IF_ANY,
                    "device_class": "occupancy",
                    **availability,
                    **common,
                },
            ),
            self._config(
                "sensor",
                node,
                f"{src}_{lab}_count",
                {
                    "name": f"{e.source} {e.label} count",
                    "unique_id": f"edge_rt_{e.box}_{e.source}_{e.label}_count",
                    "state_topic": self.state(e),
                    "state_class": "measurement",
                    "icon": "mdi:counter",
                    **availability,
                    **common,
                },
            ),
        ]

    def _config(self, component: str, node: str, object_id: str, payload: dict[str, Any]) -> tuple[str, bytes]:
        return f"{self.discovery_prefix}/{component}/{node}/{object_id}/config", json.dumps(payload, separators=(",", ":")).encode()


def device(box: str, version: str) -> dict[str, Any]:
    """One Home Assistant device per box: every camera, class and zone of it are its entities."""
    return {
        "identifiers": [f"edge_rt_{box}"],
        "name": box,
        "manufacturer": "edge_rt",
        "model": "edge-rt run",
        "sw_version": version,
    }
