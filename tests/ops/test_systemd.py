"""sd_notify through a real AF_UNIX datagram socket, as systemd's Type=notify and WatchdogSec= provide it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from edge_rt.ops.systemd import Notifier
from tests.conftest import free_port
from tests.helpers import cli, env

pytestmark = pytest.mark.timeout(90)


def _notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    return sock, path


def _datagrams(sock: socket.socket, until: float) -> list[tuple[float, dict[str, str]]]:
    out = []
    while time.monotonic() < until:
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            continue
        out.append((time.monotonic(), dict(line.split("=", 1) for line in data.splitlines())))
    return out


def test_run_under_systemd_says_ready_pings_the_watchdog_and_says_stopping(onnx_dynamic: Path, tmp_path: Path) -> None:
    sock, path = _notify_socket(tmp_path)
    e = env() | {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}  # WatchdogSec=2: a ping every second
    dead = f"rtsp://127.0.0.1:{free_port()}/x"
    proc = subprocess.Popen(
        cli("run", "--model", str(onnx_dynamic), "--device", "cpu", "--publish", f"tcp://127.0.0.1:{free_port()}",
            "--source", "yard=synthetic://320x240?fps=10", "--source", f"door={dead}", "--open-timeout", "1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e,
    )
    started = time.monotonic()
    try:
        got = _datagrams(sock, started + 25)
        ready = [t for t, d in got if d.get("READY") == "1"]
        assert ready, f"no READY=1 in {[d for _, d in got][:5]}"
        pings = [t for t, d in got if d.get("WATCHDOG") == "1" and t > ready[0]]
        proc.send_signal(signal.SIGTERM)
        tail = _datagrams(sock, time.monotonic() + 3)
        proc.communicate(timeout=10)
    finally:
        proc.kill()
        sock.close()
    assert len(ready) == 1
    assert len(pings) >= 15, f"{len(pings)} watchdog pings in {25 - (ready[0] - started):.0f}s"
    assert max(b - a for a, b in zip(pings, pings[1:])) < 2.0, "a gap in the pings longer than WatchdogSec"
    status = [d["STATUS"] for _, d in got if "STATUS" in d][-1]
    assert status.startswith("1/2 sources online"), status
    assert any(d.get("STOPPING") == "1" for _, d in tail)
    assert proc.returncode == 0


def test_notifier_reads_the_environment_and_abstract_sockets(tmp_path: Path) -> None:
    assert Notifier.from_env({}) is None
    n = Notifier.from_env({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "6000000", "WATCHDOG_PID": str(os.getpid())})
    assert n is not None and n.watchdog_s == 6.0
    other = Notifier.from_env({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "6000000", "WATCHDOG_PID": "1"})
    assert other is not None and other.watchdog_s is None, "the watchdog is meant for another process"
    name = f"edge_rt_test_{os.getpid()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    server.settimeout(2)
    try:
        abstract = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert abstract is not None and abstract.send(ready="1", status="ok")
        assert server.recv(100) == b"READY=1\nSTATUS=ok"
        assert not Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "none")}).send(watchdog="1"), "no systemd: False, no exception"  # type: ignore[union-attr]
    finally:
        server.close()


def test_no_ready_after_stopping_and_no_watchdog_while_the_engine_hangs(tmp_path: Path) -> None:
    from edge_rt.ops.systemd import ServiceWatch

    sock, path = _notify_socket(tmp_path)
    busy = [0.0]
    n = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    assert n is not None
    watch = ServiceWatch(n, lambda: 1, lambda: {"cam0": "online"}, lambda: busy[0])
    got: list[dict[str, str]] = []
    reader = threading.Thread(target=lambda: got.extend(d for _, d in _datagrams(sock, time.monotonic() + 4)))
    reader.start()
    try:
        for _ in range(5):
            watch.tick()
            time.sleep(0.25)
        busy[0] = 1.0  # an engine call running longer than WatchdogSec: systemd should see the silence
        for _ in range(5):
            watch.tick()
            time.sleep(0.25)
        late = Notifier.from_env({"NOTIFY_SOCKET": path})
        assert late is not None
        starting = ServiceWatch(late, lambda: 0, lambda: {"cam0": "starting"})
        starting.stopping()  # SIGTERM before the first frame
        starting.tick()
        reader.join()
    finally:
        sock.close()
    pings = [i for i, d in enumerate(got) if d.get("WATCHDOG") == "1"]
    assert got[0].get("READY") == "1" and len(pings) >= 3
    assert got[-1] == {"STOPPING": "1", "STATUS": "stopping"}, "nothing after STOPPING, READY least of all"
    assert all("WATCHDOG" not in d for d in got[pings[-1] + 1 : -1]) and len(got) - pings[-1] >= 3, "status, but no pings while the engine hangs"


def test_a_reader_that_lags_never_blocks_the_sender(tmp_path: Path) -> None:
    sock, path = _notify_socket(tmp_path)  # nobody reads it: the kernel queues 10 datagrams, then a send would wait
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert n is not None
    try:
        t0 = time.monotonic()
        sent = [n.send(watchdog="1") for _ in range(50)]
        assert time.monotonic() - t0 < 1.0
    finally:
        sock.close()
    assert sent[0] and not sent[-1], "the sends past the queue fail and say so"
