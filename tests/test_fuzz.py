"""Fuzzing the two readers of untrusted input: the client's message decoder and the config loader.

The contract: every input is either accepted (a typed message, a RunConfig that keeps its invariants)
or refused with the library's own error, whose message is one short line. `Subscriber._parse` and
`parse_message` raise only MalformedMessage; `decode` raises only ValueError (MalformedMessage is
one); `load_yaml` only ConfigError; `build_run_config` only EdgeRtError. Any other exception, or an
accepted value that breaks an invariant, fails the test with the input that caused it.

The examples are derandomized and no example database is kept, so CI runs the same inputs each time.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import msgpack
import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from edge_rt.camera.sources import SourceKind
from edge_rt.client import DetectionMessage, EndOfStream, MalformedMessage, Subscriber, parse_message
from edge_rt.config import RunConfig, build_run_config, load_yaml
from edge_rt.errors import ConfigError, EdgeRtError
from edge_rt.wire.schema import DETECTIONS, ENCODINGS, EOS, VERSION, decode, encode, is_box_name
from edge_rt.wire.security import endpoint_host, is_local_endpoint, split_publish

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")
CLIP = "@clip"  # stands for a real file, written once per module (parse_source checks that files exist)


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text.strip(), f"{type(exc).__name__} with an empty message"
    assert "\n" not in text and "\r" not in text, f"{type(exc).__name__} message spans lines: {text!r}"
    assert len(text) < 1000, f"{type(exc).__name__} message of {len(text)} characters: {text[:200]!r}..."
    return text


# --- values -----------------------------------------------------------------------------------------

utf8_text = st.text(st.characters(codec="utf-8"), max_size=24)  # encodable by orjson and msgpack
finite = st.floats(allow_nan=False, allow_infinity=False)
u63 = st.integers(0, 2**63 - 1)
NASTY: list[Any] = [
    None, True, False, 0, -1, 1.5, 2**63, 2**64, -(2**63) - 1, 10**400, math.nan, math.inf, -math.inf, -0.0,
    "", " ", "\n", "x" * 300, "\ud800", b"\xff", [], {}, [[[[[]]]]], {"a": {"b": [None]}}, [0, 0, 0], [0, 0, 0, 0, 0],
]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12), st.binary(max_size=12), st.sampled_from(NASTY)
)
json_like = st.recursive(
    scalars, lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)), max_leaves=24
)

# --- messages ---------------------------------------------------------------------------------------

source_names = st.from_regex(r"[A-Za-z0-9_.\-]{1,12}", fullmatch=True)
box_names = st.from_regex(r"[A-Za-z0-9_.\-]{1,20}", fullmatch=True)
detections = st.fixed_dictionaries(
    {"cls": st.integers(0, 10**6), "label": utf8_text, "conf": st.floats(0, 1), "box": st.lists(finite, min_size=4, max_size=4)}
)
common = {
    "version": st.just(VERSION),
    "box": box_names,
    "session": st.text("0123456789abcdef", min_size=32, max_size=32),
    "source": source_names,
    "seq": u63,
}
detection_messages = st.fixed_dictionaries(
    {
        "schema": st.just(DETECTIONS),
        **common,
        "frame_index": u63,
        "width": st.integers(1, 8192),
        "height": st.integers(1, 8192),
        "model": utf8_text,
        "batch_size": st.integers(1, 64),
        "timestamps": st.dictionaries(st.sampled_from(["capture_ns", "batch_ns", "inference_start_ns", "inference_end_ns", "publish_ns"]), u63),
        "latency_ms": st.dictionaries(
            st.sampled_from(["wait", "preprocess", "queue", "inference", "postprocess", "publish", "total"]), st.floats(0, 1e6)
        ),
        "detections": st.lists(detections, max_size=6),
    }
)
eos_messages = st.fixed_dictionaries(
    {"schema": st.just(EOS), **common, "frames": u63, "reason": st.sampled_from(["end of file", "shutdown"]) | utf8_text,
     "timestamps": st.fixed_dictionaries({"publish_ns": u63})}
)
# The $health message the publisher is gaining; spelled out here so that its parser is fuzzed too.
health_messages = st.fixed_dictionaries(
    {"schema": st.just("edge_rt.health"), **common, "event": st.sampled_from(["change", "heartbeat", "snapshot"]),
     "state": st.sampled_from(["starting", "online", "stalled", "reconnecting", "offline", "stopped"]),
     "previous": st.none() | st.just("online"), "reason": utf8_text, "since_ns": u63, "ts_ns": u63,
     "counters": st.dictionaries(utf8_text, u63, max_size=3)}
)
valid_messages = st.one_of(detection_messages, eos_messages)


def _slots(message: dict[str, Any]) -> list[list[tuple[Any, Any]]]:
    """Where a mutation may hit, by level (top, timestamps and friends, detections, boxes), so that each
    level is hit about as often however many top-level keys there are."""
    levels: list[list[tuple[Any, Any]]] = [[(message, k) for k in message], [], [], []]
    for inner in ("timestamps", "latency_ms", "counters"):
        if isinstance(message.get(inner), dict):
            levels[1] += [(message[inner], k) for k in message[inner]]
    dets = message.get("detections")
    for det in dets if isinstance(dets, list) else []:
        if isinstance(det, dict):
            levels[2] += [(det, k) for k in det]
            box = det.get("box")
            levels[3] += [(box, i) for i in range(len(box))] if isinstance(box, list) else []
    # Hypothesis leans towards the first choice; make that the deepest level and the top level's last key.
    levels[0].reverse()
    return [level for level in reversed(levels) if level]


@st.composite
def near_valid_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A valid message with one or two fields dropped, retyped or replaced by garbage."""
    message = draw(st.one_of(detection_messages, eos_messages, health_messages))
    for _ in range(draw(st.integers(1, 2))):
        levels = _slots(message)
        if not levels:
            break
        container, key = draw(st.sampled_from(draw(st.sampled_from(levels))))
        if draw(st.booleans()):
            del container[key]
        else:
            container[key] = draw(st.sampled_from(NASTY) | json_like)
    return message


