"""Publisher, client and `edge-rt subscribe` over real ZeroMQ sockets."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import jsonschema
import pytest
import zmq

from edge_rt.client import DetectionMessage, EndOfStream, MalformedMessage, SequenceTracker, Subscriber, parse_message
from edge_rt.errors import PublishError
from edge_rt.wire.broker import Broker, BrokerConfig, BrokerKeys, Endpoint
from edge_rt.wire.publish import Publisher, ZmqSettings
from edge_rt.wire.schema import decode, encode, json_schema
from tests.conftest import free_port
from tests.helpers import start_cli, validate

pytestmark = pytest.mark.timeout(60)


def message(source: str = "cam0", seq: int = 0, session: str | None = None, **over: object) -> dict:
    m = {
        "schema": "edge_rt.detections",
        "version": 2,
        "box": "box0",
        "session": session or "0" * 32,
        "source": source,
        "seq": seq,
        "frame_index": seq,
        "width": 640,
        "height": 360,
        "model": "m.onnx",
        "batch_size": 1,
        "timestamps": {"capture_ns": 1, "batch_ns": 2, "inference_start_ns": 3, "inference_end_ns": 4, "publish_ns": 5},
        "latency_ms": {"wait": 0.1, "preprocess": 1.0, "queue": 0.0, "inference": 5.0, "postprocess": 0.5, "publish": 0.01, "total": 6.61},
        "detections": [{"cls": 0, "label": "person", "conf": 0.9, "box": [1.0, 2.0, 30.5, 40.25]}],
    }
    m.update(over)
    return m


def test_schema_accepts_our_messages_and_rejects_broken_ones() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validate(message())
    validate({"schema": "edge_rt.eos", "version": 2, "box": "box0", "session": "a" * 32, "source": "x", "seq": 3, "frames": 3, "reason": "shutdown", "timestamps": {"publish_ns": 1}})
    for broken in (
        message(version=3),
        message(version=1),  # version 1 had no box; the current schema describes version 2
        {k: v for k, v in message().items() if k != "box"},
        message(box="yard/01"),
        message(box="$health"),
        message(box=""),
        message(seq=-1),
        message(detections=[{"cls": 0, "label": "p", "conf": 1.5, "box": [0, 0, 1, 1]}]),
        message(detections=[{"cls": 0, "label": "p", "conf": 0.5, "box": [0, 0, 1]}]),
        {k: v for k, v in message().items() if k != "timestamps"},
        message(session="not-hex"),
    ):
        with pytest.raises(jsonschema.ValidationError):
            validate(broken)


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_encodings_round_trip(encoding: str) -> None:
    m = message()
    assert decode(encode(m, encoding)) == m


@pytest.mark.parametrize(
    "obj,expected",
    [
        (message(version=3), "unsupported version 3"),
        ({k: v for k, v in message().items() if k != "box"}, "missing key 'box'"),
        (message(box="a b"), "box 'a b'"),
        (message(box="x/y"), "box 'x/y'"),
        ({k: v for k, v in message().items() if k != "seq"}, "missing key 'seq'"),
        (message(seq="1"), "key 'seq'"),
        (message(schema="other"), "unknown schema"),
        (message(detections=[{"cls": 0, "label": "p", "conf": 2.0, "box": [0, 0, 1, 1]}]), "outside"),
        (message(detections=[{"cls": 0, "label": "p", "conf": 0.5, "box": [0, 0]}]), "4 numbers"),
    ],
)
def test_parse_message_names_what_is_wrong(obj: dict, expected: str) -> None:
    with pytest.raises(MalformedMessage, match=expected):
        parse_message(obj)


class RawPublisher:
    """A bare PUB socket to send anything at all, including garbage."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)

    def wait_subscriber(self, timeout: float = 10) -> None:
        assert self.sock.poll(int(timeout * 1000)), "no subscriber joined"
        self.sock.recv()

    def send(self, topic: str, payload: bytes | dict, *extra: bytes) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.sock.send_multipart([topic.encode(), body, *extra])

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()


