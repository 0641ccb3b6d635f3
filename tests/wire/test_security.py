"""Security for unattended boxes: CURVE keys and the ZAP allow-list over real sockets, the loopback
default, ZeroMQ limits that protect the publisher, and camera passwords kept out of every line."""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import stat
import threading
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from edge_rt.client import Subscriber
from edge_rt.errors import ConfigError, PublishError
from edge_rt.ops.redact import RedactingFilter, redact_url
from edge_rt.wire.broker import BrokerKeys
from edge_rt.wire.publish import Publisher, ZmqSettings
from edge_rt.wire.security import ClientKeys, KeyPair, ServerKeys, check_exposure, is_local_endpoint
from tests.conftest import free_port, write_clip
from tests.helpers import assert_clean_failure, collect, detections_of, run_cli, start_cli

from .test_publish import drain, message, running_broker, wait_until

pytestmark = pytest.mark.timeout(60)


# --- redaction -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("rtsp://user:pass@192.168.1.20:554/stream1", "rtsp://user:***@192.168.1.20:554/stream1"),
        ("rtsp://user@cam/live", "rtsp://user@cam/live"),  # no password: nothing to hide
        ("rtsp://:secret@cam/live", "rtsp://:***@cam/live"),  # no user
        ("rtsp://cam:554/live", "rtsp://cam:554/live"),
        ("rtsp://admin:pw@[fe80::1%25eth0]:554/s", "rtsp://admin:***@[fe80::1%25eth0]:554/s"),
        ("rtsp://[2001:db8::7]:554/s", "rtsp://[2001:db8::7]:554/s"),
        ("rtsp://cam/path/with@at?x=a@b", "rtsp://cam/path/with@at?x=a@b"),  # '@' in the path is not userinfo
        ("rtsp://u:p@cam/a@b", "rtsp://u:***@cam/a@b"),
        ("rtsp://u:p@ss:w@rd@cam/x", "rtsp://u:***@cam/x"),  # unescaped '@' and ':' in the password
        ("rtsp://u:pa#ss?w!@cam/x", "rtsp://u:***@cam/x"),  # '#', '?' and '!' in the password
        ("RTSPS://u:p@cam", "RTSPS://u:***@cam"),
        ("http://cam/cgi-bin/mjpg?user=admin&password=hunter2&ch=1", "http://cam/cgi-bin/mjpg?user=admin&password=***&ch=1"),
        ("http://cam/snap?PWD=x", "http://cam/snap?PWD=***"),
        (
            "rtspsrc location=rtsp://u:p@10.0.0.5/s latency=0 ! rtph264depay ! avdec_h264 ! videoconvert ! appsink",
            "rtspsrc location=rtsp://u:***@10.0.0.5/s latency=0 ! rtph264depay ! avdec_h264 ! videoconvert ! appsink",
        ),
        (
            'rtspsrc location="rtsp://u:p@h" ! appsink',
            'rtspsrc location="rtsp://u:***@h" ! appsink',
        ),
        (
            "rtspsrc location=rtsp://h/s user-id=admin user-pw=hunter2 ! appsink",
            "rtspsrc location=rtsp://h/s user-id=admin user-pw=*** ! appsink",
        ),
        ('souphttpsrc location=http://h/v proxy-pw="a b" ! appsink', 'souphttpsrc location=http://h/v proxy-pw="***" ! appsink'),
        ("source 'door': cannot open 'rtsp://a:b@c/x'", "source 'door': cannot open 'rtsp://a:***@c/x'"),
        ("front=rtsp://a:b@c one=rtsp://d:e@f", "front=rtsp://a:***@c one=rtsp://d:***@f"),
        ("/videos/me@home.mp4", "/videos/me@home.mp4"),
        ("0", "0"),
        ("/dev/video0", "/dev/video0"),
        ("tcp://*:5555", "tcp://*:5555"),
    ],
)
def test_redact_url(text: str, expected: str) -> None:
    assert redact_url(text) == expected
    assert redact_url(expected) == expected, "redacting twice changes nothing"


