"""sd_notify through a real AF_UNIX datagram socket, as systemd's Type=notify and WatchdogSec= provide it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from edge_rt.systemd import Notifier

from .conftest import free_port
from .helpers import cli, env

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
