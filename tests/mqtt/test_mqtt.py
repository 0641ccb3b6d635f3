"""`edge-rt mqtt` against a real Mosquitto: a box's messages on real ZeroMQ (built with edge_rt's own
message builders, or from a real `edge-rt run --track`), the bridge as its own process, and a real
paho subscriber on the other side."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import zmq

from edge_rt.camera.capture import CaptureState, HealthEvent
from edge_rt.camera.sources import Frame
from edge_rt.mqtt.settings import BrokerAddress, Credentials
from edge_rt.mqtt.state import Board
from edge_rt.mqtt.topics import Entity, Topics, slug
from edge_rt.ops.health import HealthBoard
from edge_rt.stream.messages import detections_message, eos_message, event_message
from edge_rt.tracking.events import Event
from edge_rt.wire.received import parse_message
from edge_rt.wire.schema import encode, events_topic, json_schema
from tests.conftest import free_port
from tests.helpers import ROOT, CliProcess, assert_clean_failure, cli, env, run_cli
from tests.support.mosquitto import MOSQUITTO, MOSQUITTO_PASSWD, OPENSSL, Mosquitto, Recorder, make_tls

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (apt-get install mosquitto; see .ci/apt-packages.txt)"),
]
BOX, SOURCE = "yard-01", "gate"
NAMES = {0: "person", 1: "car"}
P = f"edge_rt/{BOX}/{SOURCE}"
SCHEMAS = {kind: jsonschema.Draft202012Validator(json_schema(kind)) for kind in ("detections", "events")}


class FakeBox:
    """A box's publisher: a real XPUB socket and real edge_rt messages (checked against the JSON Schemas)."""

    def __init__(self, endpoint: str | None) -> None:
        """endpoint None: no socket, the messages are kept in `kept`, parsed, for the board's tests."""
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 100000)  # bursts of a thousand events in the outage test
        if endpoint is not None:
            self.sock.bind(endpoint)
        self.kept: list[Any] | None = None if endpoint is not None else []
        self.session = uuid.uuid4().hex
        self.header = {"box": BOX, "session": self.session}
        self.health_board = HealthBoard([SOURCE], self.session, box=BOX)
        self.seq = 0
        self.event_seq = 0
        self.frame_index = 0
        self.sent_events: list[dict[str, Any]] = []

    def _send(self, topic: str, m: dict[str, Any]) -> None:
        if self.kept is not None:
            self.kept.append(parse_message(json.loads(encode(m))))
        else:
            self.sock.send_multipart([topic.encode(), encode(m)])

    def wait_subscribers(self, n: int = 1, timeout: float = 20) -> None:
        """XPUB sees each subscription: nothing is sent before the bridge listens (no slow-joiner loss)."""
        deadline = time.monotonic() + timeout
        while n > 0:
            assert self.sock.poll(int(max(0, deadline - time.monotonic()) * 1000)), "the bridge never subscribed"
            n -= self.sock.recv()[:1] == b"\x01"

    def _frame(self) -> Frame:
        self.frame_index += 1
        return Frame(SOURCE, self.frame_index, np.zeros((360, 640, 3), np.uint8), time.time_ns(), time.perf_counter_ns())

    def health(self, state: CaptureState = CaptureState.ONLINE) -> None:
        self.health_board.on_event(HealthEvent(SOURCE, CaptureState.STARTING, state, "frames arrive", time.time_ns()))
        for m in self.health_board.messages({SOURCE: {"read": self.frame_index}}):
            SCHEMAS["detections"].validate(m)
            self._send("$health", m)

    def detections(self, objects: list[tuple[int, int, list[str]]]) -> None:
        """(track id, class, zones) per object."""
        frame = self._frame()
        items = [
            {"cls": c, "label": NAMES[c], "conf": 0.9, "box": [10.0, 10.0, 50.0, 90.0], "track_id": tid, "zones": zones}
            for tid, c, zones in objects
        ]
        now = time.time_ns()
        extra = {
            "model": "demo.onnx",
            "batch_size": 1,
            "timestamps": {"capture_ns": now, "batch_ns": now, "inference_start_ns": now, "inference_end_ns": now, "publish_ns": now},
            "latency_ms": {"wait": 0.0, "preprocess": 0.0, "queue": 0.0, "inference": 0.0, "postprocess": 0.0, "publish": 0.0, "total": 0.0},
        }
        m = detections_message(self.header, frame, self.seq, items, extra)
        self.seq += 1
        SCHEMAS["detections"].validate(m)
        self._send(f"{BOX}/{SOURCE}", m)

    def event(self, kind: str, track_id: int, cls: int = 0, zone: str | None = None, **extra: Any) -> dict[str, Any]:
        end = kind == "end"
        e = Event(kind, track_id, cls, 0.9, (10.0, 10.0, 50.0, 90.0), zone=zone, duration_s=1.5 if end else None, best_conf=0.95 if end else None)
        m = {**event_message(e, self.header, self.event_seq, self._frame(), NAMES, time.time_ns()), **extra}
        self.event_seq += 1
        SCHEMAS["events"].validate(m)  # extra fields (a recording's `clip`) are allowed by the schema
        self._send(events_topic(f"{BOX}/{SOURCE}"), m)
        self.sent_events.append(m)
        return m

    def eos(self) -> None:
        m = eos_message(self.header, SOURCE, self.seq, self.seq, True, time.time_ns())
        self.seq += 1
        self._send(f"{BOX}/{SOURCE}", m)

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


