"""A real Mosquitto (Debian's `mosquitto` package) on 127.0.0.1 at a free port, for the MQTT bridge's tests,
and a real paho subscriber that records what arrives."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
OPENSSL = shutil.which("openssl")


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the test CA's certificate: what the bridge is told to trust
    cert: Path  # the broker's, for IP 127.0.0.1, signed by that CA
    key: Path


def make_tls(workdir: Path) -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 (P-256, one day), with the openssl command line."""
    assert OPENSSL is not None
    ca, ca_key, cert, key, csr = (workdir / n for n in ("ca.crt", "ca.key", "server.crt", "server.key", "server.csr"))
    ext = workdir / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for cmd in (
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "1", "-subj", "/CN=edge_rt test CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "1", "-extfile", ext],
    ):
        subprocess.run([OPENSSL, *map(str, cmd)], check=True, capture_output=True)
    return TlsFiles(ca, cert, key)


class Mosquitto:
    """Started with a config written here; `stop()` and `start()` again keep the port and, with persistence,
    the durable sessions and retained messages (as a broker restarted by its service manager does)."""

    def __init__(self, workdir: Path, port: int, users: dict[str, str] | None = None, tls: TlsFiles | None = None) -> None:
        assert MOSQUITTO is not None
        self.dir = workdir
        self.port = port
        self.log = workdir / "mosquitto.log"
        lines = [f"listener {port} 127.0.0.1", "persistence true", f"persistence_location {workdir}/", "log_type all", "max_queued_messages 5000"]
        if tls is not None:
            lines += [f"cafile {tls.ca}", f"certfile {tls.cert}", f"keyfile {tls.key}"]
        if os.geteuid() == 0:
            lines.append("user root")  # as root it would switch to user mosquitto, who cannot read a test's 0700 tmp dir
        if users:
            self.set_users(users)
            lines += ["allow_anonymous false", f"password_file {self.dir / 'passwords'}"]
        else:
            lines.append("allow_anonymous true")
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def set_users(self, users: dict[str, str]) -> None:
        """The password file (read at start): with `mosquitto_passwd -b`, as an admin would make it."""
        assert MOSQUITTO_PASSWD is not None
        pwfile = self.dir / "passwords"
        pwfile.unlink(missing_ok=True)
        for user, password in users.items():
            subprocess.run([MOSQUITTO_PASSWD, "-b", *([] if pwfile.exists() else ["-c"]), str(pwfile), user, password], check=True, capture_output=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"mosquitto exited {self.proc.returncode}: {self.log.read_text()[-2000:]}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"mosquitto did not listen on {self.port} within {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: it saves its database and closes every connection
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    at_ns: int  # time.time_ns() on arrival

    def text(self) -> str:
        return self.payload.decode()


class Recorder:
    """A paho client subscribed to `topics`, keeping every message; `durable` keeps its session (and its QoS 1
    messages) in the broker while it is disconnected, across a restart of a persistent broker."""

    def __init__(self, port: int, topics: list[str], client_id: str = "test-recorder", durable: bool = False) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._topics = topics
        self.connected = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not durable
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(10), "the test's MQTT client did not connect"

    def _on_connect(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            for t in self._topics:
                client.subscribe(t, qos=1)
            time.sleep(0.05)
            self.connected.set()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain), time.time_ns()))
            self._cond.notify_all()

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait(self, pred: Any, timeout: float = 10, what: str = "") -> list[Received]:
        """Until pred(messages) is truthy; returns the messages then."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    topics = sorted({m.topic for m in self.messages})
                    raise AssertionError(f"timed out waiting for {what or pred}; {len(self.messages)} messages on {topics[:30]}")
                self._cond.wait(min(left, 0.2))
            return list(self.messages)

    def last(self, topic: str, timeout: float = 10) -> Received:
        self.wait(lambda ms: any(m.topic == topic for m in ms), timeout, topic)
        return self.on(topic)[-1]

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
