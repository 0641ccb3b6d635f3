"""Opening a source with OpenCV: the backend per kind of source, and the timeouts set at open time."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..errors import SourceError
from ..ops.redact import redact_url
from .sources import SourceKind, SourceSpec
from .synthetic import SyntheticReader

if TYPE_CHECKING:
    from .reconnect import CaptureSettings


class VideoReader(Protocol):
    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


def open_capture(spec: SourceSpec, settings: CaptureSettings) -> VideoReader:
    """Open with OpenCV; timeouts can only be set at open time, so they go in here.

    A camera index on Linux opens through V4L2 only, and not at all when its /dev/video node is
    absent: OpenCV's any-backend search tried the Orbbec backend too, which printed its own
    "Camera index out of range" line on every reconnect, past --log-format json.
    """
    if spec.kind is SourceKind.SYNTHETIC:
        return SyntheticReader(spec.uri, spec.name, spec.fps)
    import cv2

    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(settings.open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(settings.stall_timeout_s * 500),  # well under the stall timeout (a frozen camera returns late frames)
    ]
    linux = sys.platform.startswith("linux")
    if spec.kind is SourceKind.CAMERA:
        node = Path(f"/dev/video{int(spec.uri)}")
        if linux and not node.exists():
            raise SourceError(f"source {spec.name!r}: no camera {spec.uri} ({node} does not exist)")
        cap = cv2.VideoCapture(int(spec.uri), cv2.CAP_V4L2 if linux else cv2.CAP_ANY)
    elif spec.kind is SourceKind.GSTREAMER:
        cap = cv2.VideoCapture(spec.uri, cv2.CAP_GSTREAMER)
    elif spec.kind is SourceKind.DEVICE:
        if not Path(spec.uri).exists():
            raise SourceError(f"source {spec.name!r}: no camera at {spec.uri} (it does not exist)")
        cap = cv2.VideoCapture(spec.uri, cv2.CAP_ANY)
    else:
        cap = cv2.VideoCapture(spec.uri, cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"source {spec.name!r}: cannot open {redact_url(spec.uri)!r}")
    return cap


def gstreamer_supported() -> bool:
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False
