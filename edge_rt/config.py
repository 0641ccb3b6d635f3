"""One typed config for `edge-rt run`, from a YAML file and the command line (flags win).

Loaded once in main() and passed down; every check names the bad key and what it accepts.
"""

from __future__ import annotations

import math
import re
import reprlib
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .recording.settings import SourceRecord, parse_record, source_records
from .schema import BOX_NAME_MAX, is_box_name
from .security import check_exposure, endpoint_host, split_publish
from .sources import SourceKind, SourceSpec, parse_source
from .tracking.settings import SourceTracking, TrackConfig, parse_track, source_tracking


@dataclass(frozen=True)
class RunConfig:
    model: str
    sources: tuple[SourceSpec, ...]
    name: str | None = None  # the box's name in every message; given, it also prefixes topics: NAME/SOURCE
    publish: str = "tcp://127.0.0.1:5555"  # loopback: beyond the box needs CURVE or --insecure; connect:EP dials a broker
    curve_secret_key: str | None = None  # the publisher's NAME.key_secret: publish with CURVE
    curve_allow: str | None = None  # bind: directory of the clients' public NAME.key files it admits
    curve_server_key: str | None = None  # connect: the broker's public NAME.key (the box is its CURVE client)
    insecure: bool = False  # allow a non-loopback endpoint without CURVE
    encoding: str = "json"
    device: str = "auto"
    engine_hint: str = "auto"  # OpenVINO: latency (one request) or throughput (several in flight); auto by the sources
    engine_precision: str = "auto"  # OpenVINO: f32, bf16, f16; auto: what the export recorded, else the device's default
    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    classes: tuple[int, ...] | None = None
    agnostic_nms: bool = False
    imgsz: int | None = None  # only for models with dynamic height/width
    max_batch: int | None = None  # only for models with a dynamic batch axis
    max_wait_ms: float = 10.0
    await_subscribers: int = 0
    await_timeout: float = 30.0
    stall_timeout: float = 5.0
    open_timeout: float = 5.0
    reconnect_max: float = 30.0
    threads: int | None = None
    stats_interval: float = 60.0  # seconds between stats log lines; 0 turns them off
    log_level: str = "info"
    log_format: str = "text"  # or "json": one object per line, for log shippers
    metrics_port: int | None = None  # Prometheus /metrics on this port (0: any free port)
    metrics_addr: str = "127.0.0.1"
    engine_timeout: float = 60.0  # an inference call longer than this (after the first) ends the run
    collect: str | None = None  # save frames the model is unsure about to this folder, as a dataset
    collect_conf: tuple[float, float] | None = None  # (LO, HI): a detection with LO <= conf < HI selects the frame
    collect_interval: float = 5.0  # per source: at most one collected frame every this many seconds
    collect_max: int = 1000  # frames the collect folder may hold (earlier runs' included); then collection stops
    tracking: tuple[SourceTracking, ...] = ()  # per source: tracker, zones, lines (`track:`, --track); empty: boxes only
    recording: tuple[SourceRecord, ...] = ()  # per recorded source: clips around its events (`record:`, --record DIR)

    @property
    def box(self) -> str:
        """The name every message carries: `name`, else this machine's hostname."""
        return self.name if self.name is not None else default_box_name()

    @property
    def box_topics(self) -> bool:
        """Topics are NAME/SOURCE only for a name given on purpose: a single box keeps its plain
        SOURCE topics (and its subscribers), whatever the machine is called."""
        return self.name is not None


def default_box_name() -> str:
    """The hostname, made a valid box name (anything but letters, digits, '.', '_', '-' becomes '-')."""
    name = re.sub(r"[^A-Za-z0-9_.\-]", "-", socket.gethostname())[:BOX_NAME_MAX].strip("-")
    return name or "edge-rt"


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 2, 4, 4, 4, 4
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40


