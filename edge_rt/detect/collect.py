"""`edge-rt run --collect DIR`: frames the model is unsure about, saved as a dataset to relabel and retrain.

A frame is kept when one of its detections has a confidence in [LO, HI): the band where a model is
most often wrong, and so where new labels teach it most. It is saved as a JPEG under ``DIR/images``
with the model's predictions (every box with conf >= LO) as a YOLO label under ``DIR/labels``, next to
a ``data.yaml`` with the model's class names, so ``edge-rt dataset check DIR/data.yaml`` passes and a
labelling tool opens it as it is.

The publishing thread only decides and copies (a frame every few seconds per camera at most); one
writer thread encodes and writes, behind a small bounded queue. What the queue cannot take is dropped
and counted, never waited for: collecting must not slow the detections that other services wait on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import reprlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..camera.sources import Frame
from ..errors import ConfigError
from .postprocess import Detections

log = logging.getLogger("edge_rt.collect")

QUEUE_SIZE = 4  # frames waiting for the writer: a 1080p frame is 6 MB, a slow disk must not grow memory
JPEG_QUALITY = 95  # what is relabelled is what is retrained on: keep compression artefacts small
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class CollectStage(Protocol):
    """The pipeline calls `offer` on the publishing thread for every frame and `counters` per source;
    the runner starts it before the run and closes it after."""

    def offer(self, frame: Frame, dets: Detections) -> None: ...

    def counters(self, source: str) -> dict[str, int]: ...

    def start(self) -> None: ...

    def close(self, timeout_s: float = 2.0) -> None: ...

    def summary(self) -> str: ...


class NullCollector:
    """Collection off: the pipeline's default, doing nothing."""

    def offer(self, frame: Frame, dets: Detections) -> None:
        pass

    def counters(self, source: str) -> dict[str, int]:
        return {}

    def start(self) -> None:
        pass

    def close(self, timeout_s: float = 2.0) -> None:
        pass

    def summary(self) -> str:
        return ""


@dataclass(frozen=True)
class CollectSettings:
    directory: Path
    lo: float  # keep a frame when a detection's conf is in [lo, hi); label its boxes with conf >= lo
    hi: float
    interval_s: float = 5.0  # per source: at most one frame every interval_s seconds (monotonic capture clock)
    max_frames: int = 1000  # frames DIR may hold, those from earlier runs included; then collection stops


@dataclass(frozen=True, eq=False)
class _Item:
    """A selected frame on its way to the writer thread (the image is a copy the pipeline never touches)."""

    source: str
    stem: str
    image: np.ndarray
    label: str


def yolo_label(dets: Detections, width: int, height: int, lo: float) -> str:
    """YOLO lines 'cls cx cy w h' normalised to the frame, for every box with conf >= lo.

    Boxes were clipped to the frame by postprocessing; one that came out with no width or height is
    left out (`dataset check` refuses zero-size boxes)."""
    lines = []
    for (x1, y1, x2, y2), conf, cls in zip(dets.xyxy.tolist(), dets.conf.tolist(), dets.cls.tolist()):
        if conf < lo:
            continue
        x1, x2 = min(max(x1 / width, 0.0), 1.0), min(max(x2 / width, 0.0), 1.0)
        y1, y2 = min(max(y1 / height, 0.0), 1.0), min(max(y2 / height, 0.0), 1.0)
        w, h = x2 - x1, y2 - y1
        if w <= 0 or h <= 0:
            continue
        lines.append(f"{int(cls)} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {w:.6f} {h:.6f}")
    return "".join(line + "\n" for line in lines)


def file_stem(source: str, capture_ns: int, index: int) -> str:
    """`cam0_20261125T105310.123Z_000042`: the source name (a topic, never its URI, so never a camera
    password), the capture time in UTC, and the frame index the published message carries."""
    seconds, ns = divmod(capture_ns, 1_000_000_000)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f".{ns // 1_000_000:03d}Z"
    return f"{_UNSAFE.sub('_', source)}_{stamp}_{index:06d}"


