"""The pipeline benchmark as a picture: latency per stage, and latency and frames/s over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .pipeline import PipelineResult


def plot_pipeline(r: PipelineResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    stages = [s for s in r.stages if s != "total"]
    ax1.bar(stages, [r.stages[s]["p50"] for s in stages], label="p50")
    ax1.scatter(stages, [r.stages[s]["p99"] for s in stages], color="red", zorder=3, label="p99")
    ax1.set_ylabel("ms")
    ax1.set_title(f"per-stage latency ({r.model})")
    ax1.legend()
    t = np.array([x[0] for x in r.timeline])
    lat = np.array([x[2] for x in r.timeline])
    ax2.plot(t, lat, ".", markersize=2, label="capture -> subscriber (ms)")
    ax2.set_xlabel("s")
    ax2.set_ylabel("ms")
    bins = np.arange(0, max(np.floor(t.max()), 1) + 1)  # whole seconds only: a partial last bin would look like a drop
    counts, _ = np.histogram(t, bins)
    ax3 = ax2.twinx()
    ax3.step(bins[:-1], counts, where="post", color="green", label="frames/s")
    ax3.set_ylabel("frames/s")
    ax2.set_title("latency and frames/s over time")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
