"""Faults survived by a real `edge-rt run` (issue 9): a camera that dies and returns, a camera that
flaps for a minute, hostile peers on the publisher's port, SIGTERM while a read is blocked.

Real parts only: the CLI in its own process, GStreamer's RTSP server killed, restarted and frozen
with SIGSTOP, ZeroMQ and raw TCP over loopback, the process's own numbers read from /proc.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from edge_rt.client import DetectionMessage, HealthMessage, Message, Subscriber

from .conftest import free_port, write_clip
from .helpers import start_cli
from .support.rtsp import RtspServer, rtsp_available

rtsp = pytest.mark.skipif(not rtsp_available()[0], reason=f"no RTSP test server: {rtsp_available()[1]}")


# --- helpers ---------------------------------------------------------------------------------------


class Collector(threading.Thread):
    """A well-behaved subscriber in the background: every message with its arrival time (monotonic)."""

    def __init__(self, endpoint: str, topics: Sequence[str], health: bool = False) -> None:
        super().__init__(name="collector", daemon=True)
        self.sub = Subscriber(endpoint, topics=topics, health=health)
        self.got: list[tuple[float, Message]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            msg = self.sub.receive(50)
            if msg is not None:
                self.got.append((time.monotonic(), msg))

    def close(self) -> None:
        self._halt.set()
        if self.ident is not None:
            self.join(5)
        self.sub.close()

    def detections(self, source: str, since: float = 0.0) -> list[tuple[float, DetectionMessage]]:
        return [(t, m) for t, m in list(self.got) if isinstance(m, DetectionMessage) and m.source == source and t >= since]

    def health(self, source: str) -> list[HealthMessage]:
        return [m for _, m in list(self.got) if isinstance(m, HealthMessage) and m.source == source]


def _wait_for(cond: Callable[[], object], timeout: float, what: str, proc: subprocess.Popen[str] | None = None) -> float:
    """Poll `cond` until true; returns when (monotonic). Fails naming `what`, or early if `proc` died."""
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"edge-rt exited ({proc.returncode}) while waiting for {what}:\n{err[-3000:]}")
        assert time.monotonic() < deadline, f"no {what} within {timeout:g}s"
        time.sleep(0.02)
    return time.monotonic()


def _largest_gap(times: Sequence[float]) -> float:
    return max((b - a for a, b in zip(times, times[1:])), default=float("inf"))


def _sigterm(proc: subprocess.Popen[str], timeout: float = 10.0) -> tuple[float, str]:
    """SIGTERM, wait for the exit (bounded); returns (seconds it took, stderr)."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=timeout)
    return time.monotonic() - t0, err


