"""Frames for INT8 calibration and export verification: a folder of images or a video file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def load_frames(source: str | Path, count: int = 64) -> list[np.ndarray]:
    """Up to `count` BGR frames spread evenly over the source (not just its first seconds)."""
    path = Path(source)
    if count < 1:
        raise ConfigError(f"calibration frame count must be >= 1, got {count}")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"calibration {str(path)!r}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        picks = [files[i] for i in np.linspace(0, len(files) - 1, min(count, len(files))).round().astype(int)]
        frames = [im for im in (cv2.imread(str(p)) for p in dict.fromkeys(picks)) if im is not None]
    elif path.is_file():
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise ConfigError(f"calibration {str(path)!r}: not a readable video or image folder")
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or count
        wanted = set(np.linspace(0, max(total - 1, 0), min(count, max(total, 1))).round().astype(int).tolist())
        frames, i = [], 0
        while len(frames) < len(wanted):
            ok, im = cap.read()
            if not ok:
                break
            if i in wanted:
                frames.append(im)
            i += 1
        cap.release()
    else:
        raise ConfigError(f"calibration {str(path)!r}: no such file or folder")
    if not frames:
        raise ConfigError(f"calibration {str(path)!r}: no readable frames")
    return frames
