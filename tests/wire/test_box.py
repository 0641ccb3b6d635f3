"""The box's name: `edge-rt run --name BOX` (config `name`), the `box` field of every message, topics
`BOX/SOURCE` for a named box, and the client's and CLI's filters by box and source. Real ZeroMQ
sockets, real `edge-rt run` processes on the shipped demo model and a clip written with OpenCV."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import zmq

from edge_rt.client import DetectionMessage, EndOfStream, HealthMessage, Message, Subscriber
from edge_rt.config import RunConfig, build_run_config, default_box_name
from edge_rt.errors import ConfigError
from tests.conftest import free_port, write_clip
from tests.helpers import ROOT, assert_clean_failure, run_cli, start_cli, validate

from .test_publish import RawPublisher, message

pytestmark = pytest.mark.timeout(60)

DEMO = ROOT / "models" / "demo" / "demo.onnx"


def _config(file_values: dict[str, Any], cli: dict[str, Any] | None = None) -> RunConfig:
    return build_run_config({"model": "m.onnx", "sources": ["0"], **file_values}, cli or {})


# --- the name in the config ------------------------------------------------------------------------


def test_the_box_is_the_given_name_else_the_hostname_made_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    named = _config({"name": "from-file"}, {"name": "yard-01"})
    assert (named.name, named.box, named.box_topics) == ("yard-01", "yard-01", True), "the flag overrides the file"
    assert _config({"name": "from-file"}).box == "from-file"
    unnamed = _config({})
    assert unnamed.name is None and not unnamed.box_topics, "a box nobody named keeps plain SOURCE topics"
    assert unnamed.box == default_box_name()
    monkeypatch.setattr("socket.gethostname", lambda: "Edge Box #2 (café)")
    assert default_box_name() == "Edge-Box--2--caf"
    monkeypatch.setattr("socket.gethostname", lambda: "###")
    assert default_box_name() == "edge-rt"
    monkeypatch.setattr("socket.gethostname", lambda: "n" * 300)
    assert default_box_name() == "n" * 253


@pytest.mark.parametrize(
    "name,expected",
    [
        ("a/b", "name: 'a/b' is not a box name"),
        ("$health", "name: '$health' is not a box name"),
        ("two words", "is not a box name"),
        ("tab\there", "is not a box name"),
        ("", "name: '' is not a box name"),
        ("x" * 254, "1 to 253 letters, digits"),
        (7, "name: 7 is not a box name"),
        (["a"], "is not a box name"),
    ],
)
def test_a_bad_name_is_refused_naming_the_key(name: Any, expected: str) -> None:
    with pytest.raises(ConfigError, match="^name: ") as info:
        _config({"name": name})
    assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--name", "yard/01"], "name: 'yard/01' is not a box name"),
        (["--name", ""], "name: '' is not a box name"),
        (["--config", "@bad.yaml"], "name: '$box' is not a box name"),
    ],
)
def test_a_bad_name_on_the_command_line_is_one_line_and_exit_2(args: list[str], expected: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model: {DEMO}\nsources: ['0']\nname: $box\n")
    args = [str(bad) if a == "@bad.yaml" else a for a in args]
    proc = run_cli("run", "--model", str(DEMO), "--source", "synthetic://64x48", *args)
    assert_clean_failure(proc, expected)
    assert proc.returncode == 2


# --- the client's filters, on a real socket ---------------------------------------------------------


def _await_subscriptions(pub: RawPublisher, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    got = 0
    while got < count:
        assert pub.sock.poll(max(1, int((deadline - time.monotonic()) * 1000))), f"{got} of {count} subscriptions"
        got += pub.sock.recv()[:1] == b"\x01"


def _drain(sub: Subscriber, quiet_ms: int = 300) -> list[Message]:
    """Every message until none came for `quiet_ms` (they were all sent before: they arrive within it)."""
    out: list[Message] = []
    while (msg := sub.receive(quiet_ms)) is not None:
        out.append(msg)
    return out


def _health(box: str, source: str, seq: int) -> dict[str, Any]:
    return {
        "schema": "edge_rt.health", "version": 2, "box": box, "session": "1" * 32, "source": source, "seq": seq,
        "event": "heartbeat", "state": "online", "previous": "starting", "reason": "first frame", "since_ns": 1,
        "ts_ns": 2, "counters": {},
    }  # fmt: skip


def test_subscribers_select_by_box_and_source_whatever_the_topic() -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = RawPublisher(endpoint)
    pub.sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscriber's subscriptions, so all of them are known to be in
    s0, s1, s2 = (uuid.uuid4().hex for _ in range(3))
    ctx = zmq.Context()
    subs = {
        "all": Subscriber(endpoint, context=ctx),
        "box1": Subscriber(endpoint, box="box1", context=ctx),
        "box1 cam0": Subscriber(endpoint, box="box1", sources=["cam0"], health=True, context=ctx),
        "host cam0": Subscriber(endpoint, box="host", sources=["cam0"], context=ctx),
        "cam0": Subscriber(endpoint, sources=["cam0"], context=ctx),
    }
    try:
        _await_subscriptions(pub, 1 + 1 + 3 + 2 + 1)
        sent = [
            ("box0/cam0", message("cam0", 0, s0, box="box0")),
            ("box1/cam0", message("cam0", 0, s1, box="box1")),  # two boxes' cam0: two streams, not a restart
            ("box1/door", message("door", 0, s1, box="box1")),
            ("cam0", message("cam0", 0, s2, box="host")),  # a box run without --name: plain topic, hostname box
            ("box0/cam0", message("cam0", 1, s0, box="box0")),
            ("box1/cam0", message("cam0", 2, s1, box="box1")),  # box1's seq 1 was lost
            ("box1/cam01", message("cam01", 0, s1, box="box1")),  # a prefix match of box1/cam0
            ("cam0", {k: v for k, v in message("cam0", 1, s2).items() if k != "box"} | {"version": 1}),  # a version-1 box
            ("box0/cam0", message("cam0", 2, s0, box="box1")),  # the topic names another box
            ("$health", _health("box1", "cam0", 0)),
            ("$health", _health("box0", "cam0", 0)),
            ("box1/cam0", {"schema": "edge_rt.eos", "version": 2, "box": "box1", "session": s1, "source": "cam0", "seq": 3,
                           "frames": 3, "reason": "shutdown", "timestamps": {"publish_ns": 1}}),
        ]  # fmt: skip
        for topic, payload in sent:
            pub.send(topic, payload)
        got = {name: _drain(sub) for name, sub in subs.items()}
    finally:
        for sub in subs.values():
            sub.close()
        ctx.term()
        pub.close()

    def seen(name: str) -> list[tuple[str | None, str, int]]:
        return [(m.box, m.source, m.seq) for m in got[name]]

    assert seen("all") == [
        ("box0", "cam0", 0), ("box1", "cam0", 0), ("box1", "door", 0), ("host", "cam0", 0), ("box0", "cam0", 1),
        ("box1", "cam0", 2), ("box1", "cam01", 0), (None, "cam0", 1), ("box1", "cam0", 3),
    ]  # fmt: skip
    assert subs["all"].malformed == 1, "box1's message on box0's topic"
    assert [(m.gap, m.restarted) for m in got["all"]][:6] == [(0, False)] * 5 + [(1, False)]
    assert subs["all"].tracker.restarts == 0 and subs["all"].tracker.missed == 1
    assert seen("box1") == [("box1", "cam0", 0), ("box1", "door", 0), ("box1", "cam0", 2), ("box1", "cam01", 0), ("box1", "cam0", 3)]
    assert seen("box1 cam0") == [("box1", "cam0", 0), ("box1", "cam0", 2), ("box1", "cam0", 0), ("box1", "cam0", 3)]
    assert isinstance(got["box1 cam0"][2], HealthMessage) and got["box1 cam0"][2].box == "box1", "only box1's health"
    assert isinstance(got["box1 cam0"][3], EndOfStream) and got["box1 cam0"][3].box == "box1"
    assert seen("host cam0") == [("host", "cam0", 0)], "a box without --name, found by its hostname box"
    assert seen("cam0") == [("box0", "cam0", 0), ("box1", "cam0", 0), ("host", "cam0", 0), ("box0", "cam0", 1),
                            ("box1", "cam0", 2), (None, "cam0", 1), ("box1", "cam0", 3)]  # fmt: skip
    assert all(isinstance(m, DetectionMessage) for m in got["box1"][:4])


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        ({"box": "a/b"}, "box 'a/b'"),
        ({"box": ""}, "box ''"),
        ({"topics": ["cam0"], "box": "b"}, "not both"),
        ({"topics": ["cam0"], "sources": ["cam0"]}, "not both"),
        ({"sources": "cam0"}, "lists of names"),
    ],
)
def test_subscriber_refuses_bad_filters(kwargs: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        Subscriber(f"tcp://127.0.0.1:{free_port()}", **kwargs)


def test_subscribe_cli_filters_by_box_and_names_the_box_in_its_reports(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/s.sock"
    pub = RawPublisher(endpoint)
    proc = start_cli("subscribe", endpoint, "--box", "box1", "--source", "cam0", "--until-eos", "--timeout", "20")
    try:
        _await_subscriptions(pub, 2, timeout=20)  # box1/cam0 and cam0
        pub.send("box0/cam0", message("cam0", 0, box="box0"))
        pub.send("box1/cam0", message("cam0", 0, box="box1"))
        pub.send("box1/cam0", message("cam0", 2, box="box1"))
        pub.send("box1/cam0", {"schema": "edge_rt.eos", "version": 2, "box": "box1", "session": "0" * 32, "source": "cam0",
                               "seq": 3, "frames": 2, "reason": "end of file", "timestamps": {"publish_ns": 1}})  # fmt: skip
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        pub.close()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(m["box"], m["seq"]) for m in lines] == [("box1", 0), ("box1", 2), ("box1", 3)]
    assert "box1/cam0: 1 message(s) lost before seq 2" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args,expected",
    [(["--box", "a/b"], "--box 'a/b'"), (["--topic", "cam0", "--box", "b"], "use one or the other")],
)
def test_subscribe_cli_bad_box_options_are_one_line_and_exit_2(args: list[str], expected: str) -> None:
    proc = run_cli("subscribe", f"tcp://127.0.0.1:{free_port()}", *args, "--timeout", "1")
    assert_clean_failure(proc, expected)
    assert proc.returncode == 2


def test_health_cli_bad_box_is_one_line_and_exit_2() -> None:
    proc = run_cli("health", "--endpoint", f"tcp://127.0.0.1:{free_port()}", "--box", "$health")
    assert_clean_failure(proc, "--box '$health': a box name is 1 to 253 letters")
    assert proc.returncode == 2


# --- real runs ---------------------------------------------------------------------------------------


def _run(tmp_path: Path, *extra: str) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """A real `edge-rt run` of a 6-frame clip named `cam`; every (topic, payload) a catch-all SUB saw."""
    clip = write_clip(tmp_path / "clip.mp4", frames=6, size=(320, 180))
    endpoint = f"ipc://{tmp_path}/edge.sock"
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    proc = start_cli(
        "run", "--model", str(DEMO), "--device", "cpu", "--threads", "1", "--source", f"cam={clip}",
        "--publish", endpoint, "--await-subscribers", "1", "--stats-interval", "0", *extra,
    )  # fmt: skip
    got: list[tuple[str, dict[str, Any]]] = []
    try:
        deadline = time.monotonic() + 40
        while not any(p.get("schema") == "edge_rt.eos" for _, p in got):
            assert time.monotonic() < deadline, f"no end of stream; got {len(got)} messages"
            if sock.poll(200):
                topic, payload = sock.recv_multipart()
                got.append((topic.decode(), json.loads(payload)))
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        sock.close()
        ctx.term()
    assert proc.returncode == 0, err
    return got, err


def test_a_named_box_publishes_on_box_topics_with_its_name_in_every_message(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text("name: from-the-file\n")
    got, err = _run(tmp_path, "--config", str(config), "--name", "yard-01")
    frames = [(t, p) for t, p in got if p["schema"] == "edge_rt.detections"]
    assert len(frames) == 6 and {t for t, _ in frames} == {"yard-01/cam"}
    assert {t for t, p in got if p["schema"] == "edge_rt.eos"} == {"yard-01/cam"}
    assert {t for t, p in got if p["schema"] == "edge_rt.health"} == {"$health"}, "health keeps its one topic"
    for _, payload in got:
        validate(payload)
        assert payload["box"] == "yard-01" and payload["source"] == "cam"
    assert "box yard-01, topics yard-01/SOURCE" in err


def test_an_unnamed_box_keeps_plain_source_topics_and_names_itself_by_hostname(tmp_path: Path) -> None:
    got, err = _run(tmp_path)
    assert {t for t, p in got if not t.startswith("$")} == {"cam"}
    for _, payload in got:
        validate(payload)
        assert payload["box"] == default_box_name()
    assert f"box {default_box_name()}, topics SOURCE" in err