def _show(value: Any) -> str:
    """A bad value for an error line: repr, cut short, so a YAML alias bomb or a megabyte string stays one short line."""
    try:
        return _REPR.repr(value)
    except ValueError:  # an int with more digits than Python will print
        return f"<{type(value).__name__}>"


def _clip(text: str, limit: int = 200) -> str:
    """A third party's message on one line and not too long: a YAML problem may quote a 5000-character tag."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(kind: type, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
            raise ConfigError(f"{key}: expected {'an integer' if kind is int else 'a number'}, got {_show(value)}")
        if isinstance(value, float) and not math.isfinite(value):  # .nan passes every range check; .inf is no timeout
            raise ConfigError(f"{key}: expected a finite number, got {_show(value)}")
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise ConfigError(f"{key}: must be {'>' if lo_open else '>='} {lo:g}, got {_show(value)}")
        if hi is not None and value > hi:
            raise ConfigError(f"{key}: must be <= {hi:g}, got {_show(value)}")
        try:
            return kind(value)
        except OverflowError:  # an integer beyond a float's range
            raise ConfigError(f"{key}: {_show(value)} is too large") from None

    return check


def _fps(key: str, value: Any) -> float:
    """0 is a likely guess for 'as fast as possible', which is what leaving --fps out does."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
        raise ConfigError(
            f"{key}: {value:g} frames/s would never read a frame: give a rate > 0 to pace the sources like a camera, "
            "or leave it out to read files as fast as the pipeline takes them"
        )
    return float(_number(float, 0.0, lo_open=True)(key, value))


def _choice(*options: str) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        if value not in options:
            raise ConfigError(f"{key}: {_show(value)} is not one of {', '.join(options)}")
        return str(value)

    return check


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: expected a non-empty string, got {_show(value)}")
    return value


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")


def _publish(key: str, value: Any) -> str:
    """An address to bind (tcp://HOST:PORT, ipc://PATH, ...) or connect:ADDRESS of a broker's frontend."""
    text = _string(key, value)
    address, connect = split_publish(text)
    scheme, sep, rest = address.partition("://")
    if not sep or not rest or not _SCHEME.match(scheme):
        raise ConfigError(
            f"{key}: {_show(value)}: expected tcp://HOST:PORT, ipc://PATH or inproc://NAME to bind, "
            "or connect:tcp://BROKER:PORT to publish to an `edge-rt broker`"
        )
    if connect and endpoint_host(address) == "*":
        raise ConfigError(f"{key}: {_show(value)}: connect: dials the broker's address (a host name or IP), not '*'")
    return text


def _box_name(key: str, value: Any) -> str:
    if not is_box_name(value):
        raise ConfigError(
            f"{key}: {_show(value)} is not a box name: use 1 to {BOX_NAME_MAX} letters, digits, '.', '_' or '-' "
            "(it prefixes the topics: NAME/SOURCE)"
        )
    return str(value)


def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {_show(value)}")
    return value


