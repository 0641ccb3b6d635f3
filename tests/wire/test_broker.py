"""`edge-rt broker`: many boxes, one address. Real processes, real sockets on 127.0.0.1.

Boxes connect to the broker's bound frontend (the fleet layout: real `edge-rt run --publish
connect:...` processes, and plain pyzmq PUB sockets where a test needs exact control of what a box
sends), or the broker dials boxes that bind (the broker's `--frontend connect:`). Boxes run with
`--name` publish on topics BOX/SOURCE.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from edge_rt.cli.health import probe_health
from edge_rt.client import HealthMessage, Subscriber
from edge_rt.wire.security import create_keys
from tests.conftest import free_port, write_clip
from tests.helpers import ROOT, CliProcess, assert_clean_failure, cli, env, run_cli, validate

pytestmark = pytest.mark.timeout(90)

DEMO = ROOT / "models" / "demo" / "demo.onnx"


Proc = CliProcess


def broker(frontends: list[str], backend: str, *extra: str) -> Proc:
    args = ["broker", "--backend", backend, *extra]
    for f in frontends:
        args += ["--frontend", f]
    p = Proc(*args)
    p.wait_for("broker: boxes publish to")
    return p


def runtime(endpoint: str, source: str = "cam0", *extra: str) -> Proc:
    """A real `edge-rt run` on a small synthetic camera with the shipped demo model."""
    return Proc(
        "run", "--model", str(DEMO), "--device", "cpu", "--threads", "1", "--publish", endpoint,
        "--source", f"{source}=synthetic://160x120?fps=8", "--stats-interval", "0", *extra,
    )  # fmt: skip


def connected_runtime(front: str, name: str, source: str, *extra: str, extra_env: dict[str, str] | None = None) -> Proc:
    """A real `edge-rt run --publish connect:FRONT --name NAME`: the box publishes to the broker."""
    return Proc(
        "run", "--model", str(DEMO), "--device", "cpu", "--threads", "1", "--publish", f"connect:{front}",
        "--name", name, "--source", source, "--stats-interval", "0", *extra, extra_env=extra_env,
    )  # fmt: skip


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


class Box(threading.Thread):
    """A box's publisher that connects to the broker: [topic, JSON with session/source/seq] every 5 ms."""

    def __init__(
        self, ctx: zmq.Context, endpoint: str, sources: tuple[str, ...], curve: tuple[bytes, bytes, bytes] | None = None
    ) -> None:
        super().__init__(daemon=True)
        self.session = uuid.uuid4().hex
        self.sock = ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            server_public, public, secret = curve
            self.sock.setsockopt(zmq.CURVE_SERVERKEY, server_public)
            self.sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
            self.sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
        self.sock.connect(endpoint)
        self.sources = sources
        self.seq = dict.fromkeys(sources, 0)
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.005):
            for s in self.sources:
                payload = {"session": self.session, "source": s, "seq": self.seq[s]}
                self.sock.send_multipart([s.encode(), json.dumps(payload).encode()])
                self.seq[s] += 1

    def close(self) -> None:
        self.halt.set()
        self.join(2)
        self.sock.close(0)


def raw_sub(
    ctx: zmq.Context, endpoint: str, topics: tuple[str, ...] = ("",), curve: tuple[bytes, bytes, bytes] | None = None
) -> zmq.Socket:
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        server_public, public, secret = curve
        sock.setsockopt(zmq.CURVE_SERVERKEY, server_public)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    for t in topics:
        sock.setsockopt(zmq.SUBSCRIBE, t.encode())
    sock.connect(endpoint)
    return sock


def receive(sock: zmq.Socket, seconds: float, until: int | None = None) -> list[tuple[str, dict]]:
    """[(topic, payload)] for `seconds`, or until `until` messages arrived."""
    out: list[tuple[str, dict]] = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0 and (until is None or len(out) < until):
        if sock.poll(int(remaining * 1000) + 1):
            topic, payload = sock.recv_multipart()
            out.append((topic.decode(), json.loads(payload)))
    return out