def _wire(message: Any, encoding: str) -> bytes:
    """What a broken or hostile publisher might send: msgpack where it can carry the values, else lax JSON
    (NaN, Infinity, integers of any size, lone surrogates as escapes), which a strict decoder must refuse."""
    if encoding == "msgpack":
        try:
            return msgpack.packb(message, use_bin_type=True)  # type: ignore[no-any-return]
        except (OverflowError, TypeError, ValueError):
            pass
    return json.dumps(message, default=repr).encode()


def _parse_or_refuse(topic: str, parts: list[bytes]) -> Any:
    try:
        msg = Subscriber._parse(topic, parts)
    except MalformedMessage as exc:
        event("refused: " + _one_line(exc).partition(":")[0])
        return None
    event(f"accepted: {type(msg).__name__}")
    return msg


def _topic_for(message: Any, boxed: bool = False) -> str:
    """The topic a publisher would use: `$health`, `SOURCE`, or `BOX/SOURCE` for a box run with --name."""
    if isinstance(message, dict) and message.get("schema") == "edge_rt.health":
        return "$health"
    source = message.get("source") if isinstance(message, dict) else None
    source = source if isinstance(source, str) else "cam0"
    box = message.get("box") if isinstance(message, dict) else None
    return f"{box}/{source}" if boxed and isinstance(box, str) else source


@FUZZ
@given(st.binary(max_size=256) | st.binary(max_size=64).map(lambda b: b"{" + b) | st.binary(max_size=64).map(lambda b: b"\x85" + b))
@example(b"")
@example(b"{" * 5000)
@example(b"\x91" * 5000)  # a msgpack array nested 5000 deep
@example(b"\xdf\xff\xff\xff\xff")  # a map that claims 4 billion entries
def test_decode_refuses_arbitrary_bytes_with_value_error(payload: bytes) -> None:
    try:
        obj = decode(payload)
    except ValueError:  # decode's only failure (msgpack's may have no message): _parse wraps it in MalformedMessage
        return
    assert isinstance(obj, dict)


