"""`edge-rt demo`: the whole product in a minute, offline: a synthetic camera, the demo model, a
real ZeroMQ publisher and a subscriber printing what it receives, then a latency summary."""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np

from .client import DetectionMessage, EndOfStream, Subscriber
from .config import build_run_config
from .ops.metrics import STAGES
from .runner import run

log = logging.getLogger("edge_rt.demo")


def default_model() -> Path:
    """The model shipped in the repository (models/demo/demo.onnx)."""
    here = Path(__file__).resolve().parents[1] / "models" / "demo" / "demo.onnx"
    return here if here.is_file() else Path("models/demo/demo.onnx")


class DemoSubscriber(threading.Thread):
    """A real subscriber in its own thread: prints a line per frame, keeps latencies for the summary."""

    def __init__(self, endpoint: str, out: TextIO, every: int = 1) -> None:
        super().__init__(name="demo-subscriber", daemon=True)
        self.sub = Subscriber(endpoint)
        self.out = out
        self.every = every
        self.latency: dict[str, list[float]] = {s: [] for s in (*STAGES, "to subscriber")}
        self.messages = 0
        self.first_ns = self.last_ns = 0
        self.skipped = 0  # frames the pipeline dropped to stay current (frame_index gaps)
        self._last_index: int | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.is_set():
                msg = self.sub.receive(200)
                if msg is None:
                    continue
                if isinstance(msg, EndOfStream):
                    print(f"[subscriber] {msg.source}: end of stream ({msg.reason}), {msg.frames} frames", file=self.out)
                    break
                if isinstance(msg, DetectionMessage):  # health is not subscribed to; the type says so
                    self._record(msg)
        finally:
            self.sub.close()
            self.done.set()

    def _record(self, msg: DetectionMessage) -> None:
        now = time.time_ns()
        self.messages += 1
        if self._last_index is not None:
            self.skipped += max(0, msg.frame_index - self._last_index - 1)
        self._last_index = msg.frame_index
        self.first_ns = self.first_ns or now
        self.last_ns = now
        for stage, value in msg.latency_ms.items():
            self.latency.setdefault(stage, []).append(value)
        self.latency["to subscriber"].append((now - msg.timestamps["capture_ns"]) / 1e6)
        if msg.seq % self.every == 0:
            objs = ", ".join(f"{d.label} {d.conf:.2f}" for d in msg.detections[:6]) or "nothing"
            more = f" (+{len(msg.detections) - 6})" if len(msg.detections) > 6 else ""
            print(
                f"[subscriber] {msg.source} frame {msg.frame_index:4d}: {objs}{more}  [{msg.latency_ms['total']:.1f} ms]",
                file=self.out,
            )

    def summary(self) -> str:
        elapsed = max((self.last_ns - self.first_ns) / 1e9, 1e-9)
        lines = [f"{'latency (ms)':<14} {'p50':>8} {'p99':>8}"]
        for stage, values in self.latency.items():
            if values:
                p50, p99 = np.percentile(values, [50, 99])
                lines.append(f"{stage:<14} {p50:>8.2f} {p99:>8.2f}")
        lines.append(
            f"{self.messages} frames received, {self.messages / elapsed:.1f} frames/s at the subscriber, "
            f"{self.skipped} skipped by the pipeline to stay current, {self.sub.tracker.missed} lost in transport"
        )
        return "\n".join(lines)


def run_demo(
    model: Path,
    frames: int,
    fps: float,
    out: TextIO,
    install_signals: Callable[[Callable[[], None]], None] | None = None,
    every: int = 10,
) -> int:
    from .training.synth_video import synth_clip

    with tempfile.TemporaryDirectory(prefix="edge-rt-demo-") as tmp:
        clip = synth_clip(Path(tmp) / "shapes.mp4", frames=frames, size=(640, 360), fps=int(fps), seed=7)
        endpoint = f"ipc://{tmp}/demo.sock"
        print(f"[demo] a synthetic 640x360 camera at {fps:g} frames/s ({frames} frames), model {_shown(model)}", file=out)
        print(f"[demo] publishing on {endpoint}; a subscriber prints every {every}th frame", file=out)
        config = build_run_config(
            {},
            {
                "model": str(model),
                "sources": [f"demo={clip}"],
                "fps": fps,
                "publish": endpoint,
                "await_subscribers": 1,
                "await_timeout": 10.0,
                "stats_interval": 0.0,
                "device": "cpu",
            },
        )
        subscriber = DemoSubscriber(endpoint, out, every)
        subscriber.start()
        code = run(config, install_signals=install_signals)
        subscriber.done.wait(5)
        subscriber.done.set()
        subscriber.join(2)
        print("[demo] measured at the subscriber:", file=out)
        print(subscriber.summary(), file=out)
    return code


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to where they stand when it lies below."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