def write_data_yaml(directory: Path, names: Mapping[int, str]) -> None:
    """The dataset's data.yaml (and classes.txt for labelling tools), written once; a DIR collected with
    another model's classes is refused, since its label ids would mean other things."""
    import yaml

    data_yaml = directory / "data.yaml"
    wanted = {int(k): str(v) for k, v in sorted(names.items())}
    if data_yaml.is_file():
        try:
            existing = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(
                f"--collect {directory}: cannot read its data.yaml ({type(exc).__name__}); fix or remove it"
            ) from None
        have = existing.get("names") if isinstance(existing, dict) else None
        if isinstance(have, list):
            have = dict(enumerate(have))
        try:
            same = isinstance(have, dict) and {int(k): str(v) for k, v in have.items()} == wanted
        except (TypeError, ValueError):  # a key that is not a class id
            same = False
        if not same:
            raise ConfigError(
                f"--collect {directory}: its data.yaml lists classes {reprlib.repr(have)}, "
                f"this model has {reprlib.repr(wanted)}; "
                "collect into another folder"
            )
        return
    text = (
        "# Frames `edge-rt run --collect` kept, labelled with the model's predictions: correct the labels,\n"
        "# then `edge-rt dataset split` this folder and train on the result.\n"
        "train: images\nval: images\n" + yaml.safe_dump({"names": wanted}, sort_keys=True, allow_unicode=True)
    )
    _write_atomic(data_yaml, text.encode("utf-8"))
    _write_atomic(directory / "classes.txt", "".join(f"{n}\n" for n in wanted.values()).encode("utf-8"))