@FUZZ
@given(st.text(max_size=12), st.tuples(st.binary(max_size=8), st.binary(max_size=128)).map(list) | st.lists(st.binary(max_size=16), max_size=4))
def test_parse_takes_any_frames(topic: str, parts: list[bytes]) -> None:
    _parse_or_refuse(topic, parts)


@FUZZ
@given(
    json_like | st.dictionaries(st.sampled_from(["schema", "version", "session", "source", "seq", "detections"]) | st.text(max_size=4), json_like),
    st.sampled_from(ENCODINGS),
    st.text(max_size=8),
)
def test_parse_takes_any_decodable_payload(obj: Any, encoding: str, topic: str) -> None:
    _parse_or_refuse(topic, [topic.encode("utf-8", "surrogatepass"), _wire(obj, encoding)])


def _check_message(msg: Any) -> None:
    """What a subscriber may rely on in an accepted message."""
    assert isinstance(msg.seq, int) and not isinstance(msg.seq, bool) and isinstance(msg.source, str)
    assert msg.box is None or is_box_name(msg.box), f"box {msg.box!r}"
    if isinstance(msg, DetectionMessage):
        assert not any(isinstance(d["conf"], bool) for d in msg.raw["detections"]), "a bool taken for a confidence"
        for d in msg.detections:
            assert isinstance(d.conf, float) and 0 <= d.conf <= 1, d
            assert len(d.box) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in d.box), d
            assert all(isinstance(v, int) or math.isfinite(v) for v in d.box), d


@FUZZ
@given(near_valid_messages(), st.sampled_from(ENCODINGS), st.booleans())
def test_parse_takes_near_valid_messages(message: dict[str, Any], encoding: str, boxed: bool) -> None:
    topic = _topic_for(message, boxed)
    msg = _parse_or_refuse(topic, [topic.encode("utf-8", "surrogatepass"), _wire(message, encoding)])
    if msg is not None:
        _check_message(msg)


def _detection_message(**detection: Any) -> dict[str, Any]:
    return {"schema": DETECTIONS, "version": VERSION, "box": "b", "session": "0" * 32, "source": "cam0", "seq": 0, "frame_index": 0, "width": 64,
            "height": 48, "model": "m.onnx", "batch_size": 1, "timestamps": {}, "latency_ms": {},
            "detections": [{"cls": 0, "label": "person", "conf": 0.5, "box": [0.0, 0.0, 1.0, 1.0], **detection}]}


@FUZZ
@given(near_valid_messages() | json_like)
@example(_detection_message(conf=10**400))  # float() of it overflows
@example(_detection_message(conf=True))  # a bool is not a number (the schema says so; bool for int is refused)
@example(_detection_message(box=[0.0, math.nan, 1.0, math.inf]))  # msgpack carries NaN; a box of NaN is no box
@example(_detection_message(box=[False, 0, True, 1]))
@example(None)
@example(0)
@example(b"schema")
@example("schema")
def test_parse_message_takes_any_value(obj: Any) -> None:
    """Python values, not wire bytes: what a caller may hand it after decoding a payload its own way, so
    integers beyond 64 bits, NaN, bytes and values that are not objects at all."""
    try:
        msg = parse_message(obj)
    except MalformedMessage as exc:
        _one_line(exc)
    else:
        assert msg.raw is obj
        _check_message(msg)


@FUZZ
@given(valid_messages, st.sampled_from(ENCODINGS), st.booleans())
def test_valid_messages_round_trip(message: dict[str, Any], encoding: str, boxed: bool) -> None:
    topic = _topic_for(message, boxed)
    msg = Subscriber._parse(topic, [topic.encode(), encode(message, encoding)])
    assert msg.raw == message
    assert (msg.box, msg.session, msg.source, msg.seq) == (message["box"], message["session"], message["source"], message["seq"])
    if message["schema"] == EOS:
        assert isinstance(msg, EndOfStream)
        assert (msg.frames, msg.reason) == (message["frames"], message["reason"])
        return
    assert isinstance(msg, DetectionMessage)
    assert (msg.frame_index, msg.width, msg.height, msg.model, msg.batch_size) == tuple(
        message[k] for k in ("frame_index", "width", "height", "model", "batch_size")
    )
    assert msg.timestamps == message["timestamps"] and msg.latency_ms == message["latency_ms"]
    got = [(d.cls, d.label, d.conf, list(d.box)) for d in msg.detections]
    assert got == [(d["cls"], d["label"], d["conf"], d["box"]) for d in message["detections"]]


