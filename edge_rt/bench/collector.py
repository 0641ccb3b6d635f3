"""The benchmarks' subscriber: a real ZeroMQ subscriber in its own process, as in a deployment."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_COLLECTOR = """
import json, signal, sys, time
from edge_rt.client import DetectionMessage, Subscriber
endpoint, out, keep_boxes = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
sub = Subscriber(endpoint)
print("READY", flush=True)
rows = []
while not stop:
    msg = sub.receive(100)
    if isinstance(msg, DetectionMessage):
        rows.append([time.time_ns(), msg.source, msg.seq, msg.frame_index, msg.timestamps["capture_ns"], dict(msg.latency_ms),
                     msg.batch_size, [[d.cls, d.conf, *d.box] for d in msg.detections] if keep_boxes else []])
sub.close()
with open(out, "w") as f:
    json.dump({"rows": rows, "missed": sub.tracker.missed}, f)
"""


@dataclass(frozen=True)
class Received:
    """One message as the benchmark's subscriber saw it."""

    recv_ns: int
    source: str
    seq: int
    frame_index: int
    capture_ns: int
    latency_ms: dict[str, float]
    batch_size: int
    detections: list[list[float]]  # [cls, conf, x1, y1, x2, y2] per box, kept only when asked (bench compare)


class Collector:
    """Takes no GIL time from the pipeline it measures: it runs in another process."""

    def __init__(self, endpoint: str, workdir: str, keep_boxes: bool = False) -> None:
        self._out = Path(workdir) / "received.json"
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _COLLECTOR, endpoint, str(self._out), "1" if keep_boxes else "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self._proc.stdout.readline()  # READY
        self.messages: list[Received] = []
        self.missed = 0

    def finish(self) -> None:
        time.sleep(0.3)  # what is in flight arrives
        self._proc.terminate()
        self._proc.wait(30)
        data = json.loads(self._out.read_text())
        self.messages = [Received(*row) for row in data["rows"]]
        self.missed = data["missed"]

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        """A pipeline that failed must not leave the subscriber process behind."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