def late_snapshots(back: str, key: Callable[[HealthMessage], str], boxes: int = 3) -> tuple[dict[str, HealthMessage], float]:
    """A new `$health` subscriber at the backend: the first snapshot per box (by `key`) and how long they took (5 s at most)."""
    with Subscriber(back, topics=["$health"]) as late:
        snapshots: dict[str, HealthMessage] = {}
        t0 = time.monotonic()
        while len(snapshots) < boxes and time.monotonic() - t0 < 5:
            msg = late.receive(200)
            if isinstance(msg, HealthMessage) and msg.event == "snapshot":
                snapshots.setdefault(key(msg), msg)
        return snapshots, time.monotonic() - t0


def contiguous(received: list[tuple[str, dict]]) -> dict[tuple[str, str], list[int]]:
    """seq per (session, source); every run must be gapless from the first one received."""
    runs: dict[tuple[str, str], list[int]] = {}
    for topic, payload in received:
        assert payload["source"] == topic, f"source {payload['source']!r} on topic {topic!r}"
        runs.setdefault((payload["session"], payload["source"]), []).append(payload["seq"])
    for key, seqs in runs.items():
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{key}: lost or reordered: {seqs[:20]}..."
    return runs


# --- boxes connect to the broker -------------------------------------------------------------------


def test_three_boxes_through_the_broker_reach_one_subscriber_with_every_message_and_its_source(ctx: zmq.Context) -> None:
    front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    b = broker([front], back)
    sub = raw_sub(ctx, back)
    # Two boxes' cam0 share a topic: their messages stay apart by publisher session (and, with box names, by box).
    boxes = [Box(ctx, front, ("cam0", f"door{i}")) for i in range(3)]
    try:
        for box in boxes:
            box.start()
        received = receive(sub, 20, until=600)
        for box in boxes:
            box.close()
        received += receive(sub, 0.5)
    finally:
        code = b.stop()
    runs = contiguous(received)
    assert {session for session, _ in runs} == {box.session for box in boxes}
    for box in boxes:
        for source in box.sources:
            assert len(runs[(box.session, source)]) >= 20, {k: len(v) for k, v in runs.items()}
    assert code == 0, "\n".join(b.lines)
    assert any("broker stopped:" in line for line in b.lines)


def test_a_subscriber_survives_a_broker_restart(ctx: zmq.Context) -> None:
    front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    b = broker([front], back)
    sub = raw_sub(ctx, back, ("cam0",))
    box = Box(ctx, front, ("cam0",))
    box.start()
    try:
        before = receive(sub, 15, until=20)
        assert len(before) == 20
        assert b.stop() == 0, "\n".join(b.lines)
        receive(sub, 0.3)  # what was in flight
        assert receive(sub, 1.0) == [], "nothing flows while the broker is down"
        b = broker([front], back)  # same ports: the box and the subscriber reconnect by themselves
        after = receive(sub, 15, until=20)
    finally:
        box.close()
        code = b.stop()
    assert len(after) == 20, "messages flow again after the restart"
    contiguous(after)
    assert after[0][1]["seq"] > before[-1][1]["seq"]
    assert code == 0


def test_subscriptions_reach_the_boxes_even_when_another_consumer_has_the_same_one(ctx: zmq.Context) -> None:
    """XPUB_VERBOSER through the proxy: a box sees every subscription, duplicates included, so a runtime
    can answer each late `$health` subscriber with a snapshot."""
    front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    b = broker([front], back)
    box = ctx.socket(zmq.XPUB)  # what the runtime's publisher is
    box.setsockopt(zmq.LINGER, 0)
    box.setsockopt(zmq.XPUB_VERBOSER, 1)
    box.connect(front)
    subs = []
    seen: list[bytes] = []
    try:
        for n in (1, 2):
            subs.append(raw_sub(ctx, back, ("$health",)))  # kept open: closing would unsubscribe
            deadline = time.monotonic() + 10
            while seen.count(b"\x01$health") < n and time.monotonic() < deadline:
                if box.poll(100):
                    seen.append(box.recv())
            assert seen.count(b"\x01$health") == n, f"subscription {n} did not reach the box: {seen}"
    finally:
        for s in subs:
            s.close(0)
        box.close(0)
        assert b.stop() == 0