# --- config -----------------------------------------------------------------------------------------

FLOAT_KEYS = ("conf", "iou", "max_wait_ms", "await_timeout", "stall_timeout", "open_timeout", "reconnect_max", "stats_interval", "engine_timeout", "collect_interval")
INT_KEYS = ("max_det", "imgsz", "max_batch", "await_subscribers", "threads", "metrics_port", "collect_max")
CHOICES = {
    "encoding": ["json", "msgpack"],
    "device": ["auto", "cpu", "cuda", "tensorrt", "openvino", "openvino:GPU"],
    "engine_hint": ["auto", "latency", "throughput"],
    "engine_precision": ["auto", "f32", "bf16", "f16"],
    "log_level": ["debug", "info", "warning", "error"],
    "log_format": ["text", "json"],
}
STRING_VALUES = {
    "model": ["m.onnx", "models/yolo11n.engine"],
    "publish": [
        "tcp://127.0.0.1:5555", "ipc:///tmp/edge.sock", "inproc://x", "tcp://*:5555", "tcp://[::1]:5", "tcp://10.0.0.1:1",
        "connect:tcp://127.0.0.1:5556", "connect:tcp://broker.example:5556", "connect:tcp://*:5556", "connect:", "connect:x",
        "bind:tcp://1.2.3.4:5", "tcp://", "://x", "1tcp://x:1",
    ],  # fmt: skip
    "curve_secret_key": ["keys/box.key_secret"],
    "curve_allow": ["keys/clients"],
    "curve_server_key": ["keys/broker.key"],
    "metrics_addr": ["127.0.0.1", "0.0.0.0"],
    "collect": ["hard", "/data/hard"],
    "name": ["yard-01", "node-7.fleet.example", "a/b", "$health", "a b", "", "x" * 254, "tab\tname", "caf\u00e9"],
}
nasty = st.sampled_from(NASTY) | json_like


def _value_for(key: str) -> st.SearchStrategy[Any]:
    """Mostly values of the right kind (in range or near it), sometimes anything at all."""
    if key in FLOAT_KEYS:
        good: st.SearchStrategy[Any] = st.floats(-1, 2) | st.floats() | st.integers(-5, 10**400)
    elif key in INT_KEYS:
        good = st.none() | st.integers(-2, 70000) | st.integers() | st.floats(0, 100)
    elif key in CHOICES:
        good = st.sampled_from(CHOICES[key])
    elif key in STRING_VALUES:
        good = st.sampled_from(STRING_VALUES[key]) | st.text(max_size=12)
    elif key in ("insecure", "agnostic_nms", "loop"):
        good = st.booleans()
    elif key == "classes":
        good = st.none() | st.lists(st.integers(-1, 90) | st.sampled_from(["3", " 7 ", "\u00b2", "\u0661", "-1", "x"]), max_size=4) | st.integers(-1, 90)
    elif key == "fps":
        good = st.none() | st.floats(-1, 120) | st.floats() | st.integers(-1, 10**400)
    elif key == "sources":
        good = source_lists
    elif key == "track":
        good = st.none() | st.booleans() | st.fixed_dictionaries({}, optional={"lost_s": st.floats(-1, 10) | nasty, "low_conf": st.floats(-1, 2) | nasty})
    elif key == "record":
        times = st.floats(-1, 700) | nasty
        good = (
            st.none()
            | st.booleans()
            | st.sampled_from(["clips", ""])
            | st.fixed_dictionaries(
                {},
                optional={
                    "dir": st.sampled_from(["clips"]) | nasty,
                    "pre_s": times,
                    "post_s": times,
                    "max_clip_s": times,
                    "keep_days": times,
                    "keep_mb": times,
                    "events": st.lists(st.sampled_from(["start", "enter", "stop", ""]), max_size=3) | nasty,
                },
            )
        )
    elif key == "collect_conf":
        good = st.sampled_from(["0.3,0.6", " 0.3 , 0.6 ", "0.9,0.2", "0.5", "nan,1", [0.3, 0.6]]) | st.lists(st.floats() | st.text(max_size=4), max_size=3)
    else:
        raise AssertionError(key)
    return st.one_of(good, good, good, nasty)