def test_client_detects_gaps_restarts_and_survives_malformed_messages() -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = RawPublisher(endpoint)
    sub = Subscriber(endpoint, topics=["cam1"])
    errors: list[str] = []
    sub.on_malformed = errors.append
    try:
        pub.wait_subscriber()
        s1, s2 = uuid.uuid4().hex, uuid.uuid4().hex
        pub.send("cam1", message("cam1", 0, s1))
        pub.send("cam10", message("cam10", 0, s1))  # prefix match in ZeroMQ; the client filters it out
        pub.send("cam1", b"\xff\x00 not a payload")
        pub.send("cam1", message("cam1", 1, s1, detections="nope"))
        pub.send("cam1", message("cam2", 1, s1))  # source differs from topic
        pub.send("cam1", message("cam1", 1, s1), b"extra frame")
        pub.send("cam1", message("cam1", 3, s1))  # seq 1 and 2 never arrived
        pub.send("cam1", message("cam1", 0, s2))  # the publisher restarted
        pub.send("cam1", {"schema": "edge_rt.eos", "version": 2, "box": "box0", "session": s2, "source": "cam1", "seq": 1, "frames": 1, "reason": "shutdown", "timestamps": {"publish_ns": 1}})
        got = [sub.receive(5000) for _ in range(4)]
    finally:
        sub.close()
        pub.close()
    assert all(m is not None for m in got)
    assert [(m.seq, m.gap, m.restarted) for m in got] == [(0, 0, False), (3, 2, False), (0, 0, True), (1, 0, False)]
    assert isinstance(got[0], DetectionMessage) and got[0].detections[0].box == (1.0, 2.0, 30.5, 40.25)
    assert isinstance(got[3], EndOfStream)
    assert sub.malformed == 4 and len(errors) == 4
    assert sub.tracker.missed == 2 and sub.tracker.restarts == 1


