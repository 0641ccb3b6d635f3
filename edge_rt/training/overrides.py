"""Ultralytics settings from the command line (``KEY=VALUE``) and from YAML files (``--cfg``).

Values are parsed as the ``yolo`` CLI parses them (``ultralytics.cfg.smart_value``: numbers, bools,
None, Python literals) and keys are checked against Ultralytics' own defaults
(``ultralytics.cfg.DEFAULT_CFG_DICT``) before any training starts: Ultralytics would otherwise stop
with a SyntaxError and its whole help text, or, for a key inside a cfg file, at the start of the run.
A handful of keys name things that edge_rt decides itself (where the run goes, what is trained):
those either map onto edge_rt's own options or are refused with the option to use instead.

Ultralytics is imported inside the functions (its import sets threads and writes a settings file).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

# Keys that are also `edge-rt train` options: given as KEY=VALUE or in a cfg file they fill that option.
MAPPED_KEYS: frozenset[str] = frozenset(
    {"data", "model", "epochs", "imgsz", "batch", "device", "project", "name", "seed", "workers", "patience", "freeze"}
)
# Keys edge_rt sets itself; the value says what to do instead. A key listed with an allowed value
# (mode: train, task: detect) is accepted when it has that value, as in a run's own args.yaml.
REFUSED_KEYS: dict[str, str] = {
    "mode": "edge-rt train always trains (evaluate with edge-rt eval, export with edge-rt export)",
    "task": "edge_rt trains detection models only (task=detect)",
    "save_dir": "edge_rt names the run directory from --project and --name; delete the key",
    "cfg": "use --cfg FILE (a cfg file cannot name another one)",
    "resume": "use --resume [LAST.pt]",
}
_ACCEPTED_AS_IS: dict[str, object] = {"mode": "train", "task": "detect", "resume": False, "cfg": None}


def _ultralytics_keys() -> frozenset[str]:
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return frozenset(DEFAULT_CFG_DICT)


def parse_value(raw: str) -> Any:
    """A value as the `yolo` CLI reads it: 3 -> int, 0.5 -> float, true/false/none, [1, 2], else str."""
    from ultralytics.cfg import smart_value

    return smart_value(raw)


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """``["lr0=0.005", "cos_lr=true"]`` -> ``{"lr0": 0.005, "cos_lr": True}``, keys checked.

    Raises:
        ValueError: a token is not KEY=VALUE, a key is given twice or is unknown (one line).
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise ValueError(f"'{pair}': expected KEY=VALUE (e.g. lr0=0.005 or mosaic=0)")
        if not raw:
            raise ValueError(f"'{pair}': no value; write {key}=VALUE ({key}=None for Ultralytics' default)")
        if key in out:
            raise ValueError(f"'{key}' given twice as KEY=VALUE; keep one")
        # project and name stay strings, as the yolo CLI keeps them ("001" is a name, not 1).
        out[key] = raw if key in {"project", "name"} and raw.lower() != "none" else parse_value(raw)
    check_keys(out, "KEY=VALUE overrides")
    return out


def load_cfg(path: Path) -> dict[str, Any]:
    """The settings in a YAML file (e.g. a tuner's best_hyperparameters.yaml), keys checked.

    Raises:
        ValueError: missing file, bad YAML, not a mapping, or an unknown key (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--cfg {path}: no such file; pass a YAML of Ultralytics settings (e.g. best_hyperparameters.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"--cfg {path}: not valid YAML ({first}); fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ValueError(f"--cfg {path}: expected a mapping of setting: value (e.g. lr0: 0.005), got {type(data).__name__}")
    check_keys(data, f"--cfg {path}")
    return dict(data)


def check_keys(settings: Mapping[str, Any], source: str) -> None:
    """Refuse unknown keys (suggesting the closest known one) and keys edge_rt sets itself.

    Raises:
        ValueError: one line naming every bad key in ``source`` and what to write instead.
    """
    if not settings:
        return  # nothing to check: Ultralytics (seconds to import) is not needed yet
    for key, why in REFUSED_KEYS.items():
        if key in settings and not (key in _ACCEPTED_AS_IS and settings[key] == _ACCEPTED_AS_IS[key]):
            raise ValueError(f"'{key}={settings[key]}' in {source}: {why}")
    known = _ultralytics_keys()
    unknown = [k for k in settings if k not in known and k not in REFUSED_KEYS]
    if unknown:
        parts = [f"'{key}'" + _suggest(key, known) for key in unknown]
        raise ValueError(
            f"unknown Ultralytics setting {', '.join(parts)} in {source}; "
            "see https://docs.ultralytics.com/usage/cfg/ for the valid keys"
        )


def _suggest(key: str, known: frozenset[str]) -> str:
    """' (did you mean 'x'?)' with the closest key, or the equally close ones ('lr': 'lrf' or 'lr0')."""
    close = difflib.get_close_matches(key, sorted(known), n=3)
    if not close:
        return ""
    ratio = [difflib.SequenceMatcher(None, key, c).ratio() for c in close]
    best = [c for c, r in zip(close, ratio) if r == ratio[0]]
    return f" (did you mean {' or '.join(repr(c) for c in best)}?)"


def check_values(settings: Mapping[str, Any], source: str) -> None:
    """Ultralytics' own type and range checks (lr0 in [0, 1], epochs an int...), as one line.

    Raises:
        ValueError: the first bad value, in Ultralytics' words.
    """
    if not settings:
        return
    from ultralytics.cfg import check_cfg

    try:
        check_cfg(dict(settings), hard=True)
    except (TypeError, ValueError) as exc:
        text = " ".join(str(exc).split())
        raise ValueError(f"{source}: {text}") from None


def split_mapped(settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(keys that are edge_rt options, everything else for Ultralytics); accepted-as-is keys dropped."""
    mapped = {k: v for k, v in settings.items() if k in MAPPED_KEYS}
    rest = {k: v for k, v in settings.items() if k not in MAPPED_KEYS and k not in REFUSED_KEYS}
    return mapped, rest
