"""What keeps an unattended box's stream private: CURVE keys, the allow-list, the exposure check.

A camera URL's password is kept out of logs by ops/redact.py (cameras need it too, and sit below the wire).

- Keys are ZeroMQ certificate files as `zmq.auth` writes and reads them (`NAME.key` holds the public
  key, `NAME.key_secret` both). Loading one checks what `zmq.auth.load_certificate` does not: that
  each key is 40 Z85 characters and that the public key belongs to the secret one.
- CURVE alone encrypts but admits any client; the publisher pairs it with a ZAP authenticator that
  admits only the public keys found in an allow-list directory (see `publish.Publisher`). A box that
  publishes to a broker (`connect:`) is the CURVE client instead: its key pair and the broker's public
  key (`ClientKeys`); the broker's allow-list decides.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


# --- keys ----------------------------------------------------------------------------------------


def _z85_key(raw: bytes, what: str, path: Path) -> bytes:
    from zmq.utils import z85

    try:
        if len(raw) != 40 or len(z85.decode(raw)) != 32:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{what} {str(path)!r}: malformed key (expected 40 Z85 characters, as `edge-rt keys` writes)") from None
    return raw


def _read_certificate(path: str | Path, what: str) -> tuple[bytes, bytes | None]:
    import zmq.auth

    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{what} {str(p)!r}: no such file (create keys with: edge-rt keys NAME --dir DIR)")
    try:
        public, secret = zmq.auth.load_certificate(p)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {str(p)!r}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    except ValueError:
        raise ConfigError(f"{what} {str(p)!r}: not a ZeroMQ certificate (no public-key line)") from None
    return _z85_key(public, what, p), secret


def load_public_key(path: str | Path, what: str = "public key file") -> bytes:
    """The Z85 public key of a `.key` (or `.key_secret`) certificate file."""
    return _read_certificate(path, what)[0]


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair, Z85-encoded (40 bytes each)."""

    public: bytes
    secret: bytes = field(repr=False)

    @classmethod
    def load(cls, path: str | Path, what: str = "secret key file") -> KeyPair:
        import zmq

        public, secret = _read_certificate(path, what)
        p = Path(path).expanduser()
        if secret is None:
            hint = (
                f" (that is the public half; use {p.name[: -len(PUBLIC_SUFFIX)]}{SECRET_SUFFIX})"
                if p.name.endswith(PUBLIC_SUFFIX)
                else ""
            )
            raise ConfigError(f"{what} {str(p)!r}: has no secret key{hint}")
        secret = _z85_key(secret, what, p)
        if zmq.curve_public(secret) != public:
            raise ConfigError(f"{what} {str(p)!r}: its public key does not belong to its secret key")
        return cls(public, secret)


@dataclass(frozen=True)
class ServerKeys:
    """The publisher's side: its own key pair and the directory of client public keys it admits."""

    pair: KeyPair
    allow_dir: Path
    allowed: tuple[bytes, ...] = field(repr=False)  # checked at load; the authenticator reads the directory itself

    @classmethod
    def load(cls, secret_key_file: str | Path, allow_dir: str | Path) -> ServerKeys:
        pair = KeyPair.load(secret_key_file, "--curve-secret-key")
        d = Path(allow_dir).expanduser()
        if not d.is_dir():
            raise ConfigError(f"--curve-allow {str(d)!r}: no such directory (put the clients' public .key files there)")
        files = sorted(d.glob(f"*{PUBLIC_SUFFIX}"))
        if not files:
            raise ConfigError(
                f"--curve-allow {str(d)!r}: no client public keys (*{PUBLIC_SUFFIX}); nobody could subscribe. "
                "Create one with: edge-rt keys NAME --dir DIR, and copy its .key file there"
            )
        # zmq.auth skips a broken file silently (it logs and then admits nobody): refuse it here instead.
        allowed = tuple(load_public_key(f, "--curve-allow: key file") for f in files)
        return cls(pair, d, allowed)


@dataclass(frozen=True)
class ClientKeys:
    """A subscriber's side, or a box's that publishes to a broker: the server's public key and the
    client's own key pair."""

    server_public: bytes
    pair: KeyPair

    @classmethod
    def load(cls, server_key_file: str | Path, secret_key_file: str | Path) -> ClientKeys:
        return cls(load_public_key(server_key_file, "--curve-server-key"), KeyPair.load(secret_key_file, "--curve-secret-key"))

    @classmethod
    def from_options(cls, server_key_file: str | Path | None, secret_key_file: str | Path | None) -> ClientKeys | None:
        """None when neither is given; both or neither, since one without the other cannot connect."""
        if server_key_file is None and secret_key_file is None:
            return None
        if server_key_file is None or secret_key_file is None:
            missing = "--curve-server-key" if server_key_file is None else "--curve-secret-key"
            raise ConfigError(f"{missing} is missing: CURVE needs the server's public key and this client's secret key file")
        return cls.load(server_key_file, secret_key_file)


