"""`synthetic://WIDTHxHEIGHT` sources: a camera stand-in for benchmarks and soak runs.

Pre-rendered frames in memory, so what is measured is the pipeline, not video decoding.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import ConfigError, SourceError

SYNTHETIC_SCHEME = "synthetic://"
SYNTHETIC_DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class SyntheticSettings:
    width: int
    height: int
    fps: float
    frames: int  # distinct pre-rendered frames, cycled


def parse_synthetic(uri: str, name: str, fps: float | None = None) -> SyntheticSettings:
    """`synthetic://WIDTHxHEIGHT[?fps=N][&frames=N]`; a rate given both here and by --fps must agree."""
    usage = f"source {name!r}: {uri!r}: expected synthetic://WIDTHxHEIGHT[?fps=N][&frames=N], e.g. synthetic://1280x720?fps=30"
    size, _, query = uri[len(SYNTHETIC_SCHEME) :].partition("?")
    m = re.fullmatch(r"(\d+)x(\d+)", size.lower())
    if not m:
        raise SourceError(usage)
    width, height = int(m.group(1)), int(m.group(2))
    if not (16 <= width <= 8192 and 16 <= height <= 8192):
        raise SourceError(f"source {name!r}: synthetic frame size {width}x{height}: each side must be 16..8192")
    options: dict[str, float] = {}
    for part in filter(None, query.split("&")):
        key, sep, value = part.partition("=")
        if key not in ("fps", "frames") or not sep:
            raise SourceError(f"{usage} (unknown option {part!r})")
        try:
            options[key] = float(value)
        except ValueError:
            raise SourceError(f"source {name!r}: synthetic {key}={value!r} is not a number") from None
    uri_fps = options.get("fps")
    if uri_fps is not None and not 0 < uri_fps <= 10_000:
        raise SourceError(f"source {name!r}: synthetic fps={uri_fps:g}: must be > 0 and <= 10000")
    if uri_fps is not None and fps is not None and uri_fps != fps:
        raise ConfigError(f"source {name!r}: fps given twice ({uri_fps:g} in the URI, {fps:g} from --fps); give it once")
    frames = options.get("frames", 8)
    if not 1 <= frames <= 64 or frames != int(frames):
        raise SourceError(f"source {name!r}: synthetic frames={frames:g}: must be a whole number 1..64")
    return SyntheticSettings(width, height, fps or uri_fps or SYNTHETIC_DEFAULT_FPS, int(frames))


@lru_cache(maxsize=4)
def render_synthetic(width: int, height: int, frames: int) -> tuple[np.ndarray, ...]:
    """A few frames of shapes moving over a fixed background; read-only, so every source can share them."""
    import cv2

    base = np.empty((height, width, 3), np.uint8)
    base[..., 0] = (np.arange(width) * 255 // width)[None, :]
    base[..., 1] = (np.arange(height) * 255 // height)[:, None]
    base[..., 2] = 96
    noisy = cv2.add(base, np.random.default_rng(0).integers(0, 32, base.shape, dtype=np.uint8))
    size = max(min(width, height) // 6, 4)
    out = []
    for i in range(frames):
        im = noisy.copy()
        x = (width - size) * i // max(frames, 1)
        y = (height - size) * (frames - i) // (frames + 1)
        cv2.rectangle(im, (x, height // 4), (x + size, height // 4 + size), (255, 255, 255), -1)
        cv2.circle(im, (width - size, y + size // 2), size // 2, (0, 0, 255), -1)
        im.flags.writeable = False
        out.append(im)
    return tuple(out)


class SyntheticReader:
    """A `VideoReader` over pre-rendered frames: a read costs nothing, so decoding is not what is
    measured. The capture thread paces it at the spec's fps, as it paces a file."""

    def __init__(self, uri: str, name: str, fps: float | None = None) -> None:
        # The spec's fields, not the spec: sources.py imports this module for the scheme and its parser.
        cfg = parse_synthetic(uri, name, fps)
        self._frames = render_synthetic(cfg.width, cfg.height, cfg.frames)
        self._next = zlib.crc32(name.encode()) % cfg.frames  # sources out of step with each other

    def read(self) -> tuple[bool, np.ndarray | None]:
        frame = self._frames[self._next]
        self._next = (self._next + 1) % len(self._frames)
        return True, frame

    def release(self) -> None:
        pass