def _classes(key: str, value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for v in items:
        if isinstance(v, str) and v.strip().isascii() and v.strip().isdigit():  # not '²': isdigit() but not int()
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(f"{key}: expected class ids (integers >= 0), got {_show(v)}")
        out.append(v)
    return tuple(out)


def _window(key: str, value: Any) -> tuple[float, float]:
    """`0.3,0.6` (the flag, or a YAML string) or `[0.3, 0.6]` (a YAML list) -> (0.3, 0.6)."""
    parts = value.split(",") if isinstance(value, str) else value
    hint = "expected LO,HI: two confidences with 0 <= LO < HI <= 1, e.g. 0.3,0.6"
    if not isinstance(parts, (list, tuple)) or len(parts) != 2:
        raise ConfigError(f"{key}: {hint}; got {_show(value)}")
    try:
        lo, hi = (float(p) if isinstance(p, str) else _number(float)(key, p) for p in parts)
    except (ValueError, ConfigError):
        raise ConfigError(f"{key}: {hint}; got {_show(value)}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi <= 1):
        raise ConfigError(f"{key}: {hint}; got {_show(value)}")
    return (lo, hi)


def _device(key: str, value: Any) -> str:
    from .engines import DEVICES, OPENVINO_DEVICES, check_device  # the list lives with the backends; loads none of them

    try:
        return check_device(_string(key, value))
    except ConfigError:
        raise ConfigError(f"{key}: {_show(value)} is not one of {', '.join(DEVICES + OPENVINO_DEVICES)}") from None


def _optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    return lambda key, value: None if value is None else check(key, value)


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "model": _string,
    "name": _optional(_box_name),
    "publish": _publish,
    "curve_secret_key": _optional(_string),
    "curve_allow": _optional(_string),
    "curve_server_key": _optional(_string),
    "insecure": _boolean,
    "encoding": _choice("json", "msgpack"),
    "device": _device,
    "engine_hint": _choice("auto", "latency", "throughput"),
    "engine_precision": _choice("auto", "f32", "bf16", "f16"),
    "conf": _number(float, 0.0, 1.0),
    "iou": _number(float, 0.0, 1.0),
    "max_det": _number(int, 1),
    "classes": _classes,
    "agnostic_nms": _boolean,
    "imgsz": _optional(_number(int, 32)),
    "max_batch": _optional(_number(int, 1)),
    "max_wait_ms": _number(float, 0.0),
    "await_subscribers": _number(int, 0),
    "await_timeout": _number(float, 0.0),
    "stall_timeout": _number(float, 0.0, lo_open=True),
    "open_timeout": _number(float, 0.0, lo_open=True),
    "reconnect_max": _number(float, 0.0, lo_open=True),
    "threads": _optional(_number(int, 1)),
    "stats_interval": _number(float, 0.0),
    "log_level": _choice("debug", "info", "warning", "error"),
    "log_format": _choice("text", "json"),
    "metrics_port": _optional(_number(int, 0, 65535)),
    "metrics_addr": _string,
    "engine_timeout": _number(float, 0.0, lo_open=True),
    "collect": _optional(_string),
    "collect_conf": _optional(_window),
    "collect_interval": _number(float, 0.0),
    "collect_max": _number(int, 1),
}
# Keys that only make sense per source but may be given once for all of them.
_SOURCE_DEFAULT_KEYS = {"fps", "loop", "track", "record"}
_SOURCE_KEYS = ("name", "uri", "fps", "loop", "track", "zones", "lines", "record")


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config {str(p)!r}: no such file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {str(p)!r}: cannot read it: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"config {str(p)!r}: broken YAML{where}: {_clip(problem)}") from None
    except RecursionError:
        raise ConfigError(f"config {str(p)!r}: nested too deeply") from None
    except (ArithmeticError, AttributeError, LookupError, TypeError, ValueError) as exc:
        # PyYAML's constructors raise these on values they cannot build: 2001-13-45, a +99:00 offset, a 5000-digit
        # integer, `!!bool maybe` (KeyError), `!!float ''` (IndexError), `!!timestamp x` (AttributeError).
        detail = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        raise ConfigError(f"config {str(p)!r}: a value YAML cannot represent: {_clip(detail)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {str(p)!r}: expected a mapping of options at the top level, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def check_relative_paths(values: Mapping[str, Any], config: str | Path) -> None:
    """Relative paths in a config are read from the current folder, as on the command line (docs/running.md).
    One that is missing there but lies beside the config is the usual surprise: say so, with the fix."""
    here = Path(config).parent
    wanted: list[tuple[str, Any]] = [("model", values.get("model"))]
    raw = values.get("sources")
    for i, entry in enumerate(raw if isinstance(raw, list) else [raw]):
        uri = entry.get("uri") if isinstance(entry, Mapping) else entry
        if isinstance(uri, str) and "=" in uri and not re.match(r"^[^=]*[/:]", uri):
            uri = uri.split("=", 1)[1]  # NAME=URI
        wanted.append((f"sources[{i}]", uri))
    for key, value in wanted:
        if not isinstance(value, str) or not value or "://" in value or "!" in value or value.isdigit():
            continue
        path = Path(value)
        if path.is_absolute() or value.startswith("~") or path.exists() or not (here / path).exists():
            continue
        raise ConfigError(
            f"{key}: {value!r} is not in the current folder ({Path.cwd()}) but lies beside the config: relative paths "
            f"in a config are read from the folder edge-rt runs in; write {str(here / path)!r} or run from {str(here)!r}"
        )


def _source_entry(entry: Any, index: int, fps: float | None, loop: bool) -> SourceSpec:
    if isinstance(entry, int) and not isinstance(entry, bool):
        entry = str(entry)  # `sources: [0]`: a camera index written as a YAML number
    if isinstance(entry, str):
        spec = parse_source(entry, index, fps=fps)
        return replace(spec, loop=loop) if loop and spec.kind is SourceKind.FILE else spec
    if isinstance(entry, dict):
        unknown = set(entry) - set(_SOURCE_KEYS)
        if unknown:
            raise ConfigError(f"sources[{index}]: unknown key {_show(sorted(unknown, key=str)[0])} (known: {', '.join(_SOURCE_KEYS)})")
        if "uri" not in entry:
            raise ConfigError(f"sources[{index}]: missing 'uri'")
        uri = entry["uri"]
        if isinstance(uri, int) and not isinstance(uri, bool):
            uri = str(uri)
        if not isinstance(uri, str):  # str() of a list would be looked up as a file name
            raise ConfigError(f"sources[{index}].uri: expected a string, got {_show(uri)}")
        name = entry.get("name")
        if name is not None:
            name = _string(f"sources[{index}].name", name)
        src_fps = _optional(_fps)(f"sources[{index}].fps", entry.get("fps", fps))
        spec = parse_source(uri, index, fps=src_fps, name=name)
        src_loop = _boolean(f"sources[{index}].loop", entry.get("loop", loop and spec.kind is SourceKind.FILE))
        return parse_source(uri, index, fps=src_fps, loop=src_loop, name=name) if src_loop else spec
    raise ConfigError(f"sources[{index}]: expected a string or a mapping with 'uri', got {type(entry).__name__}")


def build_run_config(file_values: Mapping[str, Any], cli_values: Mapping[str, Any], origin: str = "config") -> RunConfig:
    """Merge defaults <- file <- command line, validate every value, parse the sources."""
    # tracking and recording: from track/zones/lines and record
    known = {f.name for f in fields(RunConfig) if f.name not in ("tracking", "recording")} | _SOURCE_DEFAULT_KEYS
    for key in file_values:
        if key not in known:
            raise ConfigError(f"{origin}: unknown key {_show(key)} (known: {', '.join(sorted(known))})")
    merged: dict[str, Any] = dict(file_values)
    merged.update({k: v for k, v in cli_values.items() if v is not None})
    if isinstance(cli_values.get("record"), str) and isinstance(file_values.get("record"), Mapping):
        merged["record"] = {**file_values["record"], "dir": cli_values["record"]}  # --record DIR keeps the file's times
    if "model" not in merged:
        raise ConfigError("no model: pass --model FILE.onnx or set 'model' in the config")
    raw_sources = merged.pop("sources", None)
    if raw_sources is None or raw_sources == [] or raw_sources == ():
        raise ConfigError("no source: pass --source (repeatable) or set 'sources' in the config")
    if not isinstance(raw_sources, (list, tuple)):
        raw_sources = [raw_sources]
    fps = _optional(_fps)("fps", merged.pop("fps", None))
    loop = _boolean("loop", merged.pop("loop", False))
    sources = tuple(_source_entry(e, i, fps, loop) for i, e in enumerate(raw_sources))
    real = [s for s in sources if s.kind is not SourceKind.SYNTHETIC]  # a benchmark's cameras: loop is moot
    if loop and real and not any(s.kind is SourceKind.FILE for s in real):  # it loops the files; with none, nothing
        raise ConfigError(f"loop applies to files only, and no source is a file (the first is a {real[0].kind.value} source)")
    recording = source_records(raw_sources, sources, parse_record("record", merged.pop("record", None)))
    tracking = _tracking(raw_sources, sources, parse_track("track", merged.pop("track", None)), {r.source for r in recording})
    values = {key: _CHECKS[key](key, value) for key, value in merged.items()}
    config = RunConfig(sources=sources, tracking=tracking, recording=recording, **values)
    _check_security(config)
    _check_collect(config)
    return config


def _tracking(
    raw: list[Any] | tuple[Any, ...], sources: tuple[SourceSpec, ...], default: TrackConfig | None, recorded: set[str]
) -> tuple[SourceTracking, ...]:
    """Each source's tracker, zones and lines (`track:` globally or per source); () when nothing is tracked.
    A recorded source is tracked: its clips follow its events."""
    out = []
    for entry, spec in zip(raw, sources):
        t = source_tracking(spec.name, entry, default) if isinstance(entry, dict) else SourceTracking(spec.name, default)
        if spec.name in recorded and t.track is None:
            if isinstance(entry, dict) and entry.get("track") is False:
                raise ConfigError(f"source {spec.name!r}: track: false, but record needs tracking (its clips follow events)")
            t = replace(t, track=default or TrackConfig())
        out.append(t)
    return tuple(out) if any(t.track is not None for t in out) else ()


def _check_collect(config: RunConfig) -> None:
    """collect and collect_conf go together, and the window must reach above the published threshold."""
    if config.collect is not None and config.collect_conf is None:
        raise ConfigError("collect: needs collect_conf LO,HI (--collect-conf 0.3,0.6): the confidences of the frames to keep")
    if config.collect_conf is not None and config.collect is None:
        raise ConfigError("collect_conf: needs collect DIR (--collect DIR): the folder to save the frames in")
    if config.collect_conf is not None and config.collect_conf[1] <= config.conf:
        raise ConfigError(
            f"collect_conf: HI {config.collect_conf[1]:g} is not above conf {config.conf:g}, so no published detection "
            f"falls in the window; raise HI or lower --conf"
        )


def _check_security(config: RunConfig) -> None:
    """CURVE needs both halves, which for a box that binds (the CURVE server) are its key and an
    allow-list, and for one that connects to a broker (its client) its key and the broker's public key;
    an endpoint reachable from the network needs CURVE or --insecure."""
    if split_publish(config.publish)[1]:
        if config.curve_allow is not None:
            raise ConfigError(
                f"curve_allow (--curve-allow): publish {config.publish} connects to a broker, which decides who may publish "
                "(its --curve-allow-publishers); give the broker's public key instead: --curve-server-key FILE"
            )
        if (config.curve_secret_key is None) != (config.curve_server_key is None):
            missing = (
                "curve_server_key (--curve-server-key FILE)"
                if config.curve_server_key is None
                else "curve_secret_key (--curve-secret-key FILE)"
            )
            raise ConfigError(
                f"{missing} is missing: CURVE to a broker needs this box's secret key file and the broker's public key file"
            )
    else:
        if config.curve_server_key is not None:
            raise ConfigError(
                "curve_server_key (--curve-server-key): only for publish connect:tcp://BROKER:PORT; a box that binds is the "
                "CURVE server: give --curve-allow DIR (its subscribers' public keys)"
            )
        if (config.curve_secret_key is None) != (config.curve_allow is None):
            missing = (
                "curve_allow (--curve-allow DIR)" if config.curve_allow is None else "curve_secret_key (--curve-secret-key FILE)"
            )
            raise ConfigError(
                f"{missing} is missing: CURVE needs the publisher's secret key file and the directory of client public keys it admits"
            )
    check_exposure(config.publish, curve=config.curve_secret_key is not None, insecure=config.insecure)