# --- real runtimes publish to the broker (edge-rt run --publish connect:) ---------------------------


def test_three_real_runtimes_publish_to_the_broker_and_one_subscriber_gets_every_box(tmp_path: Path) -> None:
    """Three `edge-rt run --publish connect:FRONT --name boxN --await-subscribers 1` into one broker with a
    bound frontend: the subscriber's subscription travels up through the broker's XSUB, so each box waits
    for it and its first frame (seq 0) arrives; every message is schema-valid on BOX/cam0 with its box,
    every box's health arrives too, a late `$health` subscriber gets every box's snapshot at once, and
    SIGTERM ends each box with an end-of-stream through the broker."""
    clip = write_clip(tmp_path / "clip.mp4", frames=16, size=(320, 180))
    front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    names = ("box0", "box1", "box2")
    b = broker([front], back)
    ctx = zmq.Context()
    sub = raw_sub(ctx, back)  # every topic, $health included; subscribed before the boxes start
    boxes = [connected_runtime(front, n, f"cam0={clip}", "--loop", "--fps", "8", "--await-subscribers", "1") for n in names]
    try:
        seqs: dict[str, list[int]] = {}
        health: dict[str, int] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (len(seqs) == 3 and min(map(len, seqs.values())) >= 8 and len(health) == 3):
            for topic, payload in receive(sub, 0.3):
                validate(payload)
                if topic == "$health":
                    health[payload["box"]] = health.get(payload["box"], 0) + 1
                else:
                    assert topic == f"{payload['box']}/cam0" and payload["source"] == "cam0", topic
                    seqs.setdefault(payload["box"], []).append(payload["seq"])
        snapshots, took = late_snapshots(back, lambda msg: msg.box or "")
        codes = [box.stop() for box in boxes]
        tail = receive(sub, 2.0)
    finally:
        for box in boxes:
            box.stop()  # (already stopped unless the test failed on the way)
        broker_code = b.stop()
        ctx.destroy(0)
    assert set(seqs) == set(names) and set(health) == set(names), (sorted(seqs), sorted(health))
    for name, got in seqs.items():
        assert got == list(range(len(got))), f"{name}: the first frame was lost or a gap: {got[:20]}"
    assert set(snapshots) == set(names) and took < 1.5, (sorted(snapshots), took)
    assert all(m.state == "online" for m in snapshots.values())
    ends = {p["box"] for t, p in tail if p.get("schema") == "edge_rt.eos"}
    assert ends == set(names), f"end-of-stream from {sorted(ends)}"
    assert codes == [0, 0, 0] and broker_code == 0, [box.lines[-5:] for box in boxes]
    for box in boxes:
        assert any(f"connected to the broker at {front}" in line for line in box.lines), box.lines[-10:]


