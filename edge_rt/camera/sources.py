"""Sources: what `--source` names (specs and their parsing) and the frames they produce.

The slots that hand frames from capture threads (capture.py) to the batcher are in slot.py.
"""

from __future__ import annotations

import enum
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, SourceError
from ..ops.redact import redact_url
from .synthetic import SYNTHETIC_SCHEME, parse_synthetic

log = logging.getLogger("edge_rt.sources")

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+\Z")  # \Z: '$' would let a trailing newline into a topic
_STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


class SourceKind(enum.Enum):
    CAMERA = "camera"  # a camera index, e.g. 0
    DEVICE = "device"  # a device path, e.g. /dev/video0
    STREAM = "stream"  # a network URL: RTSP, HTTP, RTMP, UDP
    FILE = "file"  # a video file
    GSTREAMER = "gstreamer"  # a GStreamer pipeline ending in appsink
    SYNTHETIC = "synthetic"  # in-memory frames for benchmarks: synthetic://1280x720?fps=30

    @property
    def live(self) -> bool:
        """Never ends and keeps only its newest frame."""
        return self is not SourceKind.FILE

    @property
    def waits_for_ticks(self) -> bool:
        """Paced by waiting for the next tick before reading (files, synthetic frames), rather than by
        dropping what a camera delivers early."""
        return self in (SourceKind.FILE, SourceKind.SYNTHETIC)

    @property
    def can_stall(self) -> bool:
        """A device or a network peer can freeze; frames in memory cannot."""
        return self.live and self is not SourceKind.SYNTHETIC


@dataclass(frozen=True)
class SourceSpec:
    """What the user asked for; parsed once, validated before any thread starts."""

    name: str
    uri: str
    kind: SourceKind
    fps: float | None = None  # pace to this rate, like a camera
    loop: bool = False  # restart a file at its end

    @property
    def keeps_latest_only(self) -> bool:
        """Live and paced sources drop what the pipeline cannot keep up with; files do not."""
        return self.kind.live or self.fps is not None


def classify(uri: str) -> SourceKind:
    if uri.lower().startswith(SYNTHETIC_SCHEME):
        return SourceKind.SYNTHETIC
    if uri.isascii() and uri.isdigit():  # '²' is a digit to isdigit() but no camera index to int()
        return SourceKind.CAMERA
    if uri.startswith("/dev/"):
        return SourceKind.DEVICE
    if uri.lower().startswith(_STREAM_SCHEMES):
        return SourceKind.STREAM
    if " ! " in uri or uri.rstrip().endswith("appsink"):
        return SourceKind.GSTREAMER
    return SourceKind.FILE


def split_name(text: str) -> tuple[str | None, str]:
    """`NAME=URI` names a source; an `=` inside a URL or a GStreamer pipeline does not."""
    head, sep, tail = text.partition("=")
    if sep and _NAME_RE.match(head) and tail:
        return head, tail
    return None, text


def parse_source(text: str, index: int, *, fps: float | None = None, loop: bool = False, name: str | None = None) -> SourceSpec:
    """Turn one `--source` value into a spec; names default to cam0, cam1, ..."""
    if not text or not text.strip():
        raise SourceError("--source: empty value; give a camera index, device, URL, file or NAME=URI")
    parsed_name, uri = split_name(text.strip())
    name = name or parsed_name or f"cam{index}"
    if not _NAME_RE.match(name):
        raise SourceError(f"source name {name!r}: use letters, digits, '.', '_' or '-' (it becomes the topic)")
    if fps is not None and fps <= 0:
        raise ConfigError(f"source {name!r}: fps must be > 0, got {fps}")
    kind = classify(uri)
    if kind is SourceKind.FILE:
        try:
            path = Path(uri).expanduser()
            found = path.is_file()
        except (OSError, RuntimeError):  # '~nobody/x.mp4': no such home; a name longer than the OS allows
            found = False
        if not found:
            raise SourceError(f"source {name!r}: no such file {uri!r} (and not a camera index, /dev path, URL or pipeline)")
        if not os.access(path, os.R_OK):
            raise SourceError(f"source {name!r}: file {uri!r} is not readable")
        uri = str(path)
    if kind is SourceKind.STREAM and not re.match(r"^[a-zA-Z]+://[^/\s]+", uri):
        raise SourceError(f"source {name!r}: malformed URL {redact_url(uri)!r}; expected e.g. rtsp://host:554/path")
    if loop and kind is not SourceKind.FILE:
        raise ConfigError(f"source {name!r}: loop applies to files only, not {kind.value} sources")
    if kind is SourceKind.SYNTHETIC:
        fps = parse_synthetic(uri, name, fps).fps  # always paced: a camera has a frame rate
    return SourceSpec(name=name, uri=uri, kind=kind, fps=fps, loop=loop)


@dataclass(frozen=True, eq=False)
class Frame:
    """One captured image and when it was captured: wall clock for messages, monotonic for durations."""

    source: str
    index: int  # the source's own frame counter, counting frames the pipeline skipped
    image: np.ndarray  # H x W x 3, BGR, uint8
    capture_ns: int  # time.time_ns() when read() returned
    capture_mono_ns: int  # time.perf_counter_ns() at the same moment
    media_s: float | None = None  # a file's own clock (its position, s): what a tracker steps by; None when live

    def __post_init__(self) -> None:
        im = self.image
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ValueError(f"Frame.image: expected HxWx3 uint8, got shape {im.shape} dtype {im.dtype}")
