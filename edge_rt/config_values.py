"""One checker per kind of config value: each names the key, what it accepts and what came.

config.py maps each key of `edge-rt run`'s config to one of them; they hold no state.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Callable
from typing import Any

from .errors import ConfigError
from .wire.schema import BOX_NAME_MAX, is_box_name
from .wire.security import endpoint_host, split_publish

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 2, 4, 4, 4, 4
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40


def show_value(value: Any) -> str:
    """A bad value for an error line: repr, cut short, so a YAML alias bomb or a megabyte string stays one short line."""
    try:
        return _REPR.repr(value)
    except ValueError:  # an int with more digits than Python will print
        return f"<{type(value).__name__}>"


def clip_text(text: str, limit: int = 200) -> str:
    """A third party's message on one line and not too long: a YAML problem may quote a 5000-character tag."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_number(kind: type, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
            raise ConfigError(f"{key}: expected {'an integer' if kind is int else 'a number'}, got {show_value(value)}")
        if isinstance(value, float) and not math.isfinite(value):  # .nan passes every range check; .inf is no timeout
            raise ConfigError(f"{key}: expected a finite number, got {show_value(value)}")
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise ConfigError(f"{key}: must be {'>' if lo_open else '>='} {lo:g}, got {show_value(value)}")
        if hi is not None and value > hi:
            raise ConfigError(f"{key}: must be <= {hi:g}, got {show_value(value)}")
        try:
            return kind(value)
        except OverflowError:  # an integer beyond a float's range
            raise ConfigError(f"{key}: {show_value(value)} is too large") from None

    return check


def check_fps(key: str, value: Any) -> float:
    """0 is a likely guess for 'as fast as possible', which is what leaving --fps out does."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
        raise ConfigError(
            f"{key}: {value:g} frames/s would never read a frame: give a rate > 0 to pace the sources like a camera, "
            "or leave it out to read files as fast as the pipeline takes them"
        )
    return float(check_number(float, 0.0, lo_open=True)(key, value))


def check_choice(*options: str) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        if value not in options:
            raise ConfigError(f"{key}: {show_value(value)} is not one of {', '.join(options)}")
        return str(value)

    return check


def check_string(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: expected a non-empty string, got {show_value(value)}")
    return value


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")


def check_publish(key: str, value: Any) -> str:
    """An address to bind (tcp://HOST:PORT, ipc://PATH, ...) or connect:ADDRESS of a broker's frontend."""
    text = check_string(key, value)
    address, connect = split_publish(text)
    scheme, sep, rest = address.partition("://")
    if not sep or not rest or not _SCHEME.match(scheme):
        raise ConfigError(
            f"{key}: {show_value(value)}: expected tcp://HOST:PORT, ipc://PATH or inproc://NAME to bind, "
            "or connect:tcp://BROKER:PORT to publish to an `edge-rt broker`"
        )
    if connect and endpoint_host(address) == "*":
        raise ConfigError(f"{key}: {show_value(value)}: connect: dials the broker's address (a host name or IP), not '*'")
    return text


def check_box_name(key: str, value: Any) -> str:
    if not is_box_name(value):
        raise ConfigError(
            f"{key}: {show_value(value)} is not a box name: use 1 to {BOX_NAME_MAX} letters, digits, '.', '_' or '-' "
            "(it prefixes the topics: NAME/SOURCE)"
        )
    return str(value)


def check_boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {show_value(value)}")
    return value


def check_classes(key: str, value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for v in items:
        if isinstance(v, str) and v.strip().isascii() and v.strip().isdigit():  # not '²': isdigit() but not int()
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(f"{key}: expected class ids (integers >= 0), got {show_value(v)}")
        out.append(v)
    return tuple(out)


def check_window(key: str, value: Any) -> tuple[float, float]:
    """`0.3,0.6` (the flag, or a YAML string) or `[0.3, 0.6]` (a YAML list) -> (0.3, 0.6)."""
    parts = value.split(",") if isinstance(value, str) else value
    hint = "expected LO,HI: two confidences with 0 <= LO < HI <= 1, e.g. 0.3,0.6"
    if not isinstance(parts, (list, tuple)) or len(parts) != 2:
        raise ConfigError(f"{key}: {hint}; got {show_value(value)}")
    try:
        lo, hi = (float(p) if isinstance(p, str) else check_number(float)(key, p) for p in parts)
    except (ValueError, ConfigError):
        raise ConfigError(f"{key}: {hint}; got {show_value(value)}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi <= 1):
        raise ConfigError(f"{key}: {hint}; got {show_value(value)}")
    return (lo, hi)


def check_device_value(key: str, value: Any) -> str:
    from .engines import DEVICES, OPENVINO_DEVICES, check_device  # the list lives with the backends; loads none of them

    try:
        return check_device(check_string(key, value))
    except ConfigError:
        raise ConfigError(f"{key}: {show_value(value)} is not one of {', '.join(DEVICES + OPENVINO_DEVICES)}") from None


def optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    return lambda key, value: None if value is None else check(key, value)
