"""Benchmarks users can run themselves: the engine alone (like trtexec), the whole pipeline measured
at a real ZeroMQ subscriber, edge_rt side by side with Ultralytics' own predict, and the publisher.

Every figure comes from warm-up plus many iterations on the same machine in the same run, and is
reported as percentiles, never as a single average.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError

QS = (50, 90, 95, 99)


def pct(values: Sequence[float] | np.ndarray, qs: Iterable[float] = QS) -> dict[str, float]:
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return {}
    out = {f"p{q:g}": float(v) for q, v in zip(qs, np.percentile(data, list(qs)))}
    out["max"] = float(data.max())
    out["mean"] = float(data.mean())
    return out


class Progress:
    """A one-line progress bar on stderr when it is a terminal; silent otherwise (logs stay clean)."""

    def __init__(self, total: float, label: str) -> None:
        self.total, self.label = max(total, 1e-9), label
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def update(self, done: float) -> None:
        now = time.monotonic()
        if not self.tty or now - self._last < 0.1:
            return
        self._last = now
        frac = min(done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r{self.label:<28} [{bar:<30}] {frac:4.0%}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\r" + " " * 70 + "\r")
            sys.stderr.flush()


def parse_shape(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--shape {text!r}: expected HEIGHTxWIDTH, e.g. 384x640") from None
    return h, w


# --- the engine alone -------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineResult:
    model: str
    device: str
    batch: int
    height: int
    width: int
    iters: int
    call_ms: dict[str, float]
    image_ms: float  # p50 per call / batch
    images_per_s: float  # batch * calls / total time


def bench_engine(
    model: Path, device: str, batches: Sequence[int], iters: int, warmup: int, shape: tuple[int, int] | None = None, threads: int | None = None
) -> list[EngineResult]:
    """Like trtexec: random input of a fixed shape, warm-up, then `iters` timed calls per batch size."""
    from .engines import load_engine

    if iters < 1 or warmup < 0:
        raise ConfigError("--iters must be >= 1 and --warmup >= 0")
    engine = load_engine(model, device, threads)
    info = engine.info
    h, w = (shape or info.imgsz) if info.dynamic_shape else info.imgsz  # the table's input column says which
    results = []
    for batch in batches:
        if info.batch is not None and batch != info.batch:
            continue  # a fixed-batch model runs only its own batch
        x = np.random.default_rng(0).random((batch, 3, h, w), dtype=np.float32).astype(info.input_dtype)
        for _ in range(warmup):
            engine.infer(x)
        times = []
        progress = Progress(iters, f"{model.name} b{batch}")
        t_start = time.perf_counter()
        for i in range(iters):
            t0 = time.perf_counter_ns()
            engine.infer(x)
            times.append((time.perf_counter_ns() - t0) / 1e6)
            progress.update(i + 1)
        total = time.perf_counter() - t_start
        progress.close()
        call = pct(times)
        results.append(EngineResult(model.name, engine.device, batch, h, w, iters, call, call["p50"] / batch, batch * iters / total))
    engine.close()
    if not results:
        raise ConfigError(f"{model.name}: fixed batch {info.batch}; none of --batch {','.join(map(str, batches))} fits it")
    return results


def engine_table(results: Sequence[EngineResult]) -> str:
    head = f"{'model':<22} {'device':<8} {'batch':>5} {'input':>9} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8} {'ms/img':>8} {'img/s':>8}"
    lines = [head, "-" * len(head)]
    for r in results:
        c = r.call_ms
        lines.append(
            f"{r.model:<22} {r.device:<8} {r.batch:>5} {f'{r.height}x{r.width}':>9} {c['p50']:>8.2f} {c['p90']:>8.2f} "
            f"{c['p99']:>8.2f} {c['max']:>8.2f} {r.image_ms:>8.2f} {r.images_per_s:>8.1f}"
        )
    lines.append("latency per call in ms; ms/img = p50 / batch; img/s = images over the whole timed run")
    return "\n".join(lines)


# --- the whole pipeline, measured at a subscriber ---------------------------------------------


@dataclass(frozen=True)
class PipelineResult:
    model: str
    sources: list[str]
    requested_fps: float | None
    duration_s: float
    frames: dict[str, int]
    fps: dict[str, float]
    skipped: dict[str, int]  # dropped by the pipeline to stay current (frame_index gaps)
    lost: int  # lost in transport (seq gaps)
    stages: dict[str, dict[str, float]]
    to_subscriber: dict[str, float]  # capture -> received by the subscriber, ms
    engine_alone_fps: float  # the bare engine on the pipeline's input shape, same run
    input_shape: tuple[int, int]
    latency_drift_ms: float  # p50 of the last third minus p50 of the first third
    timeline: list[tuple[float, str, float]] = field(repr=False)  # (seconds, source, capture->subscriber ms)

    @property
    def total_fps(self) -> float:
        return sum(self.fps.values())


_COLLECTOR = """
import json, signal, sys, time
from edge_rt.client import DetectionMessage, Subscriber
endpoint, out = sys.argv[1], sys.argv[2]
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
sub = Subscriber(endpoint)
print("READY", flush=True)
rows = []
while not stop:
    msg = sub.receive(100)
    if isinstance(msg, DetectionMessage):
        rows.append([time.time_ns(), msg.source, msg.seq, msg.frame_index, msg.timestamps["capture_ns"], dict(msg.latency_ms)])
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


