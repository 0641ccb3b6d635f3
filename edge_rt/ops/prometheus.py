"""Prometheus metrics for `edge-rt run --metrics-port N`, through the official prometheus-client.

Per-stage latency and batch sizes are histograms observed as frames are published; the per-source
counters (read, published, skipped, failures, reconnects, stalls) and source states are read from
the pipeline at scrape time, so they can never drift from what the end-of-run summary says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from ..errors import ConfigError, MissingDependencyError
from .metrics import STAGES, Metrics

# Milliseconds: from a fast GPU call to a camera that queued for a second.
LATENCY_BUCKETS_MS = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 250, 500, 1000, 2500)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
# counter name in Pipeline.counters() -> (metric suffix, help)
COUNTERS = {
    "read": ("frames_read", "Frames decoded from the source"),
    "published": ("frames_published", "Frames whose detections were published"),
    "skipped": ("frames_skipped", "Frames replaced by a newer one before inference (live sources stay current)"),
    "paced_out": ("frames_paced_out", "Frames dropped to hold the --fps pace"),
    "read_failures": ("read_failures", "Failed reads"),
    "reconnects": ("reconnects", "Times the source was reopened"),
    "stalls": ("stalls", "Times the source sent nothing for --stall-timeout"),
    "collected": ("frames_collected", "Frames saved by --collect for relabelling (only with --collect)"),
    "collect_dropped": ("collect_dropped", "Frames --collect selected but could not queue or write (only with --collect)"),
    "clips": ("clips_recorded", "Event clips written (only with --record)"),
    "clip_failures": ("clip_failures", "Event clips that could not be written (only with --record)"),
    "record_dropped": (
        "record_packets_dropped",
        "Encoded packets of a live stream dropped by the recorder's memory bound before a clip took them (only with --record)",
    ),
}

CountersFn = Callable[[], Mapping[str, Mapping[str, int]]]


class ObjectCounts(Protocol):
    """What the tracking stage's `ObjectCounts` offers a scrape (ops/ sits below the stages: no import of them)."""

    @property
    def in_zone(self) -> Mapping[tuple[str, str, str], int]: ...
    @property
    def crossings(self) -> Mapping[tuple[str, str, str, str], int]: ...
    @property
    def events(self) -> Mapping[tuple[str, str], int]: ...
    @property
    def unconfirmed(self) -> Mapping[str, int]: ...


ObjectsFn = Callable[[], "ObjectCounts | None"]
StatesFn = Callable[[], Mapping[str, str]]
# With --publish connect:...: (connected to the broker?, messages dropped while it was away, connections made)
LinkFn = Callable[[], "tuple[bool, int, int] | None"]


def client_module() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise MissingDependencyError("--metrics-port needs prometheus-client: pip install prometheus-client") from None
    return prometheus_client