def test_log_filter_redacts_args_messages_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("edge_rt.test_redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("source %s: cannot open %r", "door", "rtsp://admin:hunter2@cam/x")
        logger.warning("plain rtsp://admin:hunter2@cam/x 100%")
        try:
            raise OSError("rtsp://admin:hunter2@cam/x refused")
        except OSError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "hunter2" not in out
    assert out.count("admin:***@cam/x") == 4 and "100%" in out


# --- exposure --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint,local",
    [
        ("tcp://127.0.0.1:5555", True),
        ("tcp://127.10.0.3:5555", True),
        ("tcp://localhost:5555", True),
        ("tcp://[::1]:5555", True),
        ("ipc:///tmp/edge.sock", True),
        ("inproc://x", True),
        ("tcp://*:5555", False),
        ("tcp://0.0.0.0:5555", False),
        ("tcp://[::]:5555", False),
        ("tcp://192.168.1.20:5555", False),
        ("tcp://edge-box:5555", False),
        ("tcp://eth0:5555", False),
        ("epgm://eth0;239.192.1.1:5555", False),
    ],
)
def test_which_endpoints_stay_on_this_machine(endpoint: str, local: bool) -> None:
    assert is_local_endpoint(endpoint) is local
    if local:
        check_exposure(endpoint, curve=False, insecure=False)
    else:
        with pytest.raises(ConfigError, match=r"--curve-secret-key FILE --curve-allow DIR.*or --insecure"):
            check_exposure(endpoint, curve=False, insecure=False)
        check_exposure(endpoint, curve=True, insecure=False)
        check_exposure(endpoint, curve=False, insecure=True)


@pytest.mark.parametrize(
    "endpoint,local",
    [
        ("connect:tcp://127.0.0.1:5556", True),
        ("connect:tcp://localhost:5556", True),
        ("connect:ipc:///tmp/broker.sock", True),
        ("connect:tcp://192.168.1.5:5556", False),
        ("connect:tcp://edge-rt-broker.edge-rt.svc:5556", False),
    ],
)
def test_a_box_that_connects_to_a_broker_elsewhere_needs_curve_or_insecure_too(endpoint: str, local: bool) -> None:
    if local:
        check_exposure(endpoint, curve=False, insecure=False)
        return
    with pytest.raises(ConfigError, match=r"--curve-secret-key FILE .*--curve-server-key FILE .*or --insecure"):
        check_exposure(endpoint, curve=False, insecure=False)
    check_exposure(endpoint, curve=True, insecure=False)
    check_exposure(endpoint, curve=False, insecure=True)


# --- keys ------------------------------------------------------------------------------------------


def test_keys_command_writes_a_zmq_certificate_pair(tmp_path: Path) -> None:
    d = tmp_path / "keys"
    proc = run_cli("keys", "box", "--dir", str(d))
    assert proc.returncode == 0, proc.stderr
    public, secret = d / "box.key", d / "box.key_secret"
    assert proc.stdout.split() == [str(public), str(secret)]
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    pub_key, no_secret = zmq.auth.load_certificate(public)
    pub_again, sec_key = zmq.auth.load_certificate(secret)
    assert no_secret is None and sec_key is not None and pub_key == pub_again
    assert zmq.curve_public(sec_key) == pub_key, "the two files are one key pair"
    assert sorted(p.name for p in d.iterdir()) == ["box.key", "box.key_secret"], "no temporary files left behind"

    again = run_cli("keys", "box", "--dir", str(d))
    assert_clean_failure(again, "already exists; pass --force")
    assert zmq.auth.load_certificate(secret) == (pub_key, sec_key), "a refused run leaves the pair alone"

    forced = run_cli("keys", "box", "--dir", str(d), "--force")
    assert forced.returncode == 0, forced.stderr
    new_pub, new_sec = zmq.auth.load_certificate(secret)
    assert new_pub != pub_key and zmq.auth.load_certificate(public)[0] == new_pub
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600

    assert_clean_failure(run_cli("keys", "../escape", "--dir", str(d)), "key name '../escape'")