class BridgeProc(CliProcess):
    """`edge-rt mqtt` in its own process."""

    def __init__(self, *args: str) -> None:
        super().__init__("mqtt", *args)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path, free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def box(tmp_path: Path) -> Iterator[tuple[FakeBox, str]]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    fake = FakeBox(endpoint)
    yield fake, endpoint
    fake.close()


def _bridge(endpoint: str, broker: Mosquitto, *extra: str) -> BridgeProc:
    return BridgeProc("--from", endpoint, "--broker", broker.address, "--name", "bridge-1", "--stats-interval", "0", *extra)


def _config(rec: Recorder, topic: str) -> dict[str, Any]:
    return json.loads(rec.last(topic).payload)  # type: ignore[no-any-return]


# --- against a real broker ------------------------------------------------------------------------


@pytest.mark.serial  # measures rates or waits against a clock: run alone, after the parallel part
def test_events_counts_health_and_discovery_reach_mqtt_retained(mosquitto: Mosquitto, box: tuple[FakeBox, str]) -> None:
    fake, endpoint = box
    rec = Recorder(mosquitto.port, ["edge_rt/#", "homeassistant/#"])
    bridge = _bridge(endpoint, mosquitto, "--detections-rate", "5", "--metrics-port", "0")
    try:
        fake.wait_subscribers()
        assert rec.last("edge_rt/bridge-1/available").text() == "online"
        fake.health()  # the box's first health messages: starting, then online
        rec.wait(lambda ms: any(m.topic == f"{P}/health" and json.loads(m.payload)["state"] == "online" for m in ms), what="online")

        # A person appears, is confirmed (start), walks into the dock zone (enter), then leaves it and ends.
        fake.detections([(1, 0, [])])
        fake.event("start", 1)
        rec.wait(lambda ms: any(m.topic == f"{P}/person/count" and m.text() == "1" for m in ms), what="person count 1")
        fake.detections([(1, 0, ["dock"])])
        fake.event("enter", 1, zone="dock")
        rec.wait(lambda ms: any(m.topic == f"{P}/zones/dock/person" and m.text() == "1" for m in ms), what="dock count 1")
        fake.detections([(1, 0, [])])
        fake.event("exit", 1, zone="dock")
        rec.wait(lambda ms: [m.text() for m in ms if m.topic == f"{P}/zones/dock/person"] == ["1", "0"], what="dock count back to 0")
        fake.event("end", 1, clip="/var/lib/edge_rt/clips/gate-1.mp4")  # a recording's extra field passes through
        rec.wait(lambda ms: [m.text() for m in ms if m.topic == f"{P}/person/count"] == ["1", "0"], what="person count back to 0")

        # Events: each one as the box published it, in order.
        events = [json.loads(m.payload) for m in rec.wait(lambda ms: len([m for m in ms if m.topic == f"{P}/events"]) == 4) if m.topic == f"{P}/events"]
        assert events == fake.sent_events
        assert events[-1]["clip"] == "/var/lib/edge_rt/clips/gate-1.mp4"

        # Its counters in Prometheus, read at scrape time.
        url = bridge.wait_for("metrics on http://").split("metrics on ")[1]
        scrape = urllib.request.urlopen(url, timeout=5).read().decode()
        assert 'edge_rt_mqtt_published_total{kind="event"} 4.0' in scrape and "edge_rt_mqtt_connected 1.0" in scrape, scrape

        # Discovery: one device for the box, a unique id per entity, states where the bridge publishes them.
        disc = "homeassistant/{}/edge_rt_yard-01/{}/config"
        configs = {
            "occupancy": _config(rec, disc.format("binary_sensor", "gate_person_occupancy")),
            "count": _config(rec, disc.format("sensor", "gate_person_count")),
            "zone": _config(rec, disc.format("sensor", "gate_zone_dock_person_count")),
            "health": _config(rec, disc.format("sensor", "gate_health")),
        }
        assert len({c["unique_id"] for c in configs.values()}) == 4
        assert all(c["device"] == configs["count"]["device"] for c in configs.values())
        assert configs["count"]["device"]["identifiers"] == ["edge_rt_yard-01"] and configs["count"]["device"]["name"] == BOX
        assert configs["occupancy"]["state_topic"] == f"{P}/person/count" and configs["occupancy"]["device_class"] == "occupancy"
        assert configs["zone"]["state_topic"] == f"{P}/zones/dock/person"
        assert configs["health"]["state_topic"] == f"{P}/health" and "online" in configs["health"]["options"]
        assert {"topic": "edge_rt/bridge-1/available"} in configs["count"]["availability"]

        # Retained: a client that subscribes now gets availability, configs, counts and health at once.
        late = Recorder(mosquitto.port, ["edge_rt/#", "homeassistant/#"], client_id="late")
        try:
            for topic, value in [("edge_rt/bridge-1/available", "online"), (f"{P}/person/count", "0"), (f"{P}/zones/dock/person", "0")]:
                m = late.last(topic)
                assert m.retain and m.text() == value, (topic, m)
            assert late.last(f"{P}/health").retain
            assert all(late.last(disc.format(*t)).retain for t in [("binary_sensor", "gate_person_occupancy"), ("sensor", "gate_health")])
            assert not late.on(f"{P}/events")  # events are not retained
        finally:
            late.close()

        # Home Assistant restarts: its birth message brings every config again.
        before = len(rec.on(disc.format("sensor", "gate_health")))
        rec.client.publish("homeassistant/status", "online", qos=1)
        rec.wait(lambda ms: len([m for m in ms if m.topic == disc.format("sensor", "gate_health")]) > before, what="configs re-sent")
        bridge.wait_for("Home Assistant is online")

        # Detections at most 5 per second: 40 frames in 0.8 s give 4 or 5 (the first goes at once).
        for _ in range(40):
            fake.detections([(2, 1, [])])
            time.sleep(0.02)
        time.sleep(0.3)
        n = len(rec.on(f"{P}/detections"))
        assert 4 <= n <= 6, n
        assert json.loads(rec.on(f"{P}/detections")[0].payload)["schema"] == "edge_rt.detections"
    finally:
        assert bridge.stop(signal.SIGTERM) == 0, bridge.stderr
        rec.wait(lambda ms: ms[-1].topic == "edge_rt/bridge-1/available" and ms[-1].text() == "offline", what="offline on SIGTERM")
        rec.close()
    assert "Traceback" not in bridge.stderr
    assert "mqtt stopped: connected; published" in bridge.stderr