class PrometheusMetrics(Metrics):
    """The run's Metrics, also exported: histograms fed per frame, counters read per scrape."""

    def __init__(
        self,
        counters: CountersFn,
        states: StatesFn,
        namespace: str = "edge_rt",
        window: int = 20000,
        link: LinkFn | None = None,
        objects: ObjectsFn | None = None,
    ) -> None:
        super().__init__(window)
        prom = client_module()
        self.registry = prom.CollectorRegistry()
        self._latency = prom.Histogram(
            f"{namespace}_stage_latency_ms",
            "Per-frame latency of each pipeline stage, in milliseconds",
            ["stage"],
            buckets=LATENCY_BUCKETS_MS,
            registry=self.registry,
        )
        self._batch = prom.Histogram(
            f"{namespace}_batch_size",
            "Frames per inference call",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self._engine = prom.Histogram(
            f"{namespace}_engine_ms",
            "Engine time per inference call (whole batch), in milliseconds",
            buckets=LATENCY_BUCKETS_MS,
            registry=self.registry,
        )
        self.registry.register(_SourceCollector(namespace, counters, states))
        if link is not None:
            self.registry.register(_LinkCollector(namespace, link))
        if objects is not None:
            self.registry.register(_ObjectsCollector(namespace, objects))
        self._endpoint = MetricsEndpoint(self.registry)

    def record_frame(self, source: str, latency_ms: Mapping[str, float]) -> None:
        super().record_frame(source, latency_ms)
        for stage in STAGES:
            if stage in latency_ms:
                self._latency.labels(stage).observe(latency_ms[stage])

    def record_batch(self, size: int, engine_ms: float) -> None:
        self._batch.observe(size)
        self._engine.observe(engine_ms)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        return self._endpoint.serve(port, addr)

    def close(self) -> None:
        self._endpoint.close()


class MetricsEndpoint:
    """/metrics over HTTP for one registry, in a daemon thread (every command's --metrics-port)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self._server: Any = None

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Start serving; returns the bound port (port 0: any free one)."""
        prom = client_module()
        try:
            self._server, _thread = prom.start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"--metrics-port {port}: cannot listen on {addr}:{port} ({exc.strerror or exc})") from None
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _SourceCollector:
    """Reads per-source counters and states when Prometheus scrapes."""

    def __init__(self, namespace: str, counters: CountersFn, states: StatesFn) -> None:
        self._ns = namespace
        self._counters = counters
        self._states = states

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, StateSetMetricFamily

        snapshot = self._counters()
        for key, (suffix, doc) in COUNTERS.items():
            family = CounterMetricFamily(f"{self._ns}_{suffix}", doc, labels=["source"])
            for source, values in snapshot.items():
                if key in values:
                    family.add_metric([source], values[key])
            yield family
        states = self._states()
        known = sorted({*SOURCE_STATES, *states.values()})
        state = StateSetMetricFamily(f"{self._ns}_source_state", "Current state of each source", labels=["source"])
        for source, current in states.items():
            state.add_metric([source], {s: s == current for s in known})
        yield state
        up = GaugeMetricFamily(f"{self._ns}_source_up", "1 while the source delivers frames", labels=["source"])
        for source, current in states.items():
            up.add_metric([source], 1.0 if current in ("online", "streaming") else 0.0)
        yield up


class _LinkCollector:
    """A box that dials its broker: what went nowhere while the broker was away is counted, not lost silently."""

    def __init__(self, namespace: str, link: LinkFn) -> None:
        self._ns = namespace
        self._link = link

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        state = self._link()
        if state is None:
            return
        connected, dropped, connects = state
        yield GaugeMetricFamily(
            f"{self._ns}_broker_connected", "1 while the broker (--publish connect:) is connected", value=float(connected)
        )
        yield CounterMetricFamily(
            f"{self._ns}_broker_dropped_messages", "Messages dropped because no broker was connected", value=dropped
        )
        yield CounterMetricFamily(
            f"{self._ns}_broker_connects", "Connections made to the broker (1 + reconnections)", value=connects
        )


class _ObjectsCollector:
    """With tracking: objects in each zone now, crossings per line, direction and class, events per kind."""

    def __init__(self, namespace: str, objects: ObjectsFn) -> None:
        self._ns = namespace
        self._objects = objects

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        counts = self._objects()
        if counts is None:
            return
        zone = GaugeMetricFamily(
            f"{self._ns}_zone_objects", "Tracked objects in each zone now", labels=["source", "zone", "label"]
        )
        for key, n in sorted(counts.in_zone.items()):
            zone.add_metric(list(key), n)
        yield zone
        cross = CounterMetricFamily(
            f"{self._ns}_line_crossings",
            "Objects that crossed each line, by direction and class",
            labels=["source", "line", "direction", "label"],
        )
        for key4, n in sorted(counts.crossings.items()):
            cross.add_metric(list(key4), n)
        yield cross
        events = CounterMetricFamily(
            f"{self._ns}_events", "Events published (start, end, enter, exit, cross, loiter)", labels=["source", "event"]
        )
        for key2, n in sorted(counts.events.items()):
            events.add_metric(list(key2), n)
        yield events
        waiting = CounterMetricFamily(
            f"{self._ns}_boxes_unconfirmed",
            "Boxes not published because they started a track that was not confirmed yet (its second box publishes it)",
            labels=["source"],
        )
        for source, n in sorted(counts.unconfirmed.items()):
            waiting.add_metric([source], n)
        yield waiting


SOURCE_STATES = ("starting", "online", "stalled", "reconnecting", "offline", "stopped")