def create_keys(name: str, directory: str | Path, force: bool = False) -> tuple[Path, Path]:
    """Write DIR/NAME.key and DIR/NAME.key_secret (mode 0600) with `zmq.auth.create_certificates`.

    The pair is written into a private temporary directory first and then linked into place, so the
    secret is never readable by others, not even for a moment, and an existing file is never half
    overwritten: without `force`, a file that already exists is refused.
    """
    import zmq.auth

    if not _KEY_NAME.match(name) or name.endswith((PUBLIC_SUFFIX, SECRET_SUFFIX)):
        raise ConfigError(f"key name {name!r}: use letters, digits, '.', '_' or '-' (no path, no .key suffix)")
    d = Path(directory).expanduser()
    if d.exists() and not d.is_dir():
        raise ConfigError(f"--dir {str(d)!r}: not a directory")
    public, secret = d / f"{name}{PUBLIC_SUFFIX}", d / f"{name}{SECRET_SUFFIX}"
    existing = [p for p in (public, secret) if p.exists()]
    if existing and not force:
        raise ConfigError(
            f"{str(existing[0])!r} already exists; pass --force to replace the key pair (clients holding the old public key stop working)"
        )
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=d, prefix=".edge-rt-keys-") as tmp:  # mode 0700
            made_public, made_secret = (Path(p) for p in zmq.auth.create_certificates(tmp, name))
            os.chmod(made_secret, 0o600)
            os.chmod(made_public, 0o644)
            linked: list[Path] = []
            try:
                for made, final in ((made_secret, secret), (made_public, public)):
                    if force:
                        os.replace(made, final)
                    else:
                        os.link(made, final)  # fails if it appeared meanwhile: never overwrite without --force
                        linked.append(final)
            except FileExistsError:
                for p in linked:  # never leave half a pair
                    p.unlink()
                raise
    except FileExistsError as exc:
        raise ConfigError(
            f"{str(exc.filename2 or exc.filename)!r} already exists; pass --force to replace the key pair"
        ) from None
    except OSError as exc:
        raise ConfigError(f"--dir {str(d)!r}: cannot write keys: {exc.strerror}") from None
    return public, secret


# --- exposure --------------------------------------------------------------------------------------


def endpoint_host(endpoint: str) -> str | None:
    """The host part of a tcp:// endpoint (brackets of an IPv6 literal removed); None for other transports."""
    scheme, _, rest = endpoint.partition("://")
    if scheme.lower() != "tcp":
        return None
    rest = rest.split(";")[-1]  # tcp://SOURCE;HOST:PORT names the far end last
    if rest.startswith("["):
        return rest[1:].partition("]")[0]
    return rest.rpartition(":")[0] if ":" in rest else rest


def is_local_endpoint(endpoint: str) -> bool:
    """True when nothing beyond this machine can connect: ipc://, inproc://, or tcp on loopback."""
    scheme = endpoint.partition("://")[0].lower()
    if scheme in ("ipc", "inproc"):
        return True
    host = endpoint_host(endpoint)
    if host is None:
        return False  # pgm, ws, ...: network transports
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        return False  # '*', a hostname or an interface name: reachable from outside


def is_ipv6_endpoint(endpoint: str) -> bool:
    host = endpoint_host(endpoint)
    return host is not None and ":" in host


CONNECT_PREFIX = "connect:"


def split_publish(endpoint: str) -> tuple[str, bool]:
    """`connect:tcp://BROKER:PORT` -> (`tcp://BROKER:PORT`, True): the publisher dials a broker's frontend;
    anything else is an address it binds -> (endpoint, False)."""
    if endpoint.startswith(CONNECT_PREFIX):
        return endpoint[len(CONNECT_PREFIX) :], True
    return endpoint, False


def check_exposure(endpoint: str, curve: bool, insecure: bool) -> None:
    """A network-reachable endpoint without CURVE is refused unless the user said --insecure: one that
    binds (anyone who reaches it reads) and one that connects (the path to the broker is read) alike."""
    address, connect = split_publish(endpoint)
    if curve or insecure or "://" not in address or is_local_endpoint(address):
        return  # (a malformed endpoint is the publisher's to refuse, with the forms it accepts)
    if connect:
        raise ConfigError(
            f"--publish {endpoint}: the broker is beyond this machine and the link is not encrypted; add "
            "--curve-secret-key FILE (this box's key pair) --curve-server-key FILE (the broker's public .key), "
            "or --insecure to publish in the clear anyway"
        )
    raise ConfigError(
        f"--publish {endpoint}: reachable beyond this machine without encryption; "
        "add --curve-secret-key FILE --curve-allow DIR (keys from `edge-rt keys`), "
        "or --insecure to publish in the clear anyway (or bind tcp://127.0.0.1:PORT)"
    )