def _pair(d: Path, name: str) -> tuple[Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(d, name)
    return Path(public), Path(secret)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "make,expected",
    [
        (lambda t: (t / "nope.key_secret", _pair(t / "allow", "c")[0].parent), "no such file"),
        (lambda t: (_write(t / "junk.key_secret", "hello\n"), _pair(t / "allow", "c")[0].parent), "not a ZeroMQ certificate"),
        (lambda t: (_pair(t / "k", "box")[0], _pair(t / "allow", "c")[0].parent), "has no secret key (that is the public half; use box.key_secret)"),
        (
            lambda t: (_write(t / "short.key_secret", 'curve\n    public-key = "abc"\n    secret-key = "def"\n'), _pair(t / "allow", "c")[0].parent),
            "malformed key",
        ),
        (
            lambda t: (
                _write(t / "mixed.key_secret", f'curve\n    public-key = "{zmq.curve_keypair()[0].decode()}"\n    secret-key = "{zmq.curve_keypair()[1].decode()}"\n'),
                _pair(t / "allow", "c")[0].parent,
            ),
            "does not belong to its secret key",
        ),
        (lambda t: (_pair(t / "k", "box")[1], t / "missing"), "--curve-allow"),
        (lambda t: (_pair(t / "k", "box")[1], (t / "empty").mkdir() or t / "empty"), "no client public keys"),
        (lambda t: (_pair(t / "k", "box")[1], _write(t / "allow" / "bad.key", "garbage\n").parent), "bad.key"),
    ],
)
def test_bad_server_keys_are_one_config_error(make, expected: str, tmp_path: Path) -> None:
    secret, allow = make(tmp_path)
    with pytest.raises(ConfigError) as err:
        ServerKeys.load(secret, allow)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_client_keys_need_both_files(tmp_path: Path) -> None:
    server_pub, _ = _pair(tmp_path / "srv", "box")
    _, client_sec = _pair(tmp_path / "cli", "me")
    assert ClientKeys.from_options(None, None) is None
    with pytest.raises(ConfigError, match="--curve-secret-key is missing"):
        ClientKeys.from_options(server_pub, None)
    with pytest.raises(ConfigError, match="--curve-server-key is missing"):
        ClientKeys.from_options(None, client_sec)
    with pytest.raises(ConfigError, match="no such file"):
        Subscriber("tcp://127.0.0.1:1", curve_server_key=tmp_path / "none.key", curve_secret_key=client_sec)
    keys = ClientKeys.from_options(server_pub, client_sec)
    assert keys is not None and keys.server_public == zmq.auth.load_certificate(server_pub)[0]
    pair = KeyPair.load(client_sec)
    assert pair.secret.decode() not in repr(pair) + repr(keys), "a secret key never shows in a repr"


# --- CURVE with the ZAP allow-list, over real sockets ---------------------------------------------


class Monitor:
    """Collects a socket's monitor events (handshake succeeded / failed, disconnected)."""

    def __init__(self, sock: zmq.Socket) -> None:
        self.mon = sock.get_monitor_socket()
        self.events: list[int] = []

    def wait_for(self, event: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while event not in self.events:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.mon.poll(int(remaining * 1000) + 1):
                return event in self.events
            self.events.append(recv_monitor_message(self.mon)["event"])
        return True


def _raw_sub(ctx: zmq.Context, endpoint: str, subscribe: bytes = b"", **options: object) -> zmq.Socket:
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    for name, value in options.items():
        s.setsockopt(getattr(zmq, name.upper()), value)
    s.setsockopt(zmq.SUBSCRIBE, subscribe)
    return s


def _received(sock: zmq.Socket, wait_ms: int) -> int:
    n = 0
    while sock.poll(wait_ms):
        sock.recv_multipart()
        n += 1
    return n


def _auth_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if type(t).__name__ == "AuthenticationThread" and t.is_alive()]


