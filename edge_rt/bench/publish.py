"""The publisher alone: small detection messages over tcp loopback to a subscriber in another
process (its own core, its own GIL): throughput saturated, then publish -> subscriber latency at a
paced rate."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .hardware import describe_host, host_line
from .stats import Progress, pct


@dataclass(frozen=True)
class PublishResult:
    messages: int
    payload_bytes: int
    messages_per_s: float  # saturated: publisher encoding + sending as fast as it can
    delivered: int  # of the saturated run, received by the subscriber
    paced_rate: float
    latency_us: dict[str, float]  # publish -> subscriber at the paced rate
    host: dict[str, Any] = field(default_factory=dict)


_SUBSCRIBER = """
import json, sys, time
from edge_rt.client import Subscriber
endpoint, saturated, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sub = Subscriber(endpoint, rcvhwm=total + 10)
print("READY", flush=True)
lat, got = [], 0
while got < total:
    msg = sub.receive(10000)
    if msg is None:
        break
    got += 1
    lat.append((time.time_ns() - msg.timestamps["publish_ns"]) / 1e3)
    if got == saturated:
        print("CAUGHT UP", flush=True)
print(json.dumps({"got": got, "lat_us": lat}))
"""


def bench_publish(
    count: int = 100_000, paced_rate: float = 2000.0, paced_count: int = 4000, detections: int = 5
) -> PublishResult:
    """Saturated throughput with `count` messages, then latency at `paced_rate` messages/s."""
    import socket
    import subprocess
    import uuid

    from ..wire.publish import Publisher, ZmqSettings
    from ..wire.schema import DETECTIONS, VERSION, encode

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    pub = Publisher(endpoint, settings=ZmqSettings(sndhwm=count + paced_count + 10))
    base = {
        "schema": DETECTIONS,
        "version": VERSION,
        "box": "bench",
        "session": uuid.uuid4().hex,
        "source": "cam0",
        "frame_index": 0,
        "width": 1280,
        "height": 720,
        "model": "m.onnx",
        "batch_size": 1,
        "timestamps": {},
        "latency_ms": {
            "wait": 0.1,
            "preprocess": 1.0,
            "queue": 0.0,
            "inference": 8.0,
            "postprocess": 0.4,
            "publish": 0.01,
            "total": 9.51,
        },
        "detections": [{"cls": 0, "label": "person", "conf": 0.87, "box": [10.5, 20.25, 300.0, 400.75]}] * detections,
    }
    reader = subprocess.Popen(
        [sys.executable, "-c", _SUBSCRIBER, endpoint.replace("127.0.0.1", "localhost"), str(count), str(count + paced_count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None
        reader.stdout.readline()  # READY
        if not pub.await_subscribers(1, 20):
            raise ConfigError("the benchmark subscriber did not connect")
        progress = Progress(count + paced_count, "publish")
        t0 = time.perf_counter()
        for i in range(count):
            now = time.time_ns()
            pub.publish("cam0", {**base, "seq": i, "timestamps": {"capture_ns": now, "publish_ns": now}})
            if i % 1000 == 0:
                progress.update(i)
        rate = count / (time.perf_counter() - t0)
        reader.stdout.readline()  # CAUGHT UP: the latency part starts with empty queues
        period = 1 / paced_rate
        next_t = time.perf_counter()
        for j in range(paced_count):
            delay = next_t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            next_t += period
            now = time.time_ns()
            pub.publish("cam0", {**base, "seq": count + j, "timestamps": {"capture_ns": now, "publish_ns": now}})
            if j % 500 == 0:
                progress.update(count + j)
        progress.close()
        out, _ = reader.communicate(timeout=60)
    finally:
        reader.kill()
        pub.close()
    report = json.loads(out.strip().splitlines()[-1])
    lat = report["lat_us"][count:]
    size = len(encode({**base, "seq": 0, "timestamps": {"capture_ns": time.time_ns(), "publish_ns": time.time_ns()}}))
    return PublishResult(count, size, rate, min(report["got"], count), paced_rate, pct(lat), host=describe_host("cpu"))


def publish_table(r: PublishResult) -> str:
    lat = r.latency_us
    return (
        f"{host_line(r.host)}\n"
        f"{r.messages} messages of {r.payload_bytes} bytes (5 detections, JSON): {r.messages_per_s:,.0f} messages/s saturated, "
        f"{r.delivered} delivered\n"
        f"at {r.paced_rate:,.0f} messages/s: publish -> subscriber p50 {lat['p50']:.0f} us, p99 {lat['p99']:.0f} us, max {lat['max']:.0f} us"
    )
