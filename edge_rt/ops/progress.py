"""Progress of long work (epochs, folds, tuning iterations, calibration frames).

A bar redrawn in place on a terminal; plain timestamped lines where stderr is a log or a pipe (a
journal full of carriage returns is unreadable), at most one every ``every_s`` seconds plus the last.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 24


class Progress:
    def __init__(self, total: int, what: str, stream: TextIO | None = None, every_s: float = 5.0) -> None:
        self.total = max(0, int(total))
        self.what = what
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._every_s = every_s
        self._start = time.monotonic()
        self._last_line = -float("inf")
        self._closed = False

    def update(self, n: int = 1, note: str = "") -> None:
        self.done = min(self.total, self.done + n) if self.total else self.done + n
        self._emit(note, final=self.total > 0 and self.done >= self.total)

    def close(self, note: str = "") -> None:
        """Finish the line (a no-op when the last update already did)."""
        if not self._closed:
            self._emit(note, final=True)

    def _emit(self, note: str, final: bool) -> None:
        if self._closed:
            return
        now = time.monotonic()
        elapsed = now - self._start
        count = f"{self.done}/{self.total}" if self.total else str(self.done)
        tail = f" {note}" if note else ""
        if self._tty:
            frac = self.done / self.total if self.total else 0.0
            filled = int(round(frac * _WIDTH))
            bar = "#" * filled + "." * (_WIDTH - filled)
            self._stream.write(f"\r{self.what} [{bar}] {count} {elapsed:.0f}s{tail}\033[K" + ("\n" if final else ""))
        elif final or now - self._last_line >= self._every_s:
            self._stream.write(f"{self.what}: {count} ({elapsed:.0f} s){tail}\n")
            self._last_line = now
        self._stream.flush()
        self._closed = final

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