def test_curve_publisher_serves_only_listed_clients(tmp_path: Path) -> None:
    _, box_secret = _pair(tmp_path / "box", "box")
    listed_pub, listed_sec = _pair(tmp_path / "clients", "viewer")
    allow = tmp_path / "allow"
    allow.mkdir()
    os.link(listed_pub, allow / "viewer.key")
    _, stranger_sec = _pair(tmp_path / "stranger", "stranger")  # a valid key pair, just not in the list
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    threads_before = len(_auth_threads())

    pub = Publisher(endpoint, curve=ServerKeys.load(box_secret, allow))
    ctx = zmq.Context()
    server_key = zmq.auth.load_certificate(tmp_path / "box" / "box.key")[0]
    stranger_public, stranger_secret = zmq.auth.load_certificate(stranger_sec)
    stranger = _raw_sub(ctx, endpoint, curve_serverkey=server_key, curve_publickey=stranger_public, curve_secretkey=stranger_secret)
    null = _raw_sub(ctx, endpoint)
    plain = _raw_sub(ctx, endpoint, plain_username=b"viewer", plain_password=b"guess")
    monitors = {name: Monitor(s) for name, s in (("stranger", stranger), ("null", null), ("plain", plain))}
    listed = None
    try:
        for s in (stranger, null, plain):
            s.connect(endpoint)
        listed = Subscriber(endpoint, curve_server_key=tmp_path / "box" / "box.key", curve_secret_key=listed_sec)
        assert pub.await_subscribers(1, 10), "the listed client never subscribed"
        # The ZAP handler, not just the mechanism, turned the stranger away; NULL and PLAIN fail the handshake.
        assert monitors["stranger"].wait_for(zmq.EVENT_HANDSHAKE_FAILED_AUTH, 10), monitors["stranger"].events
        for name in ("null", "plain"):
            assert not monitors[name].wait_for(zmq.EVENT_HANDSHAKE_SUCCEEDED, 1), f"{name} client completed a handshake"
        for i in range(20):  # spread over a second: a client let in late would still get most of them
            assert pub.publish("cam0", message(seq=i))
            time.sleep(0.05)
        got = [listed.receive(5000) for _ in range(20)]
        assert all(m is not None for m in got) and [m.seq for m in got if m] == list(range(20))
        for name, s in (("stranger", stranger), ("null", null), ("plain", plain)):
            assert _received(s, 300) == 0, f"the {name} client received messages"
        assert pub.poll_subscriptions(100) == 1, "only the listed client ever subscribed"
    finally:
        if listed is not None:
            listed.close()
        for m in monitors.values():
            m.mon.close(0)
        for s in (stranger, null, plain):
            s.close(0)
        ctx.term()
        pub.close()
    assert len(_auth_threads()) == threads_before, "the authenticator thread stops with the publisher"


def test_curve_refused_before_bind_leaves_nothing_behind(tmp_path: Path) -> None:
    _, box_secret = _pair(tmp_path / "box", "box")
    _pair(tmp_path / "allow", "viewer")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    holder = Publisher(endpoint)
    try:
        threads = len(_auth_threads())
        with pytest.raises(PublishError, match="already in use"):
            Publisher(endpoint, curve=ServerKeys.load(box_secret, tmp_path / "allow"))
        assert len(_auth_threads()) == threads
    finally:
        holder.close()


