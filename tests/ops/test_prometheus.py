"""Prometheus metrics scraped over real HTTP: histograms per stage, batch sizes, per-source counters and states."""

from __future__ import annotations

import urllib.request

import pytest

from edge_rt.errors import ConfigError
from edge_rt.ops.prometheus import PrometheusMetrics
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(30)


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_scrape_reports_latency_batches_counters_and_states() -> None:
    counters = {"door": {"read": 10, "published": 9, "skipped": 1, "reconnects": 2, "stalls": 1}}
    states = {"door": "online", "yard": "reconnecting"}
    metrics = PrometheusMetrics(lambda: counters, lambda: states)
    port = metrics.serve(0)
    try:
        for total in (4.0, 12.0, 40.0):
            metrics.record_frame("door", {"inference": total / 2, "total": total})
        metrics.record_batch(2, 8.0)
        metrics.record_batch(4, 16.0)
        got = _scrape(port)
        assert got[("edge_rt_stage_latency_ms_count", (("stage", "total"),))] == 3
        assert got[("edge_rt_stage_latency_ms_bucket", (("le", "5.0"), ("stage", "total")))] == 1
        assert got[("edge_rt_stage_latency_ms_sum", (("stage", "inference"),))] == pytest.approx(28.0)
        assert got[("edge_rt_batch_size_count", ())] == 2 and got[("edge_rt_batch_size_sum", ())] == 6
        assert got[("edge_rt_engine_ms_sum", ())] == pytest.approx(24.0)
        assert got[("edge_rt_frames_published_total", (("source", "door"),))] == 9
        assert got[("edge_rt_reconnects_total", (("source", "door"),))] == 2
        assert got[("edge_rt_source_up", (("source", "door"),))] == 1
        assert got[("edge_rt_source_up", (("source", "yard"),))] == 0
        assert got[("edge_rt_source_state", (("edge_rt_source_state", "reconnecting"), ("source", "yard")))] == 1
        assert got[("edge_rt_source_state", (("edge_rt_source_state", "online"), ("source", "yard")))] == 0
        # Counters are read at scrape time: the next scrape sees the pipeline's new values.
        counters["door"]["published"] = 50
        assert _scrape(port)[("edge_rt_frames_published_total", (("source", "door"),))] == 50
        assert metrics.percentiles("total")["p50"] == pytest.approx(12.0)  # the run's own summary still works
    finally:
        metrics.close()


def test_a_busy_port_is_one_clear_error() -> None:
    first = PrometheusMetrics(dict, dict)
    port = first.serve(free_port())
    try:
        with pytest.raises(ConfigError, match=f"--metrics-port {port}: cannot listen"):
            PrometheusMetrics(dict, dict).serve(port)
    finally:
        first.close()