def test_sigkill_leaves_the_last_will_offline(mosquitto: Mosquitto, box: tuple[FakeBox, str]) -> None:
    fake, endpoint = box
    rec = Recorder(mosquitto.port, ["edge_rt/bridge-1/available"])
    bridge = _bridge(endpoint, mosquitto)
    try:
        assert rec.last("edge_rt/bridge-1/available").text() == "online"
        assert bridge.stop(signal.SIGKILL) == -signal.SIGKILL
        rec.wait(lambda ms: ms[-1].text() == "offline", timeout=10, what="the last will")
    finally:
        rec.close()
    late = Recorder(mosquitto.port, ["edge_rt/bridge-1/available"], client_id="late")
    try:
        m = late.last("edge_rt/bridge-1/available")
        assert m.retain and m.text() == "offline"  # Home Assistant, restarting later, still sees the bridge gone
    finally:
        late.close()


def test_events_wait_through_a_broker_restart_and_a_full_queue_drops_the_oldest(tmp_path: Path, box: tuple[FakeBox, str]) -> None:
    """Also the outage figures in docs/mqtt.md (`pytest tests/mqtt/test_mqtt.py -k restart -s` prints them)."""
    fake, endpoint = box
    broker = Mosquitto(tmp_path, free_port())
    broker.start()
    # A durable session: the broker keeps our QoS 1 messages while we are away, across its restart (persistence).
    rec = Recorder(broker.port, [f"{P}/events"], client_id="durable", durable=True)
    queue, during = 1000, 1200
    bridge = _bridge(endpoint, broker, "--queue", str(queue))
    try:
        fake.wait_subscribers()
        bridge.wait_for("connected to MQTT broker")
        fake.event("start", 1)
        rec.wait(lambda ms: len(ms) == 1, what="the first event")
        broker.stop()
        bridge.wait_for("lost")
        for tid in range(2, during + 2):  # while the broker is away: the queue keeps the newest 1000
            fake.event("start", tid)
        bridge.wait_for(f"MQTT event queue full ({queue})")
        time.sleep(0.3)
        broker.start()
        back = bridge.wait_for("back after", timeout=40)
        assert f": {queue} queued events sent, {during - queue} dropped (the queue holds {queue})" in back, back
        msgs = rec.wait(lambda ms: len(ms) >= queue + 1, timeout=30, what="the queued events")
        time.sleep(0.3)
        ids = [json.loads(m.payload)["track_id"] for m in rec.messages]
        assert ids == [1, *range(during + 2 - queue, during + 2)]  # in order, the oldest dropped
    finally:
        assert bridge.stop() == 0, bridge.stderr
        rec.close()
        broker.stop()
    assert "1 reconnects" in bridge.wait_for("mqtt stopped:")
    flushed = msgs[1:]
    span_ms = (flushed[-1].at_ns - flushed[0].at_ns) / 1e6
    size = sum(len(m.payload) for m in flushed) / len(flushed)
    print(f"\nbroker restart: {back.split(': ', 1)[1]}; {len(flushed)} queued events arrived within {span_ms:.0f} ms; "
          f"an event is {size:.0f} bytes of JSON, a full queue about {queue * (size + 173) / 1e6:.1f} MB (with its tuple, topic and bytes headers)")