def test_a_runtime_started_before_its_broker_publishes_once_it_appears_and_after_it_restarts(tmp_path: Path) -> None:
    """No broker at start: the runtime starts, tells systemd READY (a box must not be restarted because
    its broker is down), says once that the broker is not reachable, and keeps publishing into the void
    (counted). The broker comes up: messages arrive at a subscriber. The broker is killed and started
    again: the same session resumes with later seqs. SIGTERM: exit 0 and the count of what was dropped."""
    from tests.ops.test_systemd import _datagrams, _notify_socket

    sock, path = _notify_socket(tmp_path)
    front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    metrics_port = free_port()
    box = connected_runtime(
        front, "early", "cam0=synthetic://160x120?fps=8", "--metrics-port", str(metrics_port), extra_env={"NOTIFY_SOCKET": path}
    )
    ctx = zmq.Context()
    b: Proc | None = None
    try:
        got: list[tuple[float, dict[str, str]]] = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not any(d.get("READY") == "1" for _, d in got):
            got += _datagrams(sock, time.monotonic() + 0.5)
        assert any(d.get("READY") == "1" for _, d in got), f"no READY without a broker: {got}"
        box.wait_for("is not reachable")
        time.sleep(1.0)
        assert box.proc.poll() is None, "the runtime runs on without its broker"
        away = _scrape(metrics_port)
        assert away["edge_rt_broker_connected"] == 0 and away["edge_rt_broker_dropped_messages_total"] > 0, away
        sub = raw_sub(ctx, back, ("early/cam0",))
        b = broker([front], back)
        first = receive(sub, 20, until=10)
        assert len(first) == 10, f"only {len(first)} messages after the broker came up"
        assert first[0][1]["seq"] > 0, "what was published before the broker existed went nowhere"
        contiguous_seqs = [p["seq"] for _, p in first]
        assert contiguous_seqs == list(range(contiguous_seqs[0], contiguous_seqs[0] + 10))
        box.wait_for("connected to the broker at")
        b.kill()  # SIGKILL: no goodbye
        box.wait_for("lost the broker")
        receive(sub, 0.3)
        b = broker([front], back)  # same ports
        after = receive(sub, 20, until=10)
        box.wait_for("again after")
        back_again = _scrape(metrics_port)
        assert back_again["edge_rt_broker_connected"] == 1 and back_again["edge_rt_broker_connects_total"] == 2, back_again
        assert back_again["edge_rt_broker_dropped_messages_total"] >= away["edge_rt_broker_dropped_messages_total"]
    finally:
        code = box.stop()
        if b is not None:
            b.stop()
        sock.close()
        ctx.destroy(0)
    assert len(after) == 10, f"only {len(after)} messages after the restart"
    assert after[0][1]["session"] == first[0][1]["session"] and after[0][1]["seq"] > first[-1][1]["seq"]
    for _, payload in first + after:
        validate(payload)
    assert code == 0, "\n".join(box.lines[-20:])
    assert sum("is not reachable" in line for line in box.lines) == 1, "said once, not once per retry"
    assert any("message(s) dropped while no broker was connected" in line for line in box.lines), box.lines[-10:]


def _scrape(port: int) -> dict[str, float]:
    """The runtime's unlabelled samples on /metrics (the broker link's), by name."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        line.split()[0]: float(line.split()[1]) for line in body.splitlines() if line.startswith("edge_rt_broker_") and "{" not in line
    }


def test_a_real_runtime_with_curve_reaches_a_curve_broker_and_an_unlisted_box_does_not(tmp_path: Path) -> None:
    """The box is the broker's CURVE client: its key pair (--curve-secret-key) and the broker's public key
    (--curve-server-key); the broker's --curve-allow-publishers lists box1 only. A listed consumer gets
    box1's messages and nothing of the unlisted box, which logs why in one line."""
    create_keys("broker", tmp_path / "keys")
    for name, folder in (("alarms", "consumers"), ("box1", "boxes"), ("rogue", "elsewhere")):
        create_keys(name, tmp_path / "made")
        (tmp_path / folder).mkdir(exist_ok=True)
        if folder != "elsewhere":
            (tmp_path / "made" / f"{name}.key").rename(tmp_path / folder / f"{name}.key")
    front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    b = broker(
        [front], back, "--curve-secret-key", str(tmp_path / "keys" / "broker.key_secret"),
        "--curve-allow", str(tmp_path / "consumers"), "--curve-allow-publishers", str(tmp_path / "boxes"),
    )  # fmt: skip
    server_key = str(tmp_path / "keys" / "broker.key")
    boxes = [
        connected_runtime(
            front, name, "cam0=synthetic://160x120?fps=8",
            "--curve-secret-key", str(tmp_path / "made" / f"{name}.key_secret"), "--curve-server-key", server_key,
        )  # fmt: skip
        for name in ("box1", "rogue")
    ]
    received: list[dict] = []
    try:
        with Subscriber(back, curve_server_key=server_key, curve_secret_key=tmp_path / "made" / "alarms.key_secret") as alarms:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and sum(1 for m in received if "detections" in m) < 20:
                m = alarms.receive(300)
                if m is not None:
                    validate(m.raw)
                    received.append(m.raw)
            boxes[1].wait_for("refused this box's CURVE key")
            received += [m.raw for m in (alarms.receive(300) for _ in range(10)) if m is not None]
    finally:
        codes = [box.stop() for box in boxes]
        broker_code = b.stop()
    assert sum(1 for m in received if "detections" in m) >= 20
    assert {m["box"] for m in received} == {"box1"}, "the unlisted box's messages must not get through"
    assert any("CURVE on: this box's public key" in line for line in boxes[0].lines)
    assert codes == [0, 0] and broker_code == 0