class _Collector:
    """A real subscriber in its own process, as in a deployment: it takes no GIL time from the pipeline."""

    def __init__(self, endpoint: str, workdir: str) -> None:
        import subprocess

        self._out = Path(workdir) / "received.json"
        self._proc = subprocess.Popen([sys.executable, "-c", _COLLECTOR, endpoint, str(self._out)], stdout=subprocess.PIPE, text=True)
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


def _input_shape(model: Path, source: str, imgsz: tuple[int, int], stride: int, dynamic: bool) -> tuple[int, int]:
    """The shape the pipeline will feed: a stride rectangle for dynamic models, else the model's."""
    if not dynamic:
        return imgsz
    import cv2

    from .preprocess import plan_letterbox
    from .sources import split_name

    cap = cv2.VideoCapture(split_name(source)[1])
    ok, frame = cap.read()
    cap.release()
    if not ok:
        return imgsz
    return plan_letterbox(frame.shape[:2], imgsz, stride, auto=True)[1]


def bench_pipeline(
    model: Path, sources: Sequence[str], fps: float | None, duration: float, device: str = "auto", max_batch: int | None = None, warmup_s: float = 2.0
) -> PipelineResult:
    """Run the real runtime for `duration` s (files loop) and measure at a real ZeroMQ subscriber."""
    from .config import build_run_config
    from .engines import load_engine
    from .runner import run
    from .sources import parse_source

    if duration <= 0:
        raise ConfigError("--duration must be > 0")
    for i, source in enumerate(sources):
        parse_source(source, i)  # a bad source fails before a minute of measuring
    probe = load_engine(model, device)
    shape = _input_shape(model, sources[0], probe.info.imgsz, probe.info.stride, probe.info.dynamic_shape)
    probe.close()
    engine_alone = bench_engine(model, device, [probe.info.batch or max_batch or len(sources)], iters=60, warmup=10, shape=shape)[0]

    with tempfile.TemporaryDirectory(prefix="edge-rt-bench-") as tmp:
        endpoint = f"ipc://{tmp}/bench.sock"
        config = build_run_config(
            {},
            {"model": str(model), "sources": list(sources), "fps": fps, "loop": True, "publish": endpoint, "device": device,
             "max_batch": max_batch, "await_subscribers": 1, "await_timeout": 10.0, "stats_interval": 0.0, "log_level": "warning"},
        )
        collector = _Collector(endpoint, tmp)
        progress = Progress(duration + warmup_s, "pipeline")

        def arm(stop: Any) -> None:
            def stopper() -> None:
                t0 = time.monotonic()
                while time.monotonic() - t0 < duration + warmup_s:
                    progress.update(time.monotonic() - t0)
                    time.sleep(0.2)
                stop()

            threading.Thread(target=stopper, daemon=True).start()

        run(config, install_signals=arm)
        progress.close()
        collector.finish()

    t_first = collector.messages[0].recv_ns if collector.messages else 0
    measured = [(m.recv_ns, m) for m in collector.messages if (m.recv_ns - t_first) / 1e9 >= warmup_s]
    if not measured:
        raise ConfigError("no frames reached the subscriber; is the source readable?")
    span = max((measured[-1][0] - measured[0][0]) / 1e9, 1e-9)
    names = [m.source for _, m in measured]
    frames = {s: names.count(s) for s in dict.fromkeys(names)}
    skipped: dict[str, int] = {}
    last: dict[str, int] = {}
    for _, m in measured:
        if m.source in last:
            gap = m.frame_index - last[m.source] - 1
            skipped[m.source] = skipped.get(m.source, 0) + max(gap, 0)
        last[m.source] = m.frame_index
    stages = {s: pct([m.latency_ms[s] for _, m in measured]) for s in measured[0][1].latency_ms}
    e2e = [(t - m.capture_ns) / 1e6 for t, m in measured]
    third = max(len(e2e) // 3, 1)
    drift = float(np.median(e2e[-third:]) - np.median(e2e[:third]))
    timeline = [((t - measured[0][0]) / 1e9, m.source, v) for (t, m), v in zip(measured, e2e)]
    return PipelineResult(
        model=model.name, sources=list(frames), requested_fps=fps, duration_s=span, frames=frames,
        fps={s: n / span for s, n in frames.items()}, skipped={s: skipped.get(s, 0) for s in frames},
        lost=collector.missed, stages=stages, to_subscriber=pct(e2e), engine_alone_fps=engine_alone.images_per_s,
        input_shape=shape, latency_drift_ms=drift, timeline=timeline,
    )


def pipeline_table(r: PipelineResult) -> str:
    lines = [f"{'stage (ms)':<16} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}"]
    for stage, p in [*r.stages.items(), ("capture->sub", r.to_subscriber)]:
        lines.append(f"{stage:<16} {p['p50']:>8.2f} {p['p95']:>8.2f} {p['p99']:>8.2f} {p['max']:>8.2f}")
    for s in r.sources:
        lines.append(f"{s}: {r.frames[s]} frames in {r.duration_s:.1f}s = {r.fps[s]:.1f} frames/s, {r.skipped[s]} skipped")
    ratio = r.total_fps / r.engine_alone_fps if r.engine_alone_fps else 0.0
    lines.append(
        f"pipeline {r.total_fps:.1f} frames/s vs engine alone {r.engine_alone_fps:.1f} img/s on {r.input_shape[0]}x{r.input_shape[1]} "
        f"= {ratio:.1%}; lost in transport {r.lost}; latency drift (last third - first third, p50) {r.latency_drift_ms:+.2f} ms"
    )
    return "\n".join(lines)


def plot_pipeline(r: PipelineResult, path: Path) -> Path:
    """Latency distributions per stage, and frames/s and latency over time."""
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


# --- edge_rt side by side with Ultralytics -----------------------------------------------------


@dataclass(frozen=True)
class CompareResult:
    source: str
    frames: int
    edge_model: str
    edge_fps: float
    edge_latency_ms: dict[str, float]  # capture -> subscriber
    reference_model: str
    ultralytics_fps: float
    ultralytics_latency_ms: dict[str, float]  # per frame: preprocess + inference + postprocess

    @property
    def ratio(self) -> float:
        return self.edge_fps / self.ultralytics_fps if self.ultralytics_fps else float("inf")


def _edge_over_file(model: Path, source: str, device: str) -> tuple[int, float, list[float]]:
    """The clip once through `edge-rt run` (every frame), timed at a real subscriber."""
    from .config import build_run_config
    from .runner import run

    with tempfile.TemporaryDirectory(prefix="edge-rt-cmp-") as tmp:
        endpoint = f"ipc://{tmp}/cmp.sock"
        config = build_run_config(
            {}, {"model": str(model), "sources": [source], "publish": endpoint, "device": device, "await_subscribers": 1,
                 "await_timeout": 10.0, "stats_interval": 0.0},
        )
        collector = _Collector(endpoint, tmp)
        run(config)
        collector.finish()
    msgs = collector.messages
    span = (msgs[-1].recv_ns - msgs[0].recv_ns) / 1e9 if len(msgs) > 1 else 1e-9
    return len(msgs), (len(msgs) - 1) / span, [(m.recv_ns - m.capture_ns) / 1e6 for m in msgs]


def _ultralytics_over_file(model: Path, source: str, imgsz: int) -> tuple[int, float, list[float]]:
    """The same clip through Ultralytics' own streaming predict, timed the same way (first to last frame)."""
    import os

    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    yolo: Any = YOLO(str(model), task="detect")
    stamps: list[float] = []
    per_frame: list[float] = []
    for r in yolo.predict(source=source, stream=True, imgsz=imgsz, verbose=False, device="cpu"):
        stamps.append(time.perf_counter())
        per_frame.append(sum(r.speed.values()))
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 1e-9
    return len(stamps), (len(stamps) - 1) / span, per_frame


def bench_compare(model: Path, source: str, reference: Path | None = None, device: str = "cpu", imgsz: int | None = None) -> CompareResult:
    from .engines import load_engine

    probe = load_engine(model, device)
    size = imgsz or probe.info.imgsz[0]
    probe.close()
    ref = reference or model
    n_u, fps_u, lat_u = _ultralytics_over_file(ref, source, size)
    n_e, fps_e, lat_e = _edge_over_file(model, source, device)
    return CompareResult(source, n_e, model.name, fps_e, pct(lat_e), ref.name, fps_u, pct(lat_u))


def compare_table(r: CompareResult) -> str:
    return "\n".join(
        [
            f"{'':<34} {'frames/s':>9} {'latency p50':>12} {'p99':>9}",
            f"{'edge_rt ' + r.edge_model:<34} {r.edge_fps:>9.1f} {r.edge_latency_ms['p50']:>12.2f} {r.edge_latency_ms['p99']:>9.2f}",
            f"{'ultralytics ' + r.reference_model:<34} {r.ultralytics_fps:>9.1f} {r.ultralytics_latency_ms['p50']:>12.2f} {r.ultralytics_latency_ms['p99']:>9.2f}",
            f"edge_rt / ultralytics = {r.ratio:.2f}x on {r.frames} frames of {r.source}",
            "edge_rt latency: capture -> subscriber; Ultralytics: its own preprocess + inference + postprocess per frame",
        ]
    )


# --- the publisher ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishResult:
    messages: int
    payload_bytes: int
    messages_per_s: float  # saturated: publisher encoding + sending as fast as it can
    delivered: int  # of the saturated run, received by the subscriber
    paced_rate: float
    latency_us: dict[str, float]  # publish -> subscriber at the paced rate


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


def bench_publish(count: int = 100_000, paced_rate: float = 2000.0, paced_count: int = 4000, detections: int = 5) -> PublishResult:
    """Small detection messages over tcp loopback to a subscriber in another process (its own core,
    its own GIL): throughput saturated, then publish -> subscriber latency at a paced rate."""
    import socket
    import subprocess
    import uuid

    from .publish import Publisher, ZmqSettings
    from .schema import DETECTIONS, VERSION, encode

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    pub = Publisher(endpoint, settings=ZmqSettings(sndhwm=count + paced_count + 10))
    base = {
        "schema": DETECTIONS, "version": VERSION, "session": uuid.uuid4().hex, "source": "cam0", "frame_index": 0, "width": 1280,
        "height": 720, "model": "m.onnx", "batch_size": 1, "timestamps": {},
        "latency_ms": {"wait": 0.1, "preprocess": 1.0, "queue": 0.0, "inference": 8.0, "postprocess": 0.4, "publish": 0.01, "total": 9.51},
        "detections": [{"cls": 0, "label": "person", "conf": 0.87, "box": [10.5, 20.25, 300.0, 400.75]}] * detections,
    }
    reader = subprocess.Popen(
        [sys.executable, "-c", _SUBSCRIBER, endpoint.replace("127.0.0.1", "localhost"), str(count), str(count + paced_count)],
        stdout=subprocess.PIPE, text=True,
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
    return PublishResult(count, size, rate, min(report["got"], count), paced_rate, pct(lat))


def publish_table(r: PublishResult) -> str:
    lat = r.latency_us
    return (
        f"{r.messages} messages of {r.payload_bytes} bytes (5 detections, JSON): {r.messages_per_s:,.0f} messages/s saturated, "
        f"{r.delivered} delivered\n"
        f"at {r.paced_rate:,.0f} messages/s: publish -> subscriber p50 {lat['p50']:.0f} us, p99 {lat['p99']:.0f} us, max {lat['max']:.0f} us"
    )


def write_json(obj: Any, path: Path) -> None:
    def default(o: Any) -> Any:
        return asdict(o) if hasattr(o, "__dataclass_fields__") else str(o)

    payload = [asdict(x) for x in obj] if isinstance(obj, list) else asdict(obj)
    if isinstance(payload, dict):
        payload.pop("timeline", None)
    path.write_text(json.dumps(payload, indent=2, default=default))
