"""What every command shares: the one-line-error parser, logging set-up, signal handling."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger("edge_rt")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit code 2, not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


DEVICE_HELP = "auto, cpu, cuda, tensorrt, openvino (its CPU), openvino:GPU, openvino:NPU or openvino:AUTO"
HINT_CHOICES = ("auto", "latency", "throughput")
PRECISION_CHOICES = ("auto", "f32", "bf16", "f16")
PRECISION_HELP = "OpenVINO's inference precision: f32, bf16 or f16 (default auto: what the export recorded, else the device's)"


def device_arg(value: str) -> str:
    """`--device`: checked as argparse reads it, so a typo is the parser's one line (exit 2)."""
    from ..engines import check_device  # the list lives with the backends; importing it loads none of them
    from ..errors import ConfigError

    try:
        return check_device(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--device {value!r}: ")) from None


def add_service_options(p: argparse.ArgumentParser, counts: str) -> None:
    """--stats-interval, --log-level and --log-format, as every long-running service command has them."""
    p.add_argument("--stats-interval", type=float, default=60.0, metavar="SEC", help=f"log {counts} every SEC s (default 60, 0: off)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info", help="default info")
    p.add_argument("--log-format", choices=("text", "json"), default="text", help="text (default) or json: one object per line")


def setup_logging(level: str, fmt: str = "text") -> None:
    """Text for a terminal or the journal; `json` (one object per line) for log shippers."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (ISO 8601, UTC), level, logger, msg, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        import datetime
        import json

        out = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def quiet_native_logs(level: str) -> None:
    """FFmpeg (inside OpenCV) prints a line per failed reopen straight to stderr, which floods an
    outage, breaks JSON logs and can carry a camera URL: silence it unless debugging. Read when
    OpenCV first opens a stream, so this runs before any source is opened."""
    import os

    import cv2

    debug = level == "debug"
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "24" if debug else "-8")  # AV_LOG_WARNING / AV_LOG_QUIET
    # OpenCV's own "[ WARN:0@1.2] ... can't be used to capture by name", once per failed open.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_INFO if debug else cv2.utils.logging.LOG_LEVEL_ERROR)


def on_signals(handler: Callable[[], None]) -> None:
    def _handle(signum: int, _frame: Any) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        handler()

    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)