SOURCE_URIS = [
    "0", "7", "/dev/video0", "rtsp://10.0.0.2:554/live", "rtsp://user:pw@cam/x", "rtsp://", "rtsp:// x", "http://h/x.mjpg",
    "synthetic://64x48?fps=10", "synthetic://64x48", "synthetic://1x1", "synthetic://64x48?fps=nan", "synthetic://64x48?frames=0.5",
    "synthetic://64x48?fps=" + "9" * 400, "videotestsrc ! appsink", CLIP, "missing.mp4", "~nosuchuser/a.mp4", "\u00b2", "\x00", "",
]
GOOD_URIS = ["0", "7", "/dev/video0", "rtsp://10.0.0.2:554/live", "http://h/x.mjpg", "synthetic://64x48?fps=10", "videotestsrc ! appsink", CLIP]
source_uris = st.sampled_from(SOURCE_URIS) | st.text(max_size=16)
source_strings = source_uris | st.tuples(source_names | st.text(max_size=6), source_uris).map("=".join)
points = st.lists(st.lists(st.floats(-0.5, 1.5) | nasty, max_size=3) | nasty, max_size=5)
region_body = points | st.fixed_dictionaries({"points": points}, optional={k: nasty for k in ("classes", "loiter_s", "anchor", "margin", "inertia")})
regions = st.dictionaries(st.text(max_size=5) | st.integers(0, 3), region_body | nasty, max_size=3) | nasty
source_dicts = st.fixed_dictionaries(
    {"uri": source_uris | st.integers(-1, 9) | nasty},
    optional={"name": source_names | nasty, "fps": st.floats(0, 60) | nasty, "loop": st.booleans() | nasty,
              "track": st.booleans() | nasty, "zones": regions, "lines": regions},
) | st.dictionaries(st.sampled_from(["uri", "name", "fps", "loop", "port", "zones", "lines", "track", 1]), nasty, max_size=4)
source_entries = st.one_of(source_strings, source_strings, source_dicts, st.integers(-1, 9), nasty)
source_lists = st.lists(source_entries, min_size=1, max_size=3) | source_entries
good_sources = st.lists(
    st.one_of(
        st.sampled_from(GOOD_URIS),
        st.integers(0, 9),
        st.tuples(source_names, st.sampled_from(GOOD_URIS)).map("=".join),
        st.fixed_dictionaries({"uri": st.sampled_from(GOOD_URIS)}, optional={"name": source_names, "fps": st.floats(1, 60)}),
    ),
    min_size=1,
    max_size=3,
)
GOOD: dict[str, st.SearchStrategy[Any]] = {
    **{k: st.floats(0, 1) for k in ("conf", "iou")},
    **{k: st.floats(0.001, 1e6) | st.integers(1, 1000) for k in FLOAT_KEYS if k not in ("conf", "iou")},
    "max_det": st.integers(1, 1000),
    "imgsz": st.none() | st.integers(32, 4096),
    "max_batch": st.none() | st.integers(1, 64),
    "threads": st.none() | st.integers(1, 64),
    "await_subscribers": st.integers(0, 10),
    "metrics_port": st.none() | st.integers(0, 65535),
    **{k: st.sampled_from(v) for k, v in CHOICES.items()},
    "model": st.sampled_from(STRING_VALUES["model"]),
    "publish": st.sampled_from(STRING_VALUES["publish"][:5] + STRING_VALUES["publish"][6:7]),
    "metrics_addr": st.sampled_from(STRING_VALUES["metrics_addr"]),
    **{k: st.booleans() for k in ("insecure", "agnostic_nms", "loop")},
    "classes": st.none() | st.lists(st.integers(0, 90), max_size=4),
    "fps": st.none() | st.floats(1, 120),
    "name": st.none() | box_names,
}
KNOWN = tuple(sorted(f.name for f in fields(RunConfig) if f.name not in ("tracking", "recording"))) + ("fps", "loop", "track", "record")


