"""`edge-rt mqtt`: a box's ZeroMQ messages on an MQTT broker, for Home Assistant and anything else that speaks MQTT.

- settings.py: the options, the credentials file, TLS; checked once.
- topics.py: the topic layout and Home Assistant's discovery configs (pure functions).
- state.py: counts per class and zone, camera health, from the messages (no I/O).
- link.py: the paho client, its connection as the bridge saw it, the bounded outage queue.
- bridge.py: the loop that wires them; metrics.py: Prometheus.

Imported only by the `mqtt` command, so paho is never loaded by `edge-rt run`. See docs/mqtt.md.

May import: errors, wire/, ops/, the client and the package's version. tests/test_imports.py holds the rule.
"""

from __future__ import annotations

from .bridge import Bridge, BridgeStats
from .settings import BrokerAddress, Credentials, MqttSettings, TlsOptions
from .topics import Entity, Topics

__all__ = ["Bridge", "BridgeStats", "BrokerAddress", "Credentials", "Entity", "MqttSettings", "TlsOptions", "Topics"]