def test_subscribe_cli_prints_valid_messages_and_reports_malformed(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/s.sock"
    pub = RawPublisher(endpoint)
    proc = start_cli("subscribe", endpoint, "--until-eos", "--timeout", "20")
    try:
        pub.wait_subscriber(20)
        pub.send("cam0", message("cam0", 0))
        pub.send("cam0", b"{broken json")
        pub.send("cam0", message("cam0", 2))
        pub.send("cam0", {"schema": "edge_rt.eos", "version": 2, "box": "box0", "session": "0" * 32, "source": "cam0", "seq": 3, "frames": 2, "reason": "end of file", "timestamps": {"publish_ns": 1}})
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        pub.close()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [m["seq"] for m in lines] == [0, 2, 3]
    assert "Traceback" not in err
    assert "malformed message #1" in err and "1 message(s) lost before seq 2" in err
    assert "3 messages, 1 lost, 1 malformed" in err


def test_subscribe_cli_bad_endpoint_is_one_line() -> None:
    proc = start_cli("subscribe", "nowhere")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and "Traceback" not in err and err.count("error:") == 1


def test_publisher_never_blocks_on_a_subscriber_that_stopped_reading() -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(endpoint, settings=ZmqSettings(sndhwm=50))
    ctx = zmq.Context()
    stuck = ctx.socket(zmq.SUB)
    stuck.setsockopt(zmq.RCVHWM, 50)
    stuck.setsockopt(zmq.LINGER, 0)
    stuck.setsockopt(zmq.SUBSCRIBE, b"")
    stuck.connect(endpoint)
    try:
        assert pub.await_subscribers(1, 10)
        done = threading.Event()
        big = message(detections=[{"cls": 0, "label": "x" * 200, "conf": 0.5, "box": [0, 0, 1, 1]}] * 50)

        def flood() -> None:
            for i in range(20000):
                pub.publish("cam0", {**big, "seq": i})
            done.set()

        threading.Thread(target=flood, daemon=True).start()
        assert done.wait(30), "publish blocked on a subscriber that does not read"
        # The stuck subscriber lost messages past its high-water marks; it sees them as seq gaps.
        tracker = SequenceTracker()
        received = 0
        while stuck.poll(500):
            topic, payload = stuck.recv_multipart()
            m = parse_message(decode(payload))
            tracker.check(m.source, m.session, m.seq)
            received += 1
        assert received < 20000 and tracker.missed > 0
    finally:
        stuck.close()
        ctx.term()
        pub.close()


def test_await_subscribers_is_bounded_and_counts_joins() -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(endpoint)
    try:
        t0 = time.monotonic()
        assert pub.await_subscribers(1, 0.3) is False
        assert 0.25 < time.monotonic() - t0 < 2
        with Subscriber(endpoint), Subscriber(endpoint, topics=["a"]):
            assert pub.await_subscribers(2, 10) is True
            assert pub.subscriptions == 2
        deadline = time.monotonic() + 5
        while pub.poll_subscriptions(50) and time.monotonic() < deadline:
            pass
        assert pub.subscriptions == 0, "leaving subscribers unsubscribe"
    finally:
        pub.close()


def test_bind_errors_are_publish_errors() -> None:
    with pytest.raises(PublishError, match="expected tcp://"):
        Publisher("localhost:1")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    first = Publisher(endpoint)
    try:
        with pytest.raises(PublishError, match="already in use"):
            Publisher(endpoint)
    finally:
        first.close()


# --- publishing to a broker (connect:) ---------------------------------------------------------------


@contextmanager
def running_broker(front: str, back: str, keys: BrokerKeys | None = None) -> Iterator[Broker]:
    """A real `edge_rt.wire.broker.Broker` (zmq.proxy_steerable) in this process, bound on both sides."""
    broker = Broker(BrokerConfig((Endpoint(front),), Endpoint(back), keys=keys, stats_interval=0))
    worker = threading.Thread(target=broker.run, daemon=True)
    worker.start()
    try:
        yield broker
    finally:
        broker.stop()
        worker.join(10)
        broker.close()


def drain(sub: Subscriber, seconds: float) -> list[DetectionMessage]:
    """What `sub` receives for `seconds` (receiving is also what makes a SUB re-send its subscriptions)."""
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        m = sub.receive(50)
        if isinstance(m, DetectionMessage):
            out.append(m)
    return out


def wait_until(check, seconds: float, step: Callable[[], object] = lambda: None) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        step()
        time.sleep(0.02)
    return True


def test_a_publisher_that_connects_to_a_broker_drops_and_counts_while_it_is_away_and_never_replays_stale_messages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No broker at start: publish() neither blocks nor fails, every message is counted as dropped and
    await_subscribers gives up on time. The broker appears: the consumer's subscriptions are forwarded to
    the box (await_subscribers returns, `$health` answering sees the topic) and messages flow. The broker
    dies and comes back on the same ports while the consumer stays subscribed: what was sent meanwhile is
    dropped (IMMEDIATE), not queued and delivered late, and the stream resumes by itself."""
    caplog.set_level(logging.INFO, logger="edge_rt.publish")
    front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(f"connect:{front}", settings=ZmqSettings(reconnect_ivl_max_ms=500))
    sub = Subscriber(back, topics=["cam0", "$health"])  # outlives both brokers, as a consumer would
    assert pub.link is not None
    try:
        t0 = time.monotonic()
        assert all(pub.publish("cam0", message(seq=i)) for i in range(20))
        assert time.monotonic() - t0 < 1, "publish waited for a broker"
        assert pub.await_subscribers(1, 0.3) is False
        assert pub.link.dropped == 20 and not pub.link.connected
        with running_broker(front, back):
            assert wait_until(lambda: pub.poll_subscriptions() >= 2, 10, lambda: sub.receive(10))
            assert set(pub.take_new_subscriptions()) == {b"cam0", b"$health"}, "the broker forwards each topic to the box"
            assert pub.link.connected and pub.link.connects == 1
            for i in range(20, 30):
                pub.publish("cam0", message(seq=i))
            assert [m.seq for m in drain(sub, 1.0)] == list(range(20, 30))
            assert pub.link.dropped == 20
        assert wait_until(lambda: not pub.link.poll(), 10), "the box noticed the broker left"
        assert pub.poll_subscriptions(100) == 0, "the broker's subscriptions left with it"
        for i in range(30, 40):
            pub.publish("cam0", message(seq=i))  # nobody to send them to
        assert pub.link.dropped == 30
        with running_broker(front, back):
            assert wait_until(lambda: pub.poll_subscriptions() >= 2, 10, lambda: sub.receive(10))
            assert pub.link.connects == 2 and pub.subscriptions == 2, "the same consumer counts once again"
            for i in range(40, 50):
                pub.publish("cam0", message(seq=i))
            assert [m.seq for m in drain(sub, 1.0)] == list(range(40, 50)), "nothing from the outage arrives late"
    finally:
        sub.close()
        pub.close()
    said = [r.getMessage() for r in caplog.records]
    assert sum("is not reachable" in line for line in said) == 1, said  # once, not once per retry
    assert any("lost the broker" in line for line in said), said
    assert any("again after" in line and "10 message(s) dropped" in line for line in said), said


def test_connect_errors_are_clear() -> None:
    with pytest.raises(PublishError, match="or connect:tcp://BROKER:PORT"):
        Publisher("connect:localhost:1")
    with pytest.raises(PublishError, match="cannot connect"):
        Publisher("connect:tcp://*:5556")


@pytest.mark.serial  # measures rates or waits against a clock: run alone, after the parallel part
def test_subscribe_timeout_still_honours_sigint() -> None:
    import signal as sig

    proc = start_cli("subscribe", f"tcp://127.0.0.1:{free_port()}", "--timeout", "20")
    time.sleep(1.5)
    t0 = time.monotonic()
    proc.send_signal(sig.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and time.monotonic() - t0 < 2, err
