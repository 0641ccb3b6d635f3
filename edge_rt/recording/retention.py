"""Keep a clip folder within its age and size: the oldest clips go first."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from .clip import PART

log = logging.getLogger("edge_rt.record")


def sweep(folder: Path, keep_days: float, keep_mb: float, now: float | None = None) -> int:
    """Delete clips (SOURCE/*.mp4) older than keep_days, then the oldest until the rest fit keep_mb;
    also `.part` files a killed run left (older than an hour). Returns how many files went."""
    now = time.time() if now is None else now
    clips: list[tuple[float, int, Path]] = []
    removed = 0
    for path in folder.glob("*/*"):
        try:
            st = path.stat()
        except OSError:
            continue
        if path.name.endswith(".mp4" + PART):
            if now - st.st_mtime > 3600:
                removed += _remove(path)
        elif path.suffix == ".mp4":
            clips.append((st.st_mtime, st.st_size, path))
    clips.sort()
    total = sum(size for _, size, _ in clips)
    for mtime, size, path in clips:
        if now - mtime <= keep_days * 86400 and total <= keep_mb * 1e6:
            break
        if _remove(path):
            removed += 1
            total -= size
    return removed


def _remove(path: Path) -> int:
    try:
        path.unlink()
        return 1
    except FileNotFoundError:
        return 0
    except OSError as exc:
        log.warning("record: could not delete %s: %s", path, exc)
        return 0