# --- the broker dials real runtimes ---------------------------------------------------------------


def test_three_real_runtimes_through_the_broker_and_a_late_health_subscriber_gets_snapshots() -> None:
    ports = [free_port() for _ in range(3)]
    boxes = [runtime(f"tcp://127.0.0.1:{p}") for p in ports]  # every box calls its camera cam0
    back = f"tcp://127.0.0.1:{free_port()}"
    b = broker([f"connect:tcp://127.0.0.1:{p}" for p in ports], back)
    ctx = zmq.Context()
    try:
        for box in boxes:
            box.wait_for("publishing on")
        first = raw_sub(ctx, back, ("cam0", "$health"))
        received: list[tuple[str, dict]] = []
        deadline = time.monotonic() + 40
        sessions: set[str] = set()
        while time.monotonic() < deadline and not (len(sessions) == 3 and len(received) >= 45):
            for topic, payload in receive(first, 0.5):
                if topic == "cam0":
                    validate(payload)
                    received.append((topic, payload))
                    sessions.add(payload["session"])
        runs = contiguous(received)
        assert len({s for s, _ in runs}) == 3, f"sessions seen: {sessions}"
        assert all(src == "cam0" for _, src in runs)
        # A second $health subscriber, while the first holds the same subscription: every box answers it at once.
        snapshots, took = late_snapshots(back, lambda msg: msg.session)
        first.close(0)
    finally:
        codes = [box.stop() for box in boxes]
        broker_code = b.stop()
        ctx.destroy(0)
    assert set(snapshots) == sessions, f"snapshots from {set(snapshots)}, boxes {sessions}"
    assert took < 1.5, f"the snapshots took {took:.2f}s"
    assert all(m.state == "online" for m in snapshots.values())
    assert codes == [0, 0, 0] and broker_code == 0


def _names(payload: dict) -> tuple[str, str]:
    return payload["box"], payload["source"]


