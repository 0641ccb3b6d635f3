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


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def on_signals(handler: Callable[[], None]) -> None:
    def _handle(signum: int, _frame: Any) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        handler()

    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)
