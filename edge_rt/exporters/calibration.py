"""Frames for INT8 calibration and export verification: a folder of images or a video file.

Calibration streams: `CalibrationFrames` decodes its frames again on every pass instead of holding
them, so the memory an export needs does not grow with `--calibration-frames` (64 frames of a 4K
clip would be 1.6 GB of pixels before any activation is stored).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# Fewer usable frames than this calibrates ranges on too little data to trust: the export stops with
# one line instead of writing a doubtful model (ExportOptions.check refuses asking for fewer).
MIN_CALIBRATION_FRAMES = 8
# A frame whose pixels barely vary (a black frame from a camera starting up, a blank slide) says
# nothing about activation ranges; it is skipped and not counted as usable.
_FLAT_STD = 2.0


def _image_files(path: Path, what: str) -> list[Path]:
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"{what} {str(path)!r}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    return files


def _spread(total: int, count: int) -> list[int]:
    """`count` indices spread evenly over 0..total-1 (not just the first seconds)."""
    return sorted(set(np.linspace(0, max(total - 1, 0), min(count, max(total, 1))).round().astype(int).tolist()))


def iter_frames(source: str | Path, count: int = 64, what: str = "--calibration") -> Iterator[np.ndarray]:
    """Up to `count` BGR frames spread evenly over the source, decoded one at a time; `what` names the
    source in errors (the flag it came from: --calibration or --verify-source)."""
    path = Path(source)
    if count < 1:
        raise ConfigError(f"calibration frame count must be >= 1, got {count}")
    if path.is_dir():
        files = _image_files(path, what)
        for i in _spread(len(files), count):
            im = cv2.imread(str(files[i]))
            if im is not None:
                yield im
    elif path.is_file():
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise ConfigError(f"{what} {str(path)!r}: not a readable video or image folder")
        try:
            total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or count
            wanted = _spread(total, count)
            last, i = wanted[-1], 0
            wanted_set = set(wanted)
            while i <= last:
                ok = cap.grab()  # grab without decoding the frames we skip
                if not ok:
                    break
                if i in wanted_set:
                    ok, im = cap.retrieve()
                    if ok and im is not None:
                        yield im
                i += 1
        finally:
            cap.release()
    else:
        raise ConfigError(f"{what} {str(path)!r}: no such file or folder")


def load_frames(source: str | Path, count: int = 64) -> list[np.ndarray]:
    """Up to `count` BGR frames spread evenly over the source, all in memory (verification, TensorRT)."""
    frames = list(iter_frames(source, count))
    if not frames:
        raise ConfigError(f"calibration {str(source)!r}: no readable frames")
    return frames


def usable(frame: np.ndarray) -> bool:
    """A frame with some content: not flat (black, grey, a single colour)."""
    small = frame[:: max(1, frame.shape[0] // 64), :: max(1, frame.shape[1] // 64)]
    return bool(small.std() > _FLAT_STD)


class FrameSource:
    """Up to `count` frames of a source, decoded again on every pass and never all held (verification)."""

    def __init__(self, source: str | Path, count: int = 64, what: str = "--verify-source") -> None:
        self.source = Path(source)
        self.count = count
        self.what = what

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter_frames(self.source, self.count, self.what)

    def checked(self) -> FrameSource:
        """Fails in one line now, before an export, when the source holds no readable frame."""
        if next(iter(self), None) is None:
            raise ConfigError(f"{self.what} {str(self.source)!r}: no readable frames")
        return self


class CalibrationFrames:
    """A re-iterable stream of usable calibration frames; each pass decodes the source again.

    `checked()` makes one cheap pass first and raises one clear ConfigError when the source holds too
    few usable frames, before minutes of export work are spent.
    """

    def __init__(self, source: str | Path, count: int = 64) -> None:
        self.source = Path(source)
        self.count = count
        self.usable_frames: int | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        return (im for im in iter_frames(self.source, self.count) if usable(im))

    def checked(self, minimum: int = MIN_CALIBRATION_FRAMES) -> CalibrationFrames:
        read = flat = 0
        for im in iter_frames(self.source, self.count):
            read += 1
            flat += not usable(im)
        self.usable_frames = read - flat
        need = min(minimum, self.count)
        if self.usable_frames < need:
            blank = f" ({flat} blank)" if flat else ""
            raise ConfigError(
                f"--calibration {str(self.source)!r}: only {self.usable_frames} usable frames of {read} read{blank}; "
                f"INT8 needs at least {need}: give a longer clip or more images"
            )
        return self