def test_three_named_boxes_two_with_a_cam0_stay_apart_and_a_subscriber_survives_a_broker_kill(tmp_path: Path) -> None:
    """Three real runtimes on a looping clip, two of them calling their camera cam0: every message arrives
    with its box and source on topic BOX/SOURCE, each stream gapless; a subscriber filtered to one box gets
    only that box (detections and health); the broker is killed (SIGKILL) and started again on the same
    ports, and the same subscribers go on receiving every stream without doing anything."""
    clip = write_clip(tmp_path / "clip.mp4", frames=16, size=(320, 180))
    layout = [("box0", "cam0"), ("box1", "cam0"), ("box2", "door")]
    ports = [free_port() for _ in layout]
    boxes = [
        Proc(
            "run", "--model", str(DEMO), "--device", "cpu", "--threads", "1", "--publish", f"tcp://127.0.0.1:{port}",
            "--name", name, "--source", f"{source}={clip}", "--loop", "--fps", "8", "--stats-interval", "0",
        )  # fmt: skip
        for port, (name, source) in zip(ports, layout)
    ]
    front, back = [f"connect:tcp://127.0.0.1:{p}" for p in ports], f"tcp://127.0.0.1:{free_port()}"
    b = broker(front, back)
    ctx = zmq.Context()
    try:
        for box in boxes:
            box.wait_for("publishing on")
        sub = raw_sub(ctx, back)
        one = Subscriber(back, box="box1", health=True, context=ctx)

        def streams(until: int) -> dict[tuple[str, str], list[int]]:
            """seq per (box, source) until every stream has `until` of them; each checked on the way."""
            seqs: dict[tuple[str, str], list[int]] = {}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (len(seqs) == 3 and min(map(len, seqs.values())) >= until):
                for topic, payload in receive(sub, 0.3):
                    if topic == "$health":
                        continue
                    validate(payload)
                    assert topic == "/".join(_names(payload)), f"{_names(payload)} on topic {topic!r}"
                    seqs.setdefault(_names(payload), []).append(payload["seq"])
            assert set(seqs) == set(layout), f"streams seen: {sorted(seqs)}"
            return seqs

        before = streams(8)
        for key, seqs in before.items():
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{key}: lost or mixed up: {seqs}"
        mine = [one.receive(3000) for _ in range(12)]
        everyone = probe_health(back, "online", 5)
        only_box2 = probe_health(back, "online", 5, box="box2")

        b.kill()  # no goodbye: the subscribers and the boxes notice by themselves
        receive(sub, 0.3)
        assert receive(sub, 0.7) == [], "nothing flows while the broker is down"
        b = broker(front, back)
        after = streams(5)
        later = [one.receive(3000) for _ in range(6)]
        one.close()
        sub.close(0)
    finally:
        codes = [box.stop() for box in boxes]
        broker_code = b.stop()
        ctx.destroy(0)
    for key in layout:
        assert after[key][0] > before[key][-1], f"{key}: the same session goes on after the restart"
    assert all(m is not None and m.box == "box1" for m in mine + later), [m and (m.box, m.source) for m in mine + later]
    assert {type(m).__name__ for m in mine} == {"DetectionMessage", "HealthMessage"}
    assert not any(m.restarted for m in later if m is not None), "the broker restarted, not the box"
    assert everyone.healthy and "(box0/cam0, box1/cam0, box2/door)" in everyone.line and "(3 boxes)" in everyone.line
    assert only_box2.healthy and only_box2.line.startswith("1 of 1 sources online (door)"), only_box2.line
    assert codes == [0, 0, 0] and broker_code == 0


# --- CURVE -----------------------------------------------------------------------------------------


def test_curve_on_the_broker_admits_listed_boxes_and_consumers_only(ctx: zmq.Context, tmp_path: Path) -> None:
    create_keys("broker", tmp_path / "keys")
    for name, folder in (("alarms", "consumers"), ("box1", "boxes"), ("stranger", "elsewhere"), ("rogue", "elsewhere")):
        create_keys(name, tmp_path / "made")
        (tmp_path / folder).mkdir(exist_ok=True)
        if folder != "elsewhere":
            (tmp_path / "made" / f"{name}.key").rename(tmp_path / folder / f"{name}.key")
    import zmq.auth

    server_public, _ = zmq.auth.load_certificate(tmp_path / "keys" / "broker.key")

    def client(name: str) -> tuple[bytes, bytes, bytes]:
        public, secret = zmq.auth.load_certificate(tmp_path / "made" / f"{name}.key_secret")
        assert secret is not None
        return server_public, public, secret

    front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    b = broker(
        [front], back, "--curve-secret-key", str(tmp_path / "keys" / "broker.key_secret"),
        "--curve-allow", str(tmp_path / "consumers"), "--curve-allow-publishers", str(tmp_path / "boxes"),
    )  # fmt: skip
    listed = raw_sub(ctx, back, curve=client("alarms"))
    unlisted = raw_sub(ctx, back, curve=client("stranger"))
    plain = raw_sub(ctx, back)
    box = Box(ctx, front, ("cam0",), curve=client("box1"))
    rogue = Box(ctx, front, ("fake",), curve=client("rogue"))
    box.start()
    rogue.start()
    try:
        got = receive(listed, 15, until=50)
        got += receive(listed, 1.0)
        assert receive(unlisted, 0.5) == [] and receive(plain, 0.5) == []
    finally:
        box.close()
        rogue.close()
        code = b.stop()
    assert len(got) >= 50
    assert {t for t, _ in got} == {"cam0"}, "the unlisted box's messages must not get through"
    assert code == 0