@st.composite
def config_values(draw: st.DrawFn, unknown_keys: bool = True) -> dict[str, Any]:
    """A valid config (a model, sources and a few more options in range) with zero to three keys then
    dropped, set to a value of any kind, or added though they do not exist."""
    values = {"model": draw(GOOD["model"]), "sources": draw(good_sources)}
    values.update((k, draw(GOOD[k])) for k in draw(st.lists(st.sampled_from(sorted(GOOD)), max_size=5)))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(("sources", *KNOWN)))
        how = draw(st.sampled_from(["set", "set", "set", "drop", "unknown" if unknown_keys else "set"]))
        if how == "drop":
            values.pop(key, None)
        elif how == "unknown":
            values[draw(st.text(max_size=8))] = draw(nasty)
        else:
            values[key] = draw(_value_for(key))
    return values


@FUZZ
@given(source_lists, st.none() | st.floats(0, 60) | nasty, st.booleans())
@example("~nosuchuser/a.mp4", None, False)  # Path.expanduser() raises RuntimeError: no such user
@example("x" * 300, None, False)  # os.stat() raises OSError: file name too long
@example("\u00b2", None, False)  # '²'.isdigit() but no camera index
@example({"uri": "0", "name": "cam\n"}, None, False)  # '$' in the name pattern matches before a trailing newline
@example("a\n=0", None, False)
def test_any_sources(fuzz_dir: Path, sources: Any, fps: Any, loop: bool) -> None:
    clip = str(fuzz_dir / "clip.mp4")
    _build_or_refuse(lambda: build_run_config({"model": "m.onnx", "sources": _resolve(sources, clip), "fps": fps, "loop": loop}, {}))


def _resolve(value: Any, clip: str) -> Any:
    if isinstance(value, str):
        return value.replace(CLIP, clip)
    if isinstance(value, list):
        return [_resolve(v, clip) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, clip) for k, v in value.items()}
    return value


def _check_config(config: RunConfig) -> None:
    """What the rest of the run relies on once a config was accepted."""
    for key in FLOAT_KEYS:
        v = getattr(config, key)
        assert isinstance(v, float) and math.isfinite(v) and v >= 0, f"{key}={v!r}"
    assert 0 <= config.conf <= 1 and 0 <= config.iou <= 1
    for key in INT_KEYS:
        v = getattr(config, key)
        assert v is None or (isinstance(v, int) and not isinstance(v, bool)), f"{key}={v!r}"
    assert config.max_det >= 1 and (config.imgsz is None or config.imgsz >= 32)
    assert config.metrics_port is None or 0 <= config.metrics_port <= 65535
    assert config.classes is None or all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in config.classes)
    for key, options in CHOICES.items():
        assert getattr(config, key) in options
    assert isinstance(config.model, str) and config.model.strip() and isinstance(config.publish, str)
    address, connect = split_publish(config.publish)
    assert "://" in address and (not connect or endpoint_host(address) != "*")
    if connect:  # the broker's CURVE client: its key and the broker's, never an allow-list
        assert config.curve_allow is None and (config.curve_secret_key is None) == (config.curve_server_key is None)
    else:  # a CURVE server: its key and an allow-list
        assert config.curve_server_key is None and (config.curve_secret_key is None) == (config.curve_allow is None)
    assert config.insecure or config.curve_secret_key is not None or is_local_endpoint(address)
    assert config.name is None or is_box_name(config.name), f"name={config.name!r}"
    assert is_box_name(config.box) and config.box_topics == (config.name is not None)
    assert (config.collect is None) == (config.collect_conf is None)
    assert config.collect_conf is None or config.conf < config.collect_conf[1] <= 1 and 0 <= config.collect_conf[0] < config.collect_conf[1]
    assert config.sources
    for src in config.sources:
        assert NAME_RE.fullmatch(src.name), f"source name {src.name!r} is not a valid topic"
        assert src.fps is None or (math.isfinite(src.fps) and src.fps > 0), f"source {src.name}: fps {src.fps!r}"
        assert not src.loop or src.kind is SourceKind.FILE
        if src.kind is SourceKind.CAMERA:
            assert src.uri.isascii() and src.uri.isdigit(), f"camera index {src.uri!r}"
        if src.kind is SourceKind.FILE:
            assert Path(src.uri).is_file()


