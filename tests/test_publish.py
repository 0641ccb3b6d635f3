"""Publisher, client and `edge-rt subscribe` over real ZeroMQ sockets."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import jsonschema
import pytest
import zmq

from edge_rt.client import DetectionMessage, EndOfStream, MalformedMessage, SequenceTracker, Subscriber, parse_message
from edge_rt.errors import PublishError
from edge_rt.publish import Publisher, ZmqSettings
from edge_rt.schema import decode, encode, json_schema

from .conftest import free_port
from .helpers import start_cli, validate

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


def test_subscribe_timeout_still_honours_sigint() -> None:
    import signal as sig

    proc = start_cli("subscribe", f"tcp://127.0.0.1:{free_port()}", "--timeout", "20")
    time.sleep(1.5)
    t0 = time.monotonic()
    proc.send_signal(sig.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and time.monotonic() - t0 < 2, err