@pytest.mark.parametrize(
    "args,expected",
    [
        (
            ["--frontend", "tcp://127.0.0.1:1", "--backend", "tcp://*:5555"],
            "--backend tcp://*:5555: reachable beyond this machine",
        ),
        (["--frontend", "tcp://0.0.0.0:5556", "--backend", "tcp://127.0.0.1:2"], "--frontend tcp://0.0.0.0:5556: reachable"),
        (["--frontend", "localhost:5556", "--backend", "tcp://127.0.0.1:2"], "expected [bind:|connect:]tcp://HOST:PORT"),
        (["--frontend", "tcp://127.0.0.1:7", "--backend", "connect:tcp://127.0.0.1:2"], "the broker binds this side"),
        (["--frontend", "tcp://127.0.0.1:7", "--backend", "tcp://127.0.0.1:7"], "given twice"),
        (
            ["--frontend", "tcp://127.0.0.1:7", "--backend", "tcp://127.0.0.1:8", "--curve-allow", "x"],
            "--curve-secret-key FILE is missing",
        ),
        (
            [
                "--frontend",
                "tcp://127.0.0.1:7",
                "--backend",
                "tcp://127.0.0.1:8",
                "--curve-secret-key",
                "/nope",
                "--curve-allow",
                "x",
            ],
            "no such file",
        ),
        (["--backend", "tcp://127.0.0.1:8"], "--frontend"),
    ],
)
def test_bad_broker_options_are_one_line_and_exit_2(args: list[str], expected: str) -> None:
    proc = run_cli("broker", *args)
    assert_clean_failure(proc, expected)
    assert proc.returncode == 2


def test_curve_with_a_dialed_box_is_refused_and_a_busy_port_is_exit_5(tmp_path: Path) -> None:
    create_keys("broker", tmp_path)
    create_keys("c", tmp_path / "allow")
    proc = run_cli(
        "broker", "--frontend", "connect:tcp://127.0.0.1:9", "--backend", f"tcp://127.0.0.1:{free_port()}",
        "--curve-secret-key", str(tmp_path / "broker.key_secret"), "--curve-allow", str(tmp_path / "allow"),
    )  # fmt: skip
    assert_clean_failure(proc, "CURVE needs the boxes to connect to the broker")
    with zmq.Context() as c, c.socket(zmq.PUB) as busy:
        busy.setsockopt(zmq.LINGER, 0)
        port = busy.bind_to_random_port("tcp://127.0.0.1")
        proc = run_cli("broker", "--frontend", f"tcp://127.0.0.1:{port}", "--backend", f"tcp://127.0.0.1:{free_port()}")
    assert_clean_failure(proc, "address already in use")
    assert proc.returncode == 5


def test_broker_under_systemd_says_ready_pings_the_watchdog_and_says_stopping(tmp_path: Path) -> None:
    from tests.ops.test_systemd import _datagrams, _notify_socket

    sock, path = _notify_socket(tmp_path)
    e = env() | {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}  # WatchdogSec=1: a ping every 0.5 s
    back = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        cli("broker", "--frontend", f"tcp://127.0.0.1:{free_port()}", "--backend", back),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e,
    )  # fmt: skip
    try:
        got = _datagrams(sock, time.monotonic() + 4)
        proc.send_signal(signal.SIGTERM)
        tail = _datagrams(sock, time.monotonic() + 1.5)
        proc.communicate(timeout=10)
    finally:
        proc.kill()
        sock.close()
    ready = [d for _, d in got if d.get("READY") == "1"]
    assert len(ready) == 1 and back in ready[0]["STATUS"]
    pings = [t for t, d in got if d.get("WATCHDOG") == "1"]
    assert len(pings) >= 4 and max(b - a for a, b in zip(pings, pings[1:])) < 1.0
    assert tail and tail[-1][1] == {"STOPPING": "1", "STATUS": "stopping"}
    assert proc.returncode == 0