def _build_or_refuse(build: Callable[[], RunConfig]) -> RunConfig | None:
    try:
        config = build()
    except EdgeRtError as exc:
        event(f"refused: {type(exc).__name__}")
        _one_line(exc)
        return None
    event("accepted")
    _check_config(config)
    return config


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fuzz")
    (d / "clip.mp4").write_bytes(b"\x00" * 16)  # only its existence is checked before the run opens it
    return d


@FUZZ
@given(config_values(), st.sampled_from([{}, {"model": "m.onnx"}, {"sources": ["0"]}, {"conf": 0.5, "fps": None}]) | config_values(False))
def test_build_run_config_takes_any_values(fuzz_dir: Path, file_values: dict[str, Any], cli: dict[str, Any]) -> None:
    clip = str(fuzz_dir / "clip.mp4")
    _build_or_refuse(lambda: build_run_config(_resolve(file_values, clip), _resolve(cli, clip), origin="config 'fuzz.yaml'"))


YAML_TOKENS = [
    "[", "]", "{", "}", ", ", ":", ": ", "- ", "\n", "  ", "? ", "&a ", "*a", "*b", "<<: *a", "!!binary ", "!!int ", "!!float ", "!!bool ",
    "!!str ", "!!set ", "!!omap ", "!!timestamp ", "!!python/object/apply:os.system ", "!foo ", "%YAML 1.1\n", "---\n", "...\n",
    "'", '"', "\\x", "\\u12", "# c", "|", ">", "2001-13-45", "2001-01-01 00:00:00 +99:00", "1_000", "0x1F", "0o17", "0b2",
    "190:20:30", ".nan", ".inf", "-.inf", "~", "null", "yes", "on", "1e400", "9" * 400, "9" * 5000, "model", "sources",
    "conf", "max-det", "classes", "uri", "\t", "\x00", "\ufeff", "\x85", "é", "\U0001f600",
]
yaml_texts = st.one_of(
    st.lists(st.sampled_from(YAML_TOKENS) | st.text(max_size=3), max_size=40).map("".join),
    st.text(max_size=80),
    st.tuples(st.integers(1, 2000), st.sampled_from(["[", "{a: ", "- ", "a:\n "])).map(lambda t: t[1] * t[0]),
)
yaml_documents = st.one_of(
    yaml_texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=80),
    config_values().map(lambda v: yaml.safe_dump(v).encode()),  # valid YAML, values of any type
)


@FUZZ
@given(yaml_documents)
@example(b"model: m.onnx\nsources: [0]\nclasses: [\xc2\xb2]\n")  # '²': isdigit() but not a number
@example(b"model: m.onnx\nsources: [0]\nstamp: 2001-13-45\n")  # PyYAML's date constructor raises ValueError
@example(b"a: " + b"[" * 3000)  # RecursionError in PyYAML's composer
@example(b"a: !!bool maybe\nb: !!float ''\nc: !!timestamp x\n")  # KeyError, IndexError, AttributeError in its constructors
@example(b"!" + b"9" * 5000 + b" x\n")  # a problem that quotes a 5000-character tag
def test_load_yaml_takes_any_file(fuzz_dir: Path, data: bytes) -> None:
    path = fuzz_dir / "fuzz.yaml"
    path.write_bytes(data.replace(CLIP.encode(), str(fuzz_dir / "clip.mp4").encode()))
    try:
        values = load_yaml(path)
    except ConfigError as exc:
        assert str(path) in _one_line(exc), "the error names the file"
        return
    assert isinstance(values, dict) and all(isinstance(k, str) for k in values)
    _build_or_refuse(lambda: build_run_config(values, {}, origin=f"config {str(path)!r}"))
