"""Opening a model with Ultralytics, and keeping its log readable, for train and tune.

A model Ultralytics cannot open ends in its traceback: a missing YAML is a ``FileNotFoundError``
from deep inside, and an official name such as ``yolo11n.pt`` that is not on disk (nor in its
``weights_dir``) is downloaded, which on a box without internet is a ``ConnectionError`` after its
retries. ``YOLO_OFFLINE=1`` does not stop that download in 8.4 (it only changes the message); any
other missing ``.pt`` asks GitHub's API for a release asset of that name, then ``torch.load`` fails.
:func:`check_model` refuses those cases before any work (an official name while ``YOLO_OFFLINE``
is set included), :func:`load_model` turns what is left into one :class:`~edge_rt.errors.ModelError` line.

Ultralytics logs to stdout with ANSI colours whatever stdout is, plus progress bars redrawn with
carriage returns: a few hundred lines of escape codes in a log file. :func:`ultralytics_log` keeps
that on a terminal and, elsewhere, only its warnings and errors, uncoloured, while edge_rt's own
progress lines (stderr) say how the run goes; the tuner's ``yolo train`` subprocesses get
``YOLO_VERBOSE=False``. ``YOLO_VERBOSE=true`` in the environment (Ultralytics' own switch) keeps the
full log, uncoloured. Ultralytics is imported inside the functions only.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import ModelError

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MODEL_YAML = (".yaml", ".yml")


def _env(name: str) -> bool:
    """An Ultralytics switch read as Ultralytics reads it (1, true, yes, on ...)."""
    from ultralytics.utils import env_bool

    return bool(env_bool(name))


def _fetch_hint(model: str) -> str:
    name = Path(model).name
    return (
        f"copy {name} here or into Ultralytics' weights_dir, or pass its path; "
        f"or start untrained from {Path(name).with_suffix('.yaml').name}"
    )


def check_model(model: str) -> None:
    """Refuse a model Ultralytics cannot open, before any dataset check or training starts.

    Raises:
        ModelError: no such checkpoint or model YAML, or an official checkpoint that would have to
            be downloaded while ``YOLO_OFFLINE`` is set (one line that says how to supply it).
    """
    path = Path(model)
    if "://" in model or path.is_file():
        return
    if path.suffix.lower() in _MODEL_YAML:
        from ultralytics.nn.tasks import yaml_model_load

        try:
            yaml_model_load(model)  # finds Ultralytics' own configs too: yolo11n.yaml is yolo11.yaml at scale n
        except FileNotFoundError:
            raise ModelError(
                f"--model {model}: no such model YAML; pass a file or an Ultralytics model name such as yolo11n.yaml"
            ) from None
        return
    if path.suffix.lower() != ".pt":
        return  # Ultralytics' own business (a name without suffix, a Triton URL ...); load_model reports it
    if path.is_absolute():
        raise ModelError(f"--model {model}: no such file; pass a .pt checkpoint or a model YAML such as yolo11n.yaml")
    from ultralytics.utils import SETTINGS
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

    if (Path(SETTINGS["weights_dir"]) / path).is_file():  # where Ultralytics looks next
        return
    if path.name not in GITHUB_ASSETS_NAMES or path.parent != Path("."):
        raise ModelError(f"--model {model}: no such file; pass a .pt checkpoint or a model YAML such as yolo11n.yaml")
    if _env("YOLO_OFFLINE"):
        raise ModelError(
            f"--model {model}: not on disk, and YOLO_OFFLINE is set so Ultralytics cannot fetch it; {_fetch_hint(model)}"
        )


def load_model(model: str) -> Any:
    """``YOLO(model)``, after :func:`check_model`; a failed download or a missing file is one line.

    Raises:
        ModelError: the model cannot be found or fetched.
    """
    check_model(model)
    from ultralytics import YOLO

    try:
        return YOLO(model)
    except FileNotFoundError as exc:
        raise ModelError(f"--model {model}: {exc}; pass a .pt checkpoint or a model YAML such as yolo11n.yaml") from None
    except ConnectionError as exc:  # Ultralytics' safe_download, after its retries
        why = " ".join(_ANSI.sub("", str(exc)).replace("❌", "").split())
        raise ModelError(f"--model {model}: not on disk and the download failed ({why}); {_fetch_hint(model)}") from None


class _NoColour(logging.Filter):
    """Strips the ANSI codes of Ultralytics' ``colorstr`` from each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "\x1b" in message:
            record.msg, record.args = _ANSI.sub("", message), ()
        return True


def _stream_is_tty(logger: logging.Logger) -> bool:
    """Whether the logger writes to a terminal (a closed stream, as test capture leaves behind, is not one)."""
    for stream in [getattr(h, "stream", None) for h in logger.handlers] or [sys.stdout]:
        try:
            if stream is not None and stream.isatty():
                return True
        except (ValueError, AttributeError, OSError):
            continue
    return False


@contextmanager
def ultralytics_log() -> Iterator[None]:
    """Within: Ultralytics' full log on a terminal; elsewhere its warnings and errors only, without colours.

    Its progress bars follow (Ultralytics draws none above level INFO). The logger's level and
    filters are restored on the way out, so nothing leaks into a later command in the same process.
    """
    from ultralytics.utils import LOGGER

    if _stream_is_tty(LOGGER):
        yield
        return
    level = LOGGER.level
    no_colour = _NoColour()
    LOGGER.addFilter(no_colour)
    asked = os.environ.get("YOLO_VERBOSE")
    quiet = not (asked and _env("YOLO_VERBOSE"))  # unless the full log is asked for
    if quiet:
        LOGGER.setLevel(max(level, logging.WARNING))
        # The tuner trains each iteration in a `yolo train` subprocess, which writes to the same stdout:
        # Ultralytics' own switch, read when it starts, quiets it (errors only, no bars).
        os.environ["YOLO_VERBOSE"] = "False"
    try:
        yield
    finally:
        LOGGER.setLevel(level)
        LOGGER.removeFilter(no_colour)
        if quiet:
            if asked is None:
                os.environ.pop("YOLO_VERBOSE", None)
            else:
                os.environ["YOLO_VERBOSE"] = asked