@pytest.mark.skipif(MOSQUITTO_PASSWD is None, reason="mosquitto_passwd is not installed")
def test_credentials_refused_at_start_is_one_line_and_the_password_never_shows(tmp_path: Path, box: tuple[FakeBox, str]) -> None:
    _, endpoint = box
    password = "s3cret-Pa55-" + uuid.uuid4().hex[:8]
    broker = Mosquitto(tmp_path, free_port(), users={"bridge": password})
    broker.start()
    try:
        wrong = tmp_path / "wrong.creds"
        wrong.write_text("# the bridge's login\nusername=bridge\npassword=not-" + password + "\n")
        wrong.chmod(0o600)
        proc = run_cli("mqtt", "--from", endpoint, "--broker", broker.address, "--credentials", str(wrong), timeout=30)
        assert_clean_failure(proc, f"MQTT broker {broker.address} refused the connection")
        assert proc.returncode == 5
        assert "Not authorized" in proc.stderr or "Bad user name or password" in proc.stderr, proc.stderr
        assert password not in proc.stderr + proc.stdout

        good = tmp_path / "good.creds"
        good.write_text(f'username = bridge\npassword = "{password}"\n')
        good.chmod(0o644)  # readable by others: said once, as a warning
        bridge = _bridge(endpoint, broker, "--credentials", str(good))
        try:
            bridge.wait_for("connected to MQTT broker")
            cmdline = Path(f"/proc/{bridge.proc.pid}/cmdline").read_bytes().decode()
            assert password not in cmdline and password not in " ".join(bridge.args)
            # Later the broker comes back with another password: not a start-up mistake any more, so the bridge
            # says so once and keeps trying with back-off (1, 2, 4 s ...), without exiting.
            broker.stop()
            bridge.wait_for("lost")
            broker.set_users({"bridge": "changed-" + password})
            broker.start()
            assert "refused the connection: Not authorized; retrying with back-off" in bridge.wait_for("refused the connection", timeout=20)
            time.sleep(3.5)
            assert bridge.proc.poll() is None
            attempts = broker.log.read_text().split("mosquitto version")[-1].count("New connection from")
            assert 1 <= attempts <= 3, attempts  # not a tight loop
        finally:
            assert bridge.stop() == 0, bridge.stderr
        assert sum("refused the connection" in line for line in bridge.lines) == 1
        assert "can be read by other users (mode 644)" in bridge.stderr
        assert "user bridge" in bridge.stderr and password not in bridge.stderr
    finally:
        broker.stop()


@pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed (it makes the test CA)")
def test_tls_with_the_brokers_ca_and_refused_without_it(tmp_path: Path, box: tuple[FakeBox, str]) -> None:
    fake, endpoint = box
    tls = make_tls(tmp_path)
    broker = Mosquitto(tmp_path, free_port(), tls=tls)
    broker.start()
    try:
        # Without the CA (the system's CAs do not know this one): one line at start, exit 5.
        proc = run_cli("mqtt", "--from", endpoint, "--broker", f"mqtts://{broker.address}", timeout=30)
        assert_clean_failure(proc, "TLS certificate not accepted (self-signed certificate in certificate chain)")
        assert "give its CA with --tls-ca FILE" in proc.stderr and proc.returncode == 5
        # Plain MQTT to the TLS port: the broker hangs up without a word, which is said as such.
        proc = run_cli("mqtt", "--from", endpoint, "--broker", broker.address, "--connect-timeout", "5", timeout=30)
        assert_clean_failure(proc, "closed the connection without answering (if")
        assert "is a TLS port, add --tls or --tls-ca FILE, or use mqtts://" in proc.stderr and proc.returncode == 5
        bridge = _bridge(endpoint, broker, "--tls-ca", str(tls.ca))
        try:
            assert "(TLS, no login)" in bridge.wait_for("connected to MQTT broker")
            fake.wait_subscribers()
            fake.event("start", 1)
            got = threading.Event()  # the test's own client speaks TLS too
            c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="tls-reader")
            c.tls_set_context(ssl.create_default_context(cafile=str(tls.ca)))
            c.on_connect = lambda cl, *a: cl.subscribe(f"{P}/person/count", qos=1)
            c.on_message = lambda _c, _u, m: got.set() if m.payload == b"1" and m.retain else None
            c.connect("127.0.0.1", broker.port)
            c.loop_start()
            try:
                assert got.wait(10), "the retained count did not come over TLS"
            finally:
                c.disconnect()
                c.loop_stop()
        finally:
            assert bridge.stop() == 0, bridge.stderr
    finally:
        broker.stop()


def test_tls_to_a_plain_port_is_one_line(mosquitto: Mosquitto, box: tuple[FakeBox, str]) -> None:
    _, endpoint = box
    proc = run_cli("mqtt", "--from", endpoint, "--broker", mosquitto.address, "--tls", timeout=30)
    assert_clean_failure(proc, f"is {mosquitto.port} its TLS port (usually 8883)?")
    assert proc.returncode == 5


