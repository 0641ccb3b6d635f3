"""The bridge's options, checked once: where the MQTT broker is, how to log in, what to publish.

Secrets never travel in argv: the username and password come from a small file (`--credentials`),
read here, kept out of every repr, log line and error line.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ConfigError
from ..wire.schema import BOX_NAME_MAX, is_box_name
from ..wire.security import ClientKeys

log = logging.getLogger("edge_rt.mqtt")

MQTT_PORT = 1883
MQTTS_PORT = 8883
CREDENTIAL_KEYS = ("username", "password")
HEALTH_TIMEOUT_S = 10.0  # five missed health heartbeats (every 2 s): the box is gone
_PREFIX = re.compile(r"[^+#\x00]+")


@dataclass(frozen=True)
class BrokerAddress:
    """HOST[:PORT], [IPV6]:PORT, or mqtt://... / mqtts://... (mqtts turns TLS on)."""

    host: str
    port: int
    tls: bool = False

    @classmethod
    def parse(cls, text: str, tls: bool = False) -> BrokerAddress:
        raw = text.strip()
        scheme, sep, rest = raw.partition("://")
        if not sep:
            scheme, rest = "", raw
        elif scheme.lower() not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ConfigError(f"--broker {text!r}: unknown scheme {scheme!r}; expected HOST[:PORT], mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
        tls = tls or scheme.lower() in ("mqtts", "ssl")
        rest = rest.rstrip("/")
        if rest.startswith("["):  # [::1]:1883
            host, _, after = rest[1:].partition("]")
            port_text = after[1:] if after.startswith(":") else None
            if after and port_text is None:
                raise ConfigError(f"--broker {text!r}: expected [IPV6]:PORT")
        elif rest.count(":") == 1:
            host, port_text = rest.split(":")
        else:
            host, port_text = rest, None  # a bare IPv6 address has several ':' and no port
        if not host or any(c in host for c in "/@ "):
            raise ConfigError(f"--broker {text!r}: expected HOST[:PORT], e.g. 192.168.1.10:1883 or mqtt.local (no user or path)")
        if port_text is None:
            return cls(host, MQTTS_PORT if tls else MQTT_PORT, tls)
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ConfigError(f"--broker {text!r}: port {port_text!r} is not a number from 1 to 65535")
        return cls(host, int(port_text), tls)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Credentials:
    """A username and password from a file, never from argv: `username=NAME` and `password=SECRET` lines."""

    username: str
    password: str | None = field(repr=False)
    path: Path

    @classmethod
    def load(cls, path: str | Path) -> Credentials:
        p = Path(path).expanduser()
        try:
            text = p.read_text(encoding="utf-8")
            mode = p.stat().st_mode
        except FileNotFoundError:
            raise ConfigError(f"--credentials {str(p)!r}: no such file (write 'username=NAME' and 'password=SECRET' lines, chmod 600)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--credentials {str(p)!r}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
        values: dict[str, str] = {}
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep:  # the line may hold the password: never echo it
                raise ConfigError(f"--credentials {str(p)!r} line {n}: expected KEY=VALUE (keys: {', '.join(CREDENTIAL_KEYS)})")
            key = key.strip().lower()
            if key not in CREDENTIAL_KEYS:
                raise ConfigError(f"--credentials {str(p)!r} line {n}: unknown key {key[:40]!r} (keys: {', '.join(CREDENTIAL_KEYS)})")
            if key in values:
                raise ConfigError(f"--credentials {str(p)!r} line {n}: {key} given twice")
            values[key] = _unquote(value.strip())
        if not values.get("username"):
            raise ConfigError(f"--credentials {str(p)!r}: no username= line")
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("--credentials %s can be read by other users (mode %o): chmod 600 %s", p, stat.S_IMODE(mode), p)
        return cls(values["username"], values.get("password"), p)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


@dataclass(frozen=True)
class TlsOptions:
    """--tls-ca (else the system's CAs), and a client certificate for brokers that ask for one."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def context(self) -> ssl.SSLContext:
        """Built at start, so a missing or unreadable file is one line before any connection."""
        for option, path in (("--tls-ca", self.ca), ("--tls-cert", self.cert), ("--tls-key", self.key)):
            if path is not None and not path.is_file():
                raise ConfigError(f"{option} {str(path)!r}: no such file")
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--tls-ca {str(self.ca)!r}: not a readable PEM CA certificate ({_ssl_reason(exc)})") from None
        if self.cert is not None:
            try:
                ctx.load_cert_chain(str(self.cert), str(self.key) if self.key else None)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"--tls-cert {str(self.cert)!r}: cannot load it with its key ({_ssl_reason(exc)})") from None
        return ctx


def _ssl_reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc)


@dataclass(frozen=True)
class MqttSettings:
    """Every option of `edge-rt mqtt`; `check()` names the bad one."""

    endpoint: str  # ZeroMQ: a box, or an `edge-rt broker` backend
    broker: BrokerAddress
    name: str = field(default_factory=lambda: default_name())  # this bridge: client id and availability topic
    topic_prefix: str = "edge_rt"
    discovery_prefix: str | None = "homeassistant"  # None: no Home Assistant discovery
    credentials: Credentials | None = None
    tls: TlsOptions | None = None
    curve: ClientKeys | None = field(default=None, repr=False)
    box: str | None = None  # only this box's messages
    sources: tuple[str, ...] = ()
    queue: int = 1000  # events kept while the MQTT broker is away
    detections_rate: float = 0.0  # Hz per source; 0: detections are not published
    qos: int = 1
    keepalive: int = 30  # also how soon (1.5x) the broker publishes the last will of a bridge that hung
    connect_timeout: float = 10.0
    box_timeout: float = HEALTH_TIMEOUT_S
    stats_interval: float = 60.0

    @property
    def client_id(self) -> str:
        return f"edge_rt-{self.name}"

    def check(self) -> MqttSettings:
        if "://" not in self.endpoint:
            raise ConfigError(f"--from {self.endpoint!r}: expected a ZeroMQ endpoint, tcp://HOST:PORT or ipc://PATH")
        if not is_box_name(self.name):
            raise ConfigError(f"--name {self.name[:40]!r}: 1 to {BOX_NAME_MAX} letters, digits, '.', '_' or '-'")
        if self.box is not None and not is_box_name(self.box):
            raise ConfigError(f"--box {self.box[:40]!r}: 1 to {BOX_NAME_MAX} letters, digits, '.', '_' or '-'")
        for option, prefix in (("--topic-prefix", self.topic_prefix), ("--discovery-prefix", self.discovery_prefix)):
            if prefix is not None and (not _PREFIX.fullmatch(prefix) or "" in prefix.split("/")):
                raise ConfigError(f"{option} {prefix!r}: MQTT topic levels without '+', '#' or empty levels, e.g. edge_rt or home/edge_rt")
        if self.queue < 1:
            raise ConfigError(f"--queue must be >= 1, got {self.queue}")
        if not 0 <= self.detections_rate <= 100:
            raise ConfigError(f"--detections-rate must be 0 (off) to 100 Hz, got {self.detections_rate:g}")
        if self.qos not in (0, 1):
            raise ConfigError(f"--qos must be 0 or 1, got {self.qos}")
        if not 5 <= self.keepalive <= 3600:
            raise ConfigError(f"--keepalive must be 5 to 3600 s, got {self.keepalive}")
        for option, value in (("--connect-timeout", self.connect_timeout), ("--box-timeout", self.box_timeout)):
            if value <= 0:
                raise ConfigError(f"{option} must be > 0, got {value:g}")
        if self.stats_interval < 0:
            raise ConfigError(f"--stats-interval must be >= 0 (0: off), got {self.stats_interval:g}")
        if self.tls is None and self.broker.tls:
            return replace(self, tls=TlsOptions())  # mqtts:// with the system's CAs
        return self


def default_name() -> str:
    """The hostname, made a box name as `edge-rt run` makes its default one (config.default_box_name, which
    imports OpenCV): a bridge beside its box shares its name."""
    name = re.sub(r"[^A-Za-z0-9_.\-]", "-", socket.gethostname())[:BOX_NAME_MAX].strip("-")
    return name or "edge-rt"
