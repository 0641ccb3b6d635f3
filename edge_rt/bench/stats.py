"""What every benchmark shares: percentiles, the progress bar, size parsing, the JSON file."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

QS = (50, 90, 95, 99)


def pct(values: Sequence[float] | np.ndarray, qs: Iterable[float] = QS) -> dict[str, float]:
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return {}
    out = {f"p{q:g}": float(v) for q, v in zip(qs, np.percentile(data, list(qs)))}
    out["max"] = float(data.max())
    out["mean"] = float(data.mean())
    return out


class Progress:
    """A one-line progress bar on stderr when it is a terminal; silent otherwise (logs stay clean)."""

    def __init__(self, total: float, label: str) -> None:
        self.total, self.label = max(total, 1e-9), label
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def update(self, done: float) -> None:
        now = time.monotonic()
        if not self.tty or now - self._last < 0.1:
            return
        self._last = now
        frac = min(done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r{self.label:<28} [{bar:<30}] {frac:4.0%}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\r" + " " * 70 + "\r")
            sys.stderr.flush()


def parse_shape(text: str | None) -> tuple[int, int] | None:
    """`--shape HEIGHTxWIDTH`: the model input of a dynamic-shape model."""
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--shape {text!r}: expected HEIGHTxWIDTH, e.g. 384x640") from None
    return h, w


def parse_frame_size(text: str) -> tuple[int, int]:
    """`--frame-size WIDTHxHEIGHT`: camera frames, written the way cameras are (1280x720)."""
    m = re.fullmatch(r"(\d+)x(\d+)", text.strip().lower())
    if not m:
        raise ConfigError(f"--frame-size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720")
    w, h = int(m.group(1)), int(m.group(2))
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise ConfigError(f"--frame-size {text!r}: each side must be 16..8192")
    return w, h


def write_json(obj: Any, path: Path) -> None:
    def default(o: Any) -> Any:
        return asdict(o) if hasattr(o, "__dataclass_fields__") else str(o)

    payload = [asdict(x) for x in obj] if isinstance(obj, list) else asdict(obj)
    if isinstance(payload, dict):
        payload.pop("timeline", None)
    path.write_text(json.dumps(payload, indent=2, default=default))