def test_an_unreachable_broker_at_start_is_said_once_then_retried(box: tuple[FakeBox, str], tmp_path: Path) -> None:
    fake, endpoint = box
    port = free_port()
    bridge = BridgeProc("--from", endpoint, "--broker", f"127.0.0.1:{port}", "--name", "bridge-1", "--stats-interval", "0")
    broker = Mosquitto(tmp_path, port)
    try:
        fake.wait_subscribers()
        assert "unreachable (Connection refused): retrying with back-off" in bridge.wait_for("unreachable")
        fake.health()
        fake.event("start", 1)  # queued until the broker is there
        time.sleep(0.3)
        broker.start()
        rec = Recorder(port, [f"{P}/#"])
        try:
            bridge.wait_for("connected to MQTT broker", timeout=40)
            rec.wait(lambda ms: any(m.topic == f"{P}/person/count" and m.text() == "1" for m in ms), what="the count, retained")
        finally:
            rec.close()
    finally:
        assert bridge.stop() == 0, bridge.stderr
        broker.stop()
    assert sum("unreachable" in line for line in bridge.lines) == 1  # one line, not one per retry


def test_event_latency_zeromq_to_mqtt(mosquitto: Mosquitto, box: tuple[FakeBox, str]) -> None:
    """The figure in docs/mqtt.md: `pytest tests/mqtt/test_mqtt.py -k latency -s` prints it."""
    fake, endpoint = box
    rec = Recorder(mosquitto.port, [f"{P}/events"])
    bridge = _bridge(endpoint, mosquitto)
    try:
        fake.wait_subscribers()
        bridge.wait_for("connected to MQTT broker")
        n = 300
        for tid in range(1, n + 1):
            fake.event("start", tid)
            time.sleep(0.005)  # 200 events/s, as a busy gate might produce
        msgs = rec.wait(lambda ms: len(ms) >= n, timeout=20, what=f"{n} events")
    finally:
        assert bridge.stop() == 0, bridge.stderr
        rec.close()
    ms = np.array([(m.at_ns - json.loads(m.payload)["timestamps"]["publish_ns"]) / 1e6 for m in msgs])
    p50, p99 = np.percentile(ms, [50, 99])
    print(f"\nevent latency ZeroMQ -> MQTT subscriber, {n} events at 200/s, QoS 1: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {ms.max():.2f} ms")
    assert p50 < 50 and p99 < 250, (p50, p99)


