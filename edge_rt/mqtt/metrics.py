"""Prometheus metrics for `edge-rt mqtt --metrics-port N`: the bridge's counters, read at scrape time
(like `edge-rt run`'s), so they always agree with its stats line."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..ops.prometheus import MetricsEndpoint, client_module
from .bridge import BridgeStats


class BridgeCollector:
    """edge_rt_mqtt_*: connected, published per kind, queued, dropped, reconnects, ZeroMQ in."""

    def __init__(self, stats: Callable[[], BridgeStats], namespace: str = "edge_rt_mqtt") -> None:
        self._stats = stats
        self._ns = namespace

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self._stats()
        ns = self._ns
        yield GaugeMetricFamily(f"{ns}_connected", "1 while the MQTT broker is connected", value=float(s.link.online))
        published = CounterMetricFamily(
            f"{ns}_published", "MQTT messages published, by kind (event, state, config, detections, availability)", labels=["kind"]
        )
        for kind, n in sorted(s.link.published.items()):
            published.add_metric([kind], n)
        yield published
        yield GaugeMetricFamily(f"{ns}_queued_events", "Events waiting for the MQTT broker to come back", value=s.link.queued)
        yield CounterMetricFamily(f"{ns}_dropped_events", "Events dropped from a full queue while the broker was away", value=s.link.dropped)
        yield CounterMetricFamily(f"{ns}_reconnects", "Connections to the MQTT broker after the first", value=s.link.reconnects)
        yield CounterMetricFamily(f"{ns}_received", "Valid messages received from ZeroMQ", value=s.received)
        yield CounterMetricFamily(f"{ns}_lost", "Messages the box sent that never arrived (seq gaps)", value=s.lost)
        yield CounterMetricFamily(f"{ns}_malformed", "Malformed messages from ZeroMQ, skipped", value=s.malformed)
        yield CounterMetricFamily(
            f"{ns}_detections_skipped", "Detections not published (--detections-rate, or the broker away)", value=s.detections_skipped
        )


class MetricsServer(MetricsEndpoint):
    """The bridge's /metrics, on its own registry."""

    def __init__(self, stats: Callable[[], BridgeStats]) -> None:
        prom = client_module()  # a missing package is one line, before anything starts
        super().__init__(prom.CollectorRegistry())
        self.registry.register(BridgeCollector(stats))
