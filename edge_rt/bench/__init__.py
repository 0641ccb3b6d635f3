"""Benchmarks users can run themselves: the engine alone (like trtexec), the whole pipeline measured
at a real ZeroMQ subscriber, edge_rt side by side with Ultralytics' own predict, and the publisher.

Every figure comes from warm-up plus many iterations on the same machine in the same run, is
reported as percentiles, never as a single average, and carries what it ran on (`hardware`).

    stats     percentiles, progress bar, size parsing, the JSON file
    hardware  CPU, OS, versions; GPU, driver, CUDA, clocks, power limit; Jetson power mode
    engine    the engine alone             collector  the benchmarks' subscriber process
    pipeline  the whole runtime (+ plot)   compare    edge_rt vs Ultralytics
    publish   the publisher alone          track      trackers scored against ground truth

May import: the runtime's rooms, exporters/, training/, doctor/, frigate/ (a tool: the runtime never imports it).
"""

from __future__ import annotations

from .compare import CompareResult, bench_compare, compare_table
from .engine import DEFAULT_FRAME_SIZE, EngineResult, bench_engine, engine_table
from .hardware import describe_host, host_line
from .pipeline import PipelineResult, bench_pipeline, pipeline_table
from .plot import plot_pipeline
from .publish import PublishResult, bench_publish, publish_table
from .stats import QS, Progress, parse_frame_size, parse_shape, pct, write_json
from .track import TrackBenchResult, bench_track
from .track_table import mean_table, track_table

__all__ = [
    "DEFAULT_FRAME_SIZE",
    "QS",
    "CompareResult",
    "EngineResult",
    "PipelineResult",
    "Progress",
    "PublishResult",
    "TrackBenchResult",
    "bench_compare",
    "bench_engine",
    "bench_pipeline",
    "bench_publish",
    "bench_track",
    "compare_table",
    "describe_host",
    "engine_table",
    "host_line",
    "parse_frame_size",
    "parse_shape",
    "pct",
    "pipeline_table",
    "plot_pipeline",
    "publish_table",
    "mean_table",
    "track_table",
    "write_json",
]