def test_a_real_run_with_tracking_reaches_mqtt(mosquitto: Mosquitto, tmp_path: Path) -> None:
    import yaml

    from edge_rt.client import EndOfStream, EventMessage, Subscriber
    from edge_rt.training.synth_tracks import synth_track_clip

    clip = synth_track_clip(tmp_path / "gate.mp4", frames=60, size=(640, 360), seed=1, objects=3)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = tmp_path / "gate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": str(ROOT / "models/demo/demo.onnx"),
                "publish": endpoint,
                "name": BOX,
                "await_subscribers": 2,  # the bridge and this test
                "stats_interval": 0,
                "sources": [{"name": SOURCE, "uri": str(clip.video), "zones": {"left": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}}],
            }
        )
    )
    rec = Recorder(mosquitto.port, [f"edge_rt/{BOX}/#"])
    bridge = _bridge(endpoint, mosquitto)
    try:
        bridge.wait_for("connected to MQTT broker")
        with Subscriber(endpoint, events=True) as sub:
            run = subprocess.Popen(cli("run", "--config", str(config)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
            events: list[EventMessage] = []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                msg = sub.receive(500)
                if isinstance(msg, EventMessage):
                    events.append(msg)
                elif isinstance(msg, EndOfStream):
                    break
            _, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
        assert any(e.event == "enter" for e in events), [e.event for e in events]
        on_mqtt = rec.wait(lambda ms: len([m for m in ms if m.topic == f"{P}/events"]) >= len(events), what="every event")
        assert [json.loads(m.payload)["seq"] for m in on_mqtt if m.topic == f"{P}/events"] == [e.seq for e in events]
        # Counts went up and, the file over (every start has its end, every enter its exit), back to 0. (A zone count
        # may stay 0 throughout: an object is counted under its class when it entered, and its track's class can change.)
        counts = {m.topic: [int(x.text()) for x in rec.on(m.topic)] for m in on_mqtt if m.topic.endswith("/count") or "/zones/left/" in m.topic}
        assert all(values[-1] == 0 for values in counts.values()), counts
        assert any(max(v) >= 1 for t, v in counts.items() if t.endswith("/count")), counts
        assert any(max(v) >= 1 for t, v in counts.items() if "/zones/left/" in t), counts
        rec.wait(lambda ms: any(m.topic == f"{P}/health" and json.loads(m.payload)["state"] == "stopped" for m in ms), what="stopped")
    finally:
        assert bridge.stop() == 0, bridge.stderr
        rec.close()


# --- mistakes: one line, no traceback -------------------------------------------------------------------


def _garbage(tmp_path: Path) -> str:
    p = tmp_path / "ca.pem"
    p.write_text("not a certificate\n")
    return str(p)


MISTAKES = [
    (["--broker", "127.0.0.1:99999"], "port '99999' is not a number from 1 to 65535"),
    (["--broker", "ws://host"], "unknown scheme 'ws'"),
    (["--broker", "user@host"], "expected HOST[:PORT]"),
    (["--broker", "127.0.0.1", "--credentials", "{tmp}/missing.creds"], "--credentials '{tmp}/missing.creds': no such file"),
    (["--broker", "127.0.0.1", "--tls-ca", "{garbage}"], "--tls-ca '{garbage}': not a readable PEM CA certificate"),
    (["--broker", "127.0.0.1", "--tls-ca", "{tmp}/none.pem"], "--tls-ca '{tmp}/none.pem': no such file"),
    (["--broker", "127.0.0.1", "--tls-key", "{garbage}"], "--tls-key needs --tls-cert"),
    (["--broker", "127.0.0.1", "--queue", "0"], "--queue must be >= 1"),
    (["--broker", "127.0.0.1", "--topic-prefix", "edge_rt/#"], "--topic-prefix 'edge_rt/#'"),
    (["--broker", "127.0.0.1", "--detections-rate", "-1"], "--detections-rate must be 0 (off) to 100 Hz"),
]


@pytest.mark.parametrize(("args", "expected"), MISTAKES)
def test_mistakes_are_one_line(args: list[str], expected: str, tmp_path: Path) -> None:
    fill = {"tmp": str(tmp_path), "garbage": _garbage(tmp_path)}
    proc = run_cli("mqtt", "--from", "tcp://127.0.0.1:9", *(a.format(**fill) for a in args), timeout=30)
    assert_clean_failure(proc, expected.format(**fill))
    assert proc.returncode == 2


def test_missing_broker_option_is_a_usage_line() -> None:
    proc = run_cli("mqtt", "--from", "tcp://127.0.0.1:9", timeout=30)
    assert_clean_failure(proc, "the following arguments are required: --broker")


# --- pure parts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port", "tls"),
    [
        ("mqtt.local", "mqtt.local", 1883, False),
        ("10.0.0.5:1884", "10.0.0.5", 1884, False),
        ("mqtts://broker.example", "broker.example", 8883, True),
        ("mqtt://[::1]:1999", "::1", 1999, False),
        ("::1", "::1", 1883, False),
    ],
)
def test_broker_address(text: str, host: str, port: int, tls: bool) -> None:
    assert BrokerAddress.parse(text) == BrokerAddress(host, port, tls)


def test_credentials_file(tmp_path: Path) -> None:
    p = tmp_path / "c"
    p.write_text("# comment\n\nusername=ha\npassword='with = sign '\n")
    c = Credentials.load(p)
    assert (c.username, c.password) == ("ha", "with = sign ")
    assert "with = sign" not in repr(c)
    p.write_text("username=ha\nsecret-line-without-equals\n")
    with pytest.raises(Exception, match="line 2: expected KEY=VALUE") as exc:
        Credentials.load(p)
    assert "secret-line" not in str(exc.value)


def test_topics_keep_names_within_one_level() -> None:
    t = Topics("edge_rt", "bridge-1")
    e = Entity("zone", "yard-01", "cam/1", "traffic light", "a+b#")
    assert t.state(e) == "edge_rt/yard-01/cam_1/zones/a_b_/traffic light"
    assert slug("gate") == "gate" and slug("a.b") != slug("a_b") and slug("a.b").startswith("a_b_")
    assert all(topic.startswith("homeassistant/sensor/edge_rt_yard-01/") for topic, _ in t.discovery(e, "0"))


def test_counts_are_sets_of_tracks_idempotent_and_reset_by_a_new_session() -> None:
    fake = FakeBox(None)  # the same messages, kept here instead of sent
    sent = fake.kept
    assert sent is not None
    board = Board()
    count, dock = Entity("count", BOX, SOURCE, "person"), Entity("zone", BOX, SOURCE, "person", "dock")

    def feed() -> None:
        for m in sent:
            board.update(m, time.monotonic())
        sent.clear()

    fake.detections([(1, 0, ["dock"]), (2, 0, [])])  # a bridge that starts while two people are in view
    feed()
    assert (board.values[count], board.values[dock]) == ("2", "1")
    fake.event("enter", 1, zone="dock")  # an event for what the frame already showed counts once
    fake.event("start", 2)
    feed()
    assert (board.values[count], board.values[dock]) == ("2", "1")
    fake.event("exit", 1, zone="dock")
    fake.event("exit", 1, zone="dock")  # repeated: never below zero
    fake.event("end", 1)
    feed()
    assert (board.values[count], board.values[dock]) == ("1", "0")
    fake.header = {"box": BOX, "session": "b" * 32}  # the box restarted: ids start over
    fake.detections([])
    feed()
    assert board.values[count] == "0"
    fake.detections([(7, 0, ["dock"])])
    feed()
    assert (board.values[count], board.values[dock]) == ("1", "1")
    fake.eos()  # the end of the stream: nothing is in view any more
    feed()
    assert (board.values[count], board.values[dock]) == ("0", "0")
    fake.close()


def test_no_sensor_for_a_class_the_track_is_not() -> None:
    """A tracked person's first box called `car` (in a zone of persons) made `..._zone_dock_car_count`, always 0:
    the track's start event, right after its first detections message, names its class."""
    fake = FakeBox(None)
    sent = fake.kept
    assert sent is not None
    board = Board()
    announced: set[Entity] = set()

    def feed() -> None:
        for m in sent:
            announced.update(board.update(m, time.monotonic()))
        sent.clear()

    fake.detections([(1, 0, [])])  # in view when the bridge joined: its box's class is all there is
    fake.detections([(1, 0, []), (5, 1, ["dock"])])  # a new track: its first box says car...
    fake.event("start", 5, cls=0)  # ...its track is a person
    fake.detections([(1, 0, []), (5, 0, ["dock"])])
    feed()
    assert {(e.kind, e.label, e.zone) for e in announced} == {("count", "person", ""), ("zone", "person", "dock")}
    assert board.values[Entity("zone", BOX, SOURCE, "person", "dock")] == "1"
    assert board.values[Entity("count", BOX, SOURCE, "person")] == "2"
    fake.close()


def test_a_silent_box_turns_its_cameras_offline() -> None:
    board = Board()
    hb = HealthBoard([SOURCE], "c" * 32, box=BOX)
    hb.on_event(HealthEvent(SOURCE, CaptureState.STARTING, CaptureState.ONLINE, "frames arrive", time.time_ns()))
    for m in hb.messages({}):
        board.update(parse_message(m), 100.0)
    health = Entity("health", BOX, SOURCE)
    assert json.loads(board.values[health])["state"] == "online"
    assert board.silent(105.0, 10.0) == []
    assert board.silent(111.0, 10.0) == [health]
    assert json.loads(board.values[health]) | {"since_ns": 0} == {
        "state": "offline", "previous": "online", "reason": f"no message from box {BOX} for 10 s (edge-rt mqtt)", "since_ns": 0
    }
    assert board.silent(120.0, 10.0) == []  # said once