def _reap(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def _resources(pid: int, samples: int = 5) -> tuple[int, int]:
    """(open fds, threads): the lowest of a few samples over a second, so a momentary extra (a
    thread that is just ending, a socket that is just closing) does not count as held."""
    fds, threads = [], []
    for _ in range(samples):
        fds.append(_fds(pid))
        threads.append(_threads(pid))
        time.sleep(0.25)
    return min(fds), min(threads)


def _run_args(model: Path, endpoint: str, *sources: str, extra: Sequence[str] = ()) -> list[str]:
    """`edge-rt run` on CPU with one inference thread: the other core decodes and serves the tests."""
    args = ["run", "--model", str(model), "--device", "cpu", "--threads", "1", "--publish", endpoint]
    for s in sources:
        args += ["--source", s]
    return args + list(extra)


# --- 1. a camera killed for 4 s beside a looping file ----------------------------------------------


@rtsp
@pytest.mark.serial  # the file's gap is held to 1 s against a clock: under 4 busy workers it stalled 1.3 s
@pytest.mark.timeout(90)
def test_camera_killed_for_4s_is_back_within_4s_and_the_file_never_waits(onnx_dynamic: Path, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=30)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with RtspServer(port=free_port(), fps=15) as cam:
        proc = start_cli(*_run_args(onnx_dynamic, endpoint, f"door={cam.url}", f"clip={clip}", extra=["--loop", "--fps", "15"]))
        col = Collector(endpoint, ["door", "clip"])
        try:
            col.start()
            warm = _wait_for(lambda: len(col.detections("door")) >= 10 and len(col.detections("clip")) >= 10, 60, "frames from both sources", proc)
            cam.kill()  # SIGKILL: a camera that crashes
            killed = time.monotonic()
            time.sleep(4.0)
            cam.start()
            returned = time.monotonic()
            _wait_for(lambda: col.detections("door", since=returned), 15, "a camera frame after its return", proc)
            back_after = col.detections("door", since=returned)[0][0] - returned
            time.sleep(1.0)  # the file keeps going after the return too
            assert proc.poll() is None
            stop_s, stderr = _sigterm(proc)
        finally:
            col.close()
            _reap(proc)
    clip_times = [t for t, _ in col.detections("clip", since=warm)]  # from both streaming (the first inferences are slow) to SIGTERM
    clip_gap = _largest_gap(clip_times)
    at = next(a for a, b in zip(clip_times, clip_times[1:]) if b - a == clip_gap) - killed
    lines = stderr.splitlines()
    door_lines = [line for line in lines if "source door:" in line and cam.url not in line]  # its state changes
    print(f"camera back {back_after:.2f}s after its return; clip largest gap {clip_gap * 1000:.0f} ms ({at:+.1f}s from the kill) over {len(clip_times)} messages; "
          f"{len(lines)} log lines; SIGTERM -> exit {proc.returncode} in {stop_s:.2f}s")
    assert back_after <= 4.0, f"the camera's first frame came {back_after:.1f}s after it returned"
    assert clip_gap < 1.0, f"the file stalled {clip_gap:.2f}s during the camera's outage"
    # Measured: 23 lines = 5 at start-up, the 4 state changes below, SIGTERM, `done` and its 10-line table.
    assert len(lines) < 30, f"{len(lines)} log lines for one outage:\n{stderr}"
    # online, reconnecting (down), online (back), stopped: one line per change, none per retry (the
    # outage retried about 4 times) and none from FFmpeg
    assert len(door_lines) <= 5, "\n".join(door_lines)
    assert "Traceback" not in stderr, stderr
    assert col.sub.tracker.missed == 0, f"{col.sub.tracker.missed} messages lost"
    assert proc.returncode == 0 and stop_s < 5.0, f"exit {proc.returncode} after {stop_s:.1f}s:\n{stderr}"


# --- 2. a camera flapping for a minute --------------------------------------------------------------


@rtsp
@pytest.mark.timeout(150)
def test_a_camera_flapping_for_a_minute_leaves_fds_and_threads_at_baseline(onnx_dynamic: Path) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    flaps = 15  # 2 s down, 2 s up: a minute
    with RtspServer(port=free_port(), fps=15) as cam:
        proc = start_cli(*_run_args(onnx_dynamic, endpoint, f"door={cam.url}"))
        col = Collector(endpoint, ["door"], health=True)  # connected throughout: its connection is in both samples
        try:
            col.start()
            _wait_for(lambda: len(col.detections("door")) >= 30, 60, "frames from the camera", proc)  # warm: every thread pool exists
            fds0, threads0 = _resources(proc.pid)
            flapping = time.monotonic()
            for i in range(flaps):
                cam.kill() if i % 2 else cam.stop()  # SIGKILL (a crash) and SIGTERM (a clean exit) in turn
                time.sleep(2.0)
                cam.start()
                up = time.monotonic()
                time.sleep(2.0)
            flapped_s = time.monotonic() - flapping
            _wait_for(lambda: len(col.detections("door", since=up)) >= 30, 20, "the camera streaming again after the flapping", proc)
            fds1, threads1 = _resources(proc.pid)
            assert proc.poll() is None
            stop_s, stderr = _sigterm(proc)
        finally:
            col.close()
            _reap(proc)
    reconnects = [m for t, m in col.got if t >= flapping and isinstance(m, HealthMessage) and m.event == "change" and m.state == "online"]
    print(f"{flaps} flaps in {flapped_s:.0f}s, {len(reconnects)} reconnections; fds {fds0} -> {fds1}, threads {threads0} -> {threads1}; "
          f"SIGTERM -> exit {proc.returncode} in {stop_s:.2f}s")
    # Each up that the camera caught opened a new capture: a leaked one holds its RTSP socket and
    # FFmpeg's decoder threads (measured with release() skipped: fds 15 -> 30, threads 11 -> 56 after 15
    # reconnections). The tolerance of 2 covers what a run may create once, late (a lazily made ZeroMQ
    # or ONNX Runtime helper), never one per reconnection; the samples are taken while streaming.
    assert len(reconnects) >= 10, f"the camera came back only {len(reconnects)} times in {flaps} flaps: too few to see a leak"
    assert fds1 <= fds0 + 2, f"open fds {fds0} -> {fds1} after {len(reconnects)} reconnections"
    assert threads1 <= threads0 + 2, f"threads {threads0} -> {threads1} after {len(reconnects)} reconnections"
    assert col.sub.tracker.missed == 0, f"{col.sub.tracker.missed} messages lost"
    assert proc.returncode == 0 and stop_s < 5.0, f"exit {proc.returncode} after {stop_s:.1f}s:\n{stderr}"


# --- 3. hostile peers on the publisher's port -------------------------------------------------------

_SIGNATURE = b"\xff" + b"\x00" * 8 + b"\x7f"  # ZMTP 2.0/3.x: 0xFF, 8 bytes of padding, 0x7F


def _greeting(major: int = 3, minor: int = 0, mechanism: bytes = b"NULL") -> bytes:
    """A ZMTP 3.x greeting (64 bytes): signature, version, mechanism, as-server, filler."""
    return _SIGNATURE + bytes([major, minor]) + mechanism.ljust(20, b"\x00") + b"\x00" + b"\x00" * 31


def _frame(body: bytes, command: bool = False) -> bytes:
    flags = 0x04 if command else 0x00
    if len(body) < 256:
        return bytes([flags, len(body)]) + body
    return bytes([flags | 0x02]) + struct.pack(">Q", len(body)) + body


def _ready(socket_type: bytes) -> bytes:
    return _frame(b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", len(socket_type)) + socket_type, command=True)


_NULL_SUB = _greeting() + _ready(b"SUB")  # a correct handshake as a SUB
# name -> (what a hostile peer sends, whether the publisher must hang up on it); each is wrong in a
# different place of the handshake. ZMTP 1.0 and 2.0 have no mechanism and libzmq checks no socket
# type there: such a peer is taken for an idle subscriber (one connection, like any other), so it may
# stay; it must only not disturb the others.
_HOSTILE: dict[str, tuple[bytes, bool]] = {
    "signature then garbage": (_SIGNATURE + bytes(range(255, -1, -1)) * 2, True),
    "unknown mechanism": (_greeting(mechanism=b"BOGUS") + _ready(b"SUB"), True),
    "CURVE against a NULL server": (_greeting(mechanism=b"CURVE") + b"\x04\xc8\x05HELLO" + b"\x00" * 194, True),
    "ZMTP 1.0 greeting, then frames": (b"\x01\x00" + b"\x06\x00hello" * 20, False),  # unversioned: an identity frame
    "ZMTP 1.0 greeting, versioned": (_SIGNATURE + b"\x00" + b"\x01\x00" + b"\xff" * 64, True),
    "ZMTP 2.0, unknown socket type": (_SIGNATURE + b"\x01" + b"\x63" + b"\x00\x00" + b"\x00\x05hello", False),
    "READY with a broken property": (_greeting() + _frame(b"\x05READY" + b"\xff" + b"x" * 20, command=True), True),
    "READY as a PUB": (_greeting() + _ready(b"PUB"), True),  # PUB cannot talk to XPUB
    "unknown command": (_greeting() + _ready(b"SUB") + _frame(b"\x05BOGUS" + b"x" * 30, command=True), True),
    "a frame of 2^62 bytes": (_NULL_SUB + b"\x02" + struct.pack(">Q", 1 << 62) + b"\x01", True),
    "a 4 MB subscription": (_NULL_SUB + _frame(b"\x01" + b"x" * (4 << 20)), True),  # over ZMQ_MAXMSGSIZE (64 KiB)
}


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setblocking(False)
    return s


def _closed_by_peer(socks: Sequence[socket.socket], until: float) -> list[float | None]:
    """For each socket: when (monotonic) the publisher closed it (EOF or reset), or None if it had not
    by `until`. Reads and discards what the publisher sends meanwhile (its greeting)."""
    import selectors

    closed: list[float | None] = [None] * len(socks)
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
    while sel.get_map() and time.monotonic() < until:
        for key, _ in sel.select(0.05):
            try:
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            except OSError:  # reset
                data = b""
            if not data:
                closed[key.data] = time.monotonic()
                sel.unregister(key.fileobj)
    sel.close()
    return closed


def _send(s: socket.socket, data: bytes) -> None:
    """Send all of it unless the publisher hangs up first (which is the point)."""
    s.setblocking(True)
    s.settimeout(5)
    try:
        s.sendall(data)
    except OSError:
        pass
    s.setblocking(False)


# A real ZeroMQ SUB whose subscription is several MB, in its own process: libzmq keeps a SUB's own
# subscriptions in a trie one node per byte and frees it recursively, so closing this socket's context
# overflows the stack of the process that holds it (measured: a segfault in zmq_ctx_term with libzmq
# 4.3.5). It exits with os._exit instead. The publisher never stores the subscription: MAXMSGSIZE.
_HOG = """
import os, sys, zmq
from zmq.utils.monitor import recv_monitor_message
hog = zmq.Context().socket(zmq.SUB)
hog.setsockopt(zmq.SUBSCRIBE, b"x" * int(sys.argv[2]))
mon = hog.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
hog.connect(sys.argv[1])
events = []
while zmq.EVENT_DISCONNECTED not in events and mon.poll(int(float(sys.argv[3]) * 1000)):
    events.append(recv_monitor_message(mon)["event"])
print("disconnected" if events[-2:] == [zmq.EVENT_HANDSHAKE_SUCCEEDED, zmq.EVENT_DISCONNECTED] else f"still connected: {events}", flush=True)
os._exit(0)
"""


def _zmq_hog(endpoint: str, size: int, within: float) -> str:
    """What a real ZeroMQ SUB subscribing with `size` bytes saw: "disconnected" after its handshake, or not."""
    out = subprocess.run([sys.executable, "-c", _HOG, endpoint, str(size), str(within)], capture_output=True, text=True, timeout=within + 20)
    return out.stdout.strip() or f"exit {out.returncode}: {out.stderr[-500:]}"


@pytest.mark.serial  # measures rates or waits against a clock: run alone, after the parallel part
@pytest.mark.timeout(120)
def test_hostile_peers_on_the_publisher_port_do_not_disturb_a_subscriber(onnx_dynamic: Path, tmp_path: Path) -> None:
    import random

    clip = write_clip(tmp_path / "clip.mp4", frames=30)
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    rng = random.Random(9)
    proc = start_cli(*_run_args(onnx_dynamic, endpoint, f"clip={clip}", extra=["--loop", "--fps", "20"]))
    col = Collector(endpoint, ["clip"])
    silent: list[socket.socket] = []
    try:
        col.start()
        _wait_for(lambda: len(col.detections("clip")) >= 20, 60, "frames from the file", proc)
        fds0, _ = _resources(proc.pid)
        attack = time.monotonic()
        silent, silent_at = [], []
        for _ in range(300):  # connect and never say a word
            silent.append(_connect(port))
            silent_at.append(time.monotonic())
        noisy = [_connect(port) for _ in range(20)]
        for s in noisy:
            _send(s, rng.randbytes(64 * 1024))
        hog = _zmq_hog(endpoint, 4 << 20, within=5)
        hostile = {name: _connect(port) for name in _HOSTILE}
        hostile_at = time.monotonic()
        for name, s in hostile.items():
            _send(s, _HOSTILE[name][0])
        socks = silent + noisy + list(hostile.values())
        closed_at = _closed_by_peer(socks, until=silent_at[0] + 8)  # HANDSHAKE_IVL is 5 s
        for s in socks:
            s.close()
        attack_s = time.monotonic() - attack
        time.sleep(1.0)
        fds1, _ = _resources(proc.pid)
        alive = proc.poll() is None
        stop_s, stderr = _sigterm(proc)
    finally:
        col.close()
        for s in silent:
            s.close()
        _reap(proc)
    silent_closed = [c - t for c, t in zip(closed_at, silent_at) if c is not None]
    noisy_closed = sum(c is not None for c in closed_at[len(silent) : len(silent) + len(noisy)])
    closed = {name: None if c is None else round(c - hostile_at, 2) for name, c in zip(hostile, closed_at[len(silent) + len(noisy) :])}
    during = col.detections("clip", since=attack)
    during = [(t, m) for t, m in during if t <= attack + attack_s]
    times = [attack] + [t for t, _ in during] + [attack + attack_s]
    gap = _largest_gap(times)
    print(f"under attack for {attack_s:.1f}s: {len(during)} messages, largest gap {gap * 1000:.0f} ms, missed {col.sub.tracker.missed}; "
          f"silent connections closed by the publisher: {len(silent_closed)}/{len(silent)} after {min(silent_closed, default=0):.1f}-{max(silent_closed, default=0):.1f}s; "
          f"random-bytes peers closed: {noisy_closed}/{len(noisy)}; hostile peers closed after (s): {closed}; "
          f"ZeroMQ SUB with a 4 MB subscription: {hog}; fds {fds0} -> {fds1}; SIGTERM -> exit {proc.returncode} in {stop_s:.2f}s")
    assert alive, stderr
    assert len(during) >= 20 * attack_s * 0.8, f"{len(during)} messages in {attack_s:.1f}s at 20 fps"
    assert gap < 0.5, f"the subscriber waited {gap * 1000:.0f} ms for a message under attack"
    assert col.sub.tracker.missed == 0 and not any(m.gap or m.restarted for _, m in during), "seq gaps under attack"
    assert hog == "disconnected", f"a ZeroMQ SUB subscribing with 4 MB: {hog} (ZMQ_MAXMSGSIZE)"
    refused = {name: closed[name] for name, (_, drop) in _HOSTILE.items() if drop}
    assert all(c is not None and c < 2 for c in refused.values()), f"hostile peers not hung up on within 2 s: {refused}"
    assert len(silent_closed) == len(silent) and max(silent_closed) < 7, "silent peers are dropped after HANDSHAKE_IVL (5 s)"
    assert fds1 <= fds0 + 2, f"the publisher holds {fds1 - fds0} more fds after every hostile peer left"
    assert proc.returncode == 0 and stop_s < 5.0, f"exit {proc.returncode} after {stop_s:.1f}s:\n{stderr}"


# --- 4. SIGTERM while a read is blocked on a dead stream ---------------------------------------------


def _tcp_connections(port: int) -> list[tuple[str, str]]:
    """(local, state) of every IPv4 TCP socket on this machine whose far end is 127.0.0.1:`port`."""
    states = {"01": "ESTABLISHED", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT", "08": "CLOSE_WAIT"}
    out = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, remote, st = line.split()[1:4]
            if remote == f"0100007F:{port:04X}":
                out.append((local, states.get(st, st)))
    return out


@rtsp
@pytest.mark.timeout(90)
def test_sigterm_while_a_read_is_blocked_on_a_frozen_camera_exits_0_and_says_stopped(onnx_dynamic: Path) -> None:
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    with RtspServer(port=free_port(), fps=15) as cam:
        # --stall-timeout 30: OpenCV's read waits up to 15 s, so the read below is genuinely blocked
        proc = start_cli(*_run_args(onnx_dynamic, endpoint, f"door={cam.url}", extra=["--stall-timeout", "30"]))
        frames = Collector(endpoint, ["door"])
        health = Collector(endpoint, ["$health"])
        frozen = False
        try:
            frames.start()
            health.start()
            _wait_for(lambda: len(frames.detections("door")) >= 10 and any(m.state == "online" for m in health.health("door")), 60, "frames from the camera", proc)
            before = _tcp_connections(cam.port)
            # SIGSTOP, not cam.freeze() (SIGUSR1: no more frames, but RTSP and RTCP still answered): a camera
            # that hangs completely, nothing answered, the TCP connection open
            os.kill(cam.pid, signal.SIGSTOP)
            frozen = True
            frozen_at = time.monotonic()
            time.sleep(3.0)
            # the capture thread is inside read(): no frame for 2 s, and no state change (a stall needs 30 s)
            blocked = not frames.detections("door", since=frozen_at + 1.0) and [m.state for m in health.health("door")][-1] == "online"
            stop_s, stderr = _sigterm(proc)
            after = _tcp_connections(cam.port)  # the camera is still frozen: only the client's side could close
            time.sleep(0.3)  # the $health subscriber reads what was sent before the exit
        finally:
            if frozen:
                os.kill(cam.pid, signal.SIGCONT)
            frames.close()
            health.close()
            _reap(proc)
    last = health.health("door")[-1] if health.health("door") else None
    print(f"read blocked {blocked}; SIGTERM -> exit {proc.returncode} in {stop_s:.2f}s; last $health for door: "
          f"{last and (last.state, last.reason)}; camera connections before {before}, after {after}")
    assert blocked, "the read was not blocked on the frozen camera when SIGTERM came"
    assert proc.returncode == 0 and stop_s < 5.0, f"exit {proc.returncode} after {stop_s:.1f}s:\n{stderr}"
    assert last is not None and last.state == "stopped" and last.reason == "shutdown", last
    assert not os.path.exists(f"/proc/{proc.pid}"), "the process is still there"
    assert any(st == "ESTABLISHED" for _, st in before), before
    assert not [c for c in after if c[1] == "ESTABLISHED"], f"a connection to the camera outlived the process: {after}"
    with socket.socket() as s:  # the publisher's port is free again: its socket went with the process
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
