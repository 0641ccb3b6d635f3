"""One typed config for `edge-rt run`, from a YAML file and the command line (flags win).

Loaded once in main() and passed down; every check names the bad key and what it accepts.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .camera.sources import SourceKind, SourceSpec, parse_source
from .config_values import (
    check_boolean,
    check_box_name,
    check_choice,
    check_classes,
    check_device_value,
    check_fps,
    check_number,
    check_publish,
    check_string,
    check_window,
    clip_text,
    optional,
    show_value,
)
from .errors import ConfigError
from .recording.settings import SourceRecord, parse_record, source_records
from .tracking.settings import SourceTracking, TrackConfig, parse_track, source_tracking
from .wire.schema import BOX_NAME_MAX
from .wire.security import check_exposure, split_publish


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


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "model": check_string,
    "name": optional(check_box_name),
    "publish": check_publish,
    "curve_secret_key": optional(check_string),
    "curve_allow": optional(check_string),
    "curve_server_key": optional(check_string),
    "insecure": check_boolean,
    "encoding": check_choice("json", "msgpack"),
    "device": check_device_value,
    "engine_hint": check_choice("auto", "latency", "throughput"),
    "engine_precision": check_choice("auto", "f32", "bf16", "f16"),
    "conf": check_number(float, 0.0, 1.0),
    "iou": check_number(float, 0.0, 1.0),
    "max_det": check_number(int, 1),
    "classes": check_classes,
    "agnostic_nms": check_boolean,
    "imgsz": optional(check_number(int, 32)),
    "max_batch": optional(check_number(int, 1)),
    "max_wait_ms": check_number(float, 0.0),
    "await_subscribers": check_number(int, 0),
    "await_timeout": check_number(float, 0.0),
    "stall_timeout": check_number(float, 0.0, lo_open=True),
    "open_timeout": check_number(float, 0.0, lo_open=True),
    "reconnect_max": check_number(float, 0.0, lo_open=True),
    "threads": optional(check_number(int, 1)),
    "stats_interval": check_number(float, 0.0),
    "log_level": check_choice("debug", "info", "warning", "error"),
    "log_format": check_choice("text", "json"),
    "metrics_port": optional(check_number(int, 0, 65535)),
    "metrics_addr": check_string,
    "engine_timeout": check_number(float, 0.0, lo_open=True),
    "collect": optional(check_string),
    "collect_conf": optional(check_window),
    "collect_interval": check_number(float, 0.0),
    "collect_max": check_number(int, 1),
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
        raise ConfigError(f"config {str(p)!r}: broken YAML{where}: {clip_text(problem)}") from None
    except RecursionError:
        raise ConfigError(f"config {str(p)!r}: nested too deeply") from None
    except (ArithmeticError, AttributeError, LookupError, TypeError, ValueError) as exc:
        # PyYAML's constructors raise these on values they cannot build: 2001-13-45, a +99:00 offset, a 5000-digit
        # integer, `!!bool maybe` (KeyError), `!!float ''` (IndexError), `!!timestamp x` (AttributeError).
        detail = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        raise ConfigError(f"config {str(p)!r}: a value YAML cannot represent: {clip_text(detail)}") from None
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
            raise ConfigError(f"sources[{index}]: unknown key {show_value(sorted(unknown, key=str)[0])} (known: {', '.join(_SOURCE_KEYS)})")
        if "uri" not in entry:
            raise ConfigError(f"sources[{index}]: missing 'uri'")
        uri = entry["uri"]
        if isinstance(uri, int) and not isinstance(uri, bool):
            uri = str(uri)
        if not isinstance(uri, str):  # str() of a list would be looked up as a file name
            raise ConfigError(f"sources[{index}].uri: expected a string, got {show_value(uri)}")
        name = entry.get("name")
        if name is not None:
            name = check_string(f"sources[{index}].name", name)
        src_fps = optional(check_fps)(f"sources[{index}].fps", entry.get("fps", fps))
        spec = parse_source(uri, index, fps=src_fps, name=name)
        src_loop = check_boolean(f"sources[{index}].loop", entry.get("loop", loop and spec.kind is SourceKind.FILE))
        return parse_source(uri, index, fps=src_fps, loop=src_loop, name=name) if src_loop else spec
    raise ConfigError(f"sources[{index}]: expected a string or a mapping with 'uri', got {type(entry).__name__}")


def build_run_config(file_values: Mapping[str, Any], cli_values: Mapping[str, Any], origin: str = "config") -> RunConfig:
    """Merge defaults <- file <- command line, validate every value, parse the sources."""
    # tracking and recording: from track/zones/lines and record
    known = {f.name for f in fields(RunConfig) if f.name not in ("tracking", "recording")} | _SOURCE_DEFAULT_KEYS
    for key in file_values:
        if key not in known:
            raise ConfigError(f"{origin}: unknown key {show_value(key)} (known: {', '.join(sorted(known))})")
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
    fps = optional(check_fps)("fps", merged.pop("fps", None))
    loop = check_boolean("loop", merged.pop("loop", False))
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