def _write_atomic(path: Path, data: bytes) -> None:
    """Write beside the target, then rename: a reader (or a crash) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # a full disk must not keep half a frame
            tmp.unlink()
        raise


class FrameCollector:
    """Selects frames on the publishing thread, writes them on thread `edge_rt-collect`."""

    def __init__(self, settings: CollectSettings, names: Mapping[int, str], queue_size: int = QUEUE_SIZE) -> None:
        self.settings = settings
        self.images = settings.directory / "images"
        self.labels = settings.directory / "labels"
        try:
            self.images.mkdir(parents=True, exist_ok=True)
            self.labels.mkdir(parents=True, exist_ok=True)
            write_data_yaml(settings.directory, names)
            for folder in (self.images, self.labels):  # a folder that exists read-only fails here, not mid-run
                _write_atomic(folder / ".edge_rt-probe", b"")
                (folder / ".edge_rt-probe").unlink()
            held = sum(1 for p in self.images.iterdir() if p.suffix == ".jpg")
        except OSError as exc:
            raise ConfigError(
                f"--collect {settings.directory}: cannot write there ({exc.strerror or exc}); choose a writable folder"
            ) from None
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=queue_size)
        self._last: dict[str, int] = {}  # source -> capture_mono_ns of the last selected frame
        self._taken = held  # frames in DIR, or on their way there
        self.held_before = held
        self._lock = threading.Lock()  # `dropped` is counted by both threads
        self.saved: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.error: str | None = None  # the write error that stopped collection
        self.full = held >= settings.max_frames
        self._stopped = threading.Event()  # no more selection: full, a write error, or closing
        self._closed = False
        self._thread = threading.Thread(target=self._write_loop, name="edge_rt-collect", daemon=True)
        if self.full:
            log.warning(
                "collect: %s already holds %d frame(s) (--collect-max %d): nothing will be collected",
                settings.directory,
                held,
                settings.max_frames,
            )
            self._stopped.set()

    def start(self) -> None:
        self._thread.start()

    # --- the publishing thread ---

    def offer(self, frame: Frame, dets: Detections) -> None:
        """Queue the frame when a detection is in the window and the source's interval has passed: a
        few comparisons for every other frame; a copy and a non-blocking put for the chosen ones."""
        if self._stopped.is_set() or len(dets) == 0:
            return
        s = self.settings
        conf = dets.conf
        if not np.any((conf >= s.lo) & (conf < s.hi)):
            return
        last = self._last.get(frame.source)
        if last is not None and frame.capture_mono_ns - last < s.interval_s * 1e9:
            return
        # Chosen: the interval restarts whether it is queued or dropped, so a stuck disk counts one drop
        # per interval (what it cost), not one per frame.
        self._last[frame.source] = frame.capture_mono_ns
        if self._queue.full():  # the writer is behind: drop before paying for the copy
            self._drop(frame.source)
            return
        h, w = frame.image.shape[:2]
        item = _Item(
            frame.source, file_stem(frame.source, frame.capture_ns, frame.index), frame.image.copy(), yolo_label(dets, w, h, s.lo)
        )
        try:
            self._queue.put_nowait(item)
        except queue.Full:  # not after full() said no (only the writer takes from it), but never block here
            self._drop(frame.source)
            return
        self._taken += 1
        if self._taken >= s.max_frames:
            self.full = True
            self._stopped.set()
            log.warning("collect: %s holds %d frames (--collect-max): collection stops", s.directory, s.max_frames)

    def counters(self, source: str) -> dict[str, int]:
        return {"collected": self.saved.get(source, 0), "collect_dropped": self.dropped.get(source, 0)}

    # --- the writer thread ---

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is not None:
                self._drop(item.source)
                continue
            try:
                self._write(item)
            except Exception as exc:  # noqa: BLE001 - any failure stops collection with one line, never the run
                self.error = (
                    f"{exc.strerror} ({exc.filename})"
                    if isinstance(exc, OSError) and exc.strerror
                    else f"{type(exc).__name__}: {exc}"
                )
                self._stopped.set()
                self._drop(item.source)
                log.error(
                    "collect: cannot write to %s: %s; collection stops, the run goes on", self.settings.directory, self.error
                )
            else:
                self.saved[item.source] = self.saved.get(item.source, 0) + 1

    def _drop(self, source: str) -> None:
        with self._lock:
            self.dropped[source] = self.dropped.get(source, 0) + 1

    def _write(self, item: _Item) -> None:
        import cv2

        ok, jpeg = cv2.imencode(".jpg", item.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OSError(f"OpenCV could not encode a {item.image.shape} frame as JPEG")
        # The label first: an image whose label is missing would read as a background image.
        label = self.labels / f"{item.stem}.txt"
        _write_atomic(label, item.label.encode("ascii"))
        try:
            _write_atomic(self.images / f"{item.stem}.jpg", jpeg.tobytes())
        except BaseException:
            with contextlib.suppress(OSError):
                label.unlink()
            raise

    def close(self, timeout_s: float = 2.0) -> None:
        """Write what is queued, for `timeout_s` at most: a hung disk must not hold the exit (the thread is
        a daemon, and the CLI leaves past `edge_rt-*` threads). A second call does nothing."""
        if self._closed:
            return
        self._closed = True
        self._stopped.set()
        if self._thread.is_alive():
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    self._queue.put(None, timeout=0.1)
                    break
                except queue.Full:
                    if time.monotonic() >= deadline:
                        break
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():
                log.warning(
                    "collect: the writer did not finish within %gs; %d queued frame(s) not saved", timeout_s, self._queue.qsize()
                )

    def summary(self) -> str:
        saved, dropped = sum(self.saved.values()), sum(self.dropped.values())
        s = self.settings
        text = (
            f"collect: {saved} frame(s) saved to {s.directory} ({self.held_before + saved} there, --collect-max {s.max_frames})"
        )
        if dropped:
            text += f", {dropped} dropped (the writer could not keep up{', or after the write error' if self.error else ''})"
        if self.error:
            text += f"; stopped by a write error: {self.error}"
        elif self.full:
            text += "; stopped at --collect-max"
        return text


def make_collector(settings: CollectSettings | None, names: Mapping[int, str], run_conf: float) -> FrameCollector | NullCollector:
    """The collector a run asked for (checked writable now, at start-up), else the null one."""
    if settings is None:
        return NullCollector()
    if settings.lo < run_conf:
        log.warning(
            "collect: --collect-conf %g,%g starts below --conf %g: detections under %g are never published, "
            "so the window is %g..%g",
            settings.lo,
            settings.hi,
            run_conf,
            run_conf,
            run_conf,
            settings.hi,
        )
    collector = FrameCollector(settings, names)
    log.info(
        "collect: frames with a detection in conf [%g, %g) to %s, one per source every %gs at most, up to %d frames",
        settings.lo,
        settings.hi,
        settings.directory,
        settings.interval_s,
        settings.max_frames,
    )
    return collector