def test_a_box_publishes_to_a_curve_broker_as_its_client_and_an_unlisted_key_gets_in_once_listed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The box's connect: socket is the broker's CURVE client (its key pair, the broker's public key). A
    key the broker does not list is refused (ZeroMQ then gives that connection up for good); the box says
    so once and dials again, so listing its key and restarting the broker lets it in without touching it."""
    caplog.set_level(logging.INFO, logger="edge_rt.publish")
    broker_pub, broker_sec = _pair(tmp_path / "broker", "broker")
    _, box_sec = _pair(tmp_path / "made", "box1")
    late_pub, late_sec = _pair(tmp_path / "made", "late")
    _, viewer_sec = _pair(tmp_path / "made", "viewer")
    for name, folder in (("box1", "boxes"), ("viewer", "consumers")):
        (tmp_path / folder).mkdir()
        (tmp_path / "made" / f"{name}.key").rename(tmp_path / folder / f"{name}.key")
    front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    keys = BrokerKeys.load(broker_sec, tmp_path / "consumers", tmp_path / "boxes")
    quick = ZmqSettings(reconnect_ivl_max_ms=500, refused_retry_ms=500)
    box = Publisher(f"connect:{front}", settings=quick, curve=ClientKeys.load(broker_pub, box_sec))
    late = Publisher(f"connect:{front}", settings=quick, curve=ClientKeys.load(broker_pub, late_sec))
    viewer = Subscriber(back, curve_server_key=broker_pub, curve_secret_key=viewer_sec)
    try:
        with running_broker(front, back, keys):
            assert wait_until(lambda: box.poll_subscriptions() >= 1, 10, lambda: viewer.receive(10))
            for i in range(10):
                box.publish("box1/cam0", message(seq=i, box="box1"))
                late.publish("late/cam0", message(seq=i, box="late"))
            got = drain(viewer, 1.0)
            assert [(m.box, m.seq) for m in got] == [("box1", i) for i in range(10)], "only the listed box gets through"
            assert late.link is not None and not late.link.connected and late.link.dropped == 10
        late_pub.rename(tmp_path / "boxes" / "late.key")  # listed now: the broker reads its allow-list at start
        with running_broker(front, back, BrokerKeys.load(broker_sec, tmp_path / "consumers", tmp_path / "boxes")):
            assert wait_until(lambda: late.poll_subscriptions() >= 1, 10, lambda: viewer.receive(10)), "the box dialed again"
            late.publish("late/cam0", message(seq=10, box="late"))
            assert [(m.box, m.seq) for m in drain(viewer, 1.0)] == [("late", 10)]
    finally:
        viewer.close()
        box.close()
        late.close()
    refused = [r for r in caplog.records if "refused this box's CURVE key" in r.getMessage()]
    assert len(refused) == 1 and refused[0].levelname == "ERROR", [r.getMessage() for r in caplog.records]
    assert "--curve-allow-publishers" in refused[0].getMessage()


def test_curve_keys_of_the_wrong_side_are_refused(tmp_path: Path) -> None:
    public, secret = _pair(tmp_path / "k", "box")
    with pytest.raises(ConfigError, match="CURVE client: give --curve-server-key"):
        Publisher("connect:tcp://127.0.0.1:1", curve=ServerKeys.load(secret, tmp_path / "k"))
    with pytest.raises(ConfigError, match="CURVE server: give --curve-allow"):
        Publisher(f"tcp://127.0.0.1:{free_port()}", curve=ClientKeys.load(public, secret))


# --- ZeroMQ limits on the publisher socket ---------------------------------------------------------


# A SUB socket holding a multi-MB subscription crashes libzmq 4.3.5 when it is closed (its topic trie
# is freed recursively), so the peer that sends one runs in a process of its own and never closes.
_HOG = """
import os, sys, zmq
from zmq.utils.monitor import recv_monitor_message
ctx = zmq.Context()
hog = ctx.socket(zmq.SUB)
hog.setsockopt(zmq.RECONNECT_IVL, 10000)
hog.setsockopt(zmq.SUBSCRIBE, b"x" * (4 * 1024 * 1024))
mon = hog.get_monitor_socket()
hog.connect(sys.argv[1])
events = []
while mon.poll(10000) and zmq.EVENT_DISCONNECTED not in events:
    events.append(recv_monitor_message(mon)["event"])
print("disconnected" if zmq.EVENT_DISCONNECTED in events else f"still connected: {events}", flush=True)
os._exit(0)
"""


def test_oversized_subscription_disconnects_the_peer_but_not_others() -> None:
    import subprocess
    import sys

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(endpoint)  # max_message_bytes 64 KiB
    ctx = zmq.Context()
    wide = _raw_sub(ctx, endpoint, subscribe=b"cam0" + b"." * (60 * 1024))  # long, but under the limit
    normal = Subscriber(endpoint)
    try:
        wide.connect(endpoint)
        hog = subprocess.run([sys.executable, "-c", _HOG, endpoint], capture_output=True, text=True, timeout=30)
        assert hog.stdout.strip() == "disconnected", hog.stdout + hog.stderr
        assert pub.await_subscribers(2, 10), "the allowed subscriptions arrived"
        assert pub.poll_subscriptions(300) == 2, "the oversized one never reached us"
        big = message(detections=[{"cls": 0, "label": "x" * 200, "conf": 0.5, "box": [0, 0, 1, 1]}] * 1000)  # ~250 KB
        assert pub.publish("cam0", big)
        m = normal.receive(5000)
        assert m is not None and len(m.detections) == 1000, "outgoing messages are not capped"
    finally:
        wide.close(0)
        normal.close()
        ctx.term()
        pub.close()


def test_a_peer_that_never_handshakes_is_dropped() -> None:
    port = free_port()
    pub = Publisher(f"tcp://127.0.0.1:{port}", settings=ZmqSettings(handshake_ivl_ms=300))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.settimeout(5)
            t0 = time.monotonic()
            data = raw.recv(4096)  # the publisher's greeting
            while data:
                data = raw.recv(4096)  # ... then EOF once the handshake interval passed
            assert time.monotonic() - t0 < 3
    finally:
        pub.close()


def test_close_is_bounded_with_messages_queued_for_a_stuck_subscriber() -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(endpoint, settings=ZmqSettings(linger_ms=500))
    ctx = zmq.Context()
    stuck = _raw_sub(ctx, endpoint, rcvhwm=10)
    stuck.connect(endpoint)
    try:
        assert pub.await_subscribers(1, 10)
        big = message(detections=[{"cls": 0, "label": "x" * 200, "conf": 0.5, "box": [0, 0, 1, 1]}] * 50)
        for i in range(2000):
            pub.publish("cam0", {**big, "seq": i})
        t0 = time.monotonic()
        pub.close()
        assert time.monotonic() - t0 < 2.5, "close waited past LINGER"
    finally:
        stuck.close(0)
        ctx.term()


# --- the CLI end to end ----------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_run_with_curve_serves_listed_subscribers_only(onnx_static: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    allow = tmp_path / "allow"
    for name, where in (("box", keys), ("viewer", allow), ("console", allow), ("stranger", keys)):
        proc = run_cli("keys", name, "--dir", str(where))
        assert proc.returncode == 0, proc.stderr
    clip = write_clip(tmp_path / "clip.mp4", frames=6)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    box_key = keys / "box.key"
    with (
        Subscriber(endpoint, curve_server_key=box_key, curve_secret_key=allow / "viewer.key_secret") as viewer,
        Subscriber(endpoint, curve_server_key=box_key, curve_secret_key=keys / "stranger.key_secret") as stranger,
        Subscriber(endpoint) as null,
    ):
        console = start_cli(
            "subscribe", endpoint, "--until-eos", "--timeout", "60",
            "--curve-server-key", str(box_key), "--curve-secret-key", str(allow / "console.key_secret"),
        )
        run = start_cli(
            "run", "--model", str(onnx_static), "--source", f"door={clip}", "--device", "cpu", "--publish", endpoint,
            "--curve-secret-key", str(keys / "box.key_secret"), "--curve-allow", str(allow), "--await-subscribers", "2",
        )
        try:
            messages = collect(viewer, ["door"], timeout=90)
            _, run_err = run.communicate(timeout=30)
            console_out, console_err = console.communicate(timeout=30)
            leaked = [m for m in (stranger.receive(300), null.receive(300)) if m is not None]
        finally:
            run.kill()
            console.kill()
    assert run.returncode == 0, run_err
    assert "CURVE on: admitting the 2 client key(s)" in run_err
    assert [m.frame_index for m in detections_of(messages["door"])] == list(range(6))
    assert console.returncode == 0, console_err
    assert len(console_out.splitlines()) == 7, "the CLI subscriber got every frame and the end-of-stream"
    assert leaked == [], "an unlisted key or no key received messages"


def test_run_refuses_a_public_endpoint_without_curve_and_warns_with_insecure(onnx_static: Path, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=3)
    port = free_port()
    refused = run_cli("run", "--model", str(onnx_static), "--source", str(clip), "--device", "cpu", "--publish", f"tcp://0.0.0.0:{port}")
    assert_clean_failure(refused, "--curve-secret-key FILE --curve-allow DIR")
    assert "--insecure" in refused.stderr and refused.returncode == 2
    with Subscriber(f"tcp://127.0.0.1:{port}") as sub:
        proc = start_cli(
            "run", "--model", str(onnx_static), "--source", f"yard={clip}", "--device", "cpu",
            "--publish", f"tcp://0.0.0.0:{port}", "--insecure", "--await-subscribers", "1",
        )
        try:
            messages = collect(sub, ["yard"])
            _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert len(detections_of(messages["yard"])) == 3
    warnings = [line for line in err.splitlines() if "WARNING" in line and "unencrypted" in line]
    assert len(warnings) == 1, err


@pytest.mark.parametrize(
    "make_args,expected",
    [
        (lambda k: ["--curve-secret-key", str(k / "box.key_secret")], "curve_allow (--curve-allow DIR) is missing"),
        (lambda k: ["--curve-allow", str(k)], "curve_secret_key (--curve-secret-key FILE) is missing"),
        (lambda k: ["--curve-secret-key", str(k / "box.key"), "--curve-allow", str(k)], "has no secret key"),
        (lambda k: ["--curve-secret-key", str(k / "none.key_secret"), "--curve-allow", str(k)], "no such file"),
    ],
)
def test_run_key_mistakes_are_one_line(make_args, expected: str, tmp_path: Path) -> None:
    _pair(tmp_path / "k", "box")
    proc = run_cli("run", "--model", "m.onnx", "--source", "0", "--publish", f"tcp://127.0.0.1:{free_port()}", *make_args(tmp_path / "k"))
    assert_clean_failure(proc, expected)


@pytest.mark.parametrize(
    "make_args,expected",
    [
        (
            lambda p, k: ["--publish", f"connect:tcp://127.0.0.1:{p}", "--curve-secret-key", str(k / "box.key_secret"), "--curve-allow", str(k)],
            "curve_allow (--curve-allow): publish connect:tcp://127.0.0.1:",
        ),
        (
            lambda p, k: ["--publish", f"connect:tcp://127.0.0.1:{p}", "--curve-server-key", str(k / "none.key"), "--curve-secret-key", str(k / "box.key_secret")],
            "none.key': no such file",
        ),
        (lambda p, k: ["--publish", f"connect:tcp://127.0.0.1:{p}", "--curve-server-key", str(k / "box.key")], "curve_secret_key (--curve-secret-key FILE) is missing"),
        (lambda p, k: ["--publish", f"connect:tcp://127.0.0.1:{p}", "--curve-secret-key", str(k / "box.key_secret")], "curve_server_key (--curve-server-key FILE) is missing"),
        (lambda p, k: ["--publish", f"tcp://127.0.0.1:{p}", "--curve-server-key", str(k / "box.key")], "only for publish connect:"),
        (lambda p, k: ["--publish", "connect:tcp://192.0.2.7:5556"], "the broker is beyond this machine"),
        (lambda p, k: ["--publish", "connect:tcp://*:5556"], "not '*'"),
        (lambda p, k: ["--publish", "connect:localhost:5556"], "or connect:tcp://BROKER:PORT"),
    ],
)
def test_run_connect_mistakes_are_one_line_and_exit_2(make_args, expected: str, tmp_path: Path) -> None:
    _pair(tmp_path / "k", "box")
    proc = run_cli("run", "--model", "m.onnx", "--source", "0", *make_args(free_port(), tmp_path / "k"))
    assert_clean_failure(proc, expected)
    assert proc.returncode == 2


@pytest.mark.parametrize(
    "make_args,expected",
    [
        (lambda k: ["--curve-server-key", str(k / "box.key")], "--curve-secret-key is missing"),
        (lambda k: ["--curve-server-key", str(k / "none.key"), "--curve-secret-key", str(k / "box.key_secret")], "no such file"),
        (lambda k: ["--curve-server-key", str(_write(k / "junk.key", "x = 1\n")), "--curve-secret-key", str(k / "box.key_secret")], "not a ZeroMQ certificate"),
        (lambda k: ["--curve-server-key", str(k / "box.key"), "--curve-secret-key", str(k / "box.key")], "has no secret key"),
    ],
)
def test_subscribe_key_mistakes_are_one_line(make_args, expected: str, tmp_path: Path) -> None:
    _pair(tmp_path / "k", "box")
    proc = run_cli("subscribe", f"tcp://127.0.0.1:{free_port()}", "--timeout", "5", *make_args(tmp_path / "k"))
    assert_clean_failure(proc, expected)
    assert proc.returncode == 2


def test_camera_password_stays_out_of_the_log(onnx_static: Path, tmp_path: Path) -> None:
    url = f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/stream1"  # nobody listens: it keeps reconnecting
    proc = start_cli(
        "run", "--model", str(onnx_static), "--source", f"door={url}", "--device", "cpu", "--log-level", "debug",
        "--publish", f"ipc://{tmp_path}/s.sock", "--open-timeout", "0.5", "--reconnect-max", "0.5",
    )
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while not any("reconnecting" in line for line in lines):
            assert time.monotonic() < deadline, "".join(lines)
            lines.append(proc.stderr.readline())
        time.sleep(1.5)  # a few more retries
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=10)
    finally:
        proc.kill()
    err = "".join(lines) + rest
    assert "hunter2" not in err
    assert f"rtsp://admin:***@127.0.0.1:{url.rsplit(':', 1)[1]}" in err


def test_run_error_lines_are_redacted(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Whatever stage raises with a source URI in its message, the error line hides the password."""
    import edge_rt.runner
    from edge_rt.cli import main
    from edge_rt.errors import SourceError

    def failing_run(config: object, install_signals: object = None) -> int:
        raise SourceError("source 'door': cannot open 'rtsp://admin:hunter2@cam/x'")

    monkeypatch.setattr(edge_rt.runner, "run", failing_run)
    code = main(["run", "--model", "m.onnx", "--source", "door=rtsp://admin:hunter2@cam/x", "--log-level", "error"])
    err = capsys.readouterr().err
    assert code == SourceError.exit_code
    assert err.strip() == "edge-rt run: error: source 'door': cannot open 'rtsp://admin:***@cam/x'"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_loopback_endpoint_binds_and_serves() -> None:
    endpoint = f"tcp://[::1]:{free_port()}"
    check_exposure(endpoint, curve=False, insecure=False)
    pub = Publisher(endpoint)
    try:
        with Subscriber(endpoint) as sub:
            assert pub.await_subscribers(1, 10)
            pub.publish("cam0", message())
            assert sub.receive(5000) is not None
    finally:
        pub.close()
