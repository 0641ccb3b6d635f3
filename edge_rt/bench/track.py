"""Trackers scored against ground truth: edge_rt's ByteTracker beside Ultralytics' ByteTrack and BoT-SORT.

The detector runs once over every frame of the clip (edge_rt's own engine, letterbox and decoder, at
conf 0.1: Ultralytics' track-mode default, so ByteTrack's low-score second pass has boxes); then each
tracker gets the same detections, and `mot.score` rates what it kept and which ids it gave them.
Every tracker is scored on the detector's boxes it output (Ultralytics' trackers return Kalman-
smoothed boxes and the index of the detection; the detection's box is taken), so the table compares
association alone, on the same boxes.

`every=k` gives the trackers every k-th frame only, as a pipeline that skips frames under load does,
and scores those frames. edge_rt's tracker steps by the frames' time (frame index / fps); Ultralytics'
step one frame per call, as they run inside `model.track()`.

A recorded run (`edge-rt subscribe` JSON lines of an `edge-rt run --track`) is scored the same way:
its frames are the messages' `frame_index` + 1, its ids the detections' `track_id`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..detect.postprocess import Detections
from ..errors import ConfigError, MissingDependencyError, SourceError
from ..tracking.mot import MotRows, MotScore, check_unique, read_mot, score
from .hardware import describe_host
from .stats import pct
from .track_lines import LineCounts, LineTruth, count_lines, lines_file, read_truth

TRACKERS = ("edge_rt", "bytetrack", "botsort")
TRACK_CONF = 0.1  # Ultralytics' conf in track mode: boxes down to 0.1 reach the tracker's second pass
LABELS = {
    "edge_rt": "edge_rt ByteTracker",
    "bytetrack": "ultralytics ByteTrack",
    "botsort": "ultralytics BoT-SORT",
}


@dataclass(frozen=True)
class TrackRow:
    """One tracker at one frame step: its scores and what each update cost."""

    tracker: str
    every: int
    score: MotScore
    cost_ms: dict[str, float]  # per update call: percentiles (empty for a recorded run)
    lines: LineCounts | None = None  # where the clip has true line crossings


@dataclass(frozen=True)
class TrackBenchResult:
    gt: str
    gt_ids: int
    gt_boxes: int
    rows: list[TrackRow]
    source: str = ""
    model: str = ""
    frames: int = 0
    fps: float = 0.0
    size: tuple[int, int] = (0, 0)
    conf: float = TRACK_CONF
    detections_per_frame: float = 0.0
    detect_ms: dict[str, float] = field(default_factory=dict)  # engine + letterbox + decode per frame
    messages: str = ""
    host: dict[str, Any] = field(default_factory=dict)
    lines: LineTruth | None = None


def parse_every(text: str) -> list[int]:
    """`--every 1,2`: positive integers."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"--every {text!r}: expected comma-separated positive integers, e.g. 1,2")
    return sorted(set(values))


def parse_trackers(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in TRACKERS]
    if not names or bad:
        raise ConfigError(f"--trackers {text!r}: choose from {', '.join(TRACKERS)} (comma-separated)")
    return [t for t in TRACKERS if t in names]


# --------------------------------------------------------------------------------------- detections


def _frames(source: Path) -> Iterator[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(source))
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame
    finally:
        cap.release()


def _open_clip(source: Path) -> tuple[float, tuple[int, int]]:
    """The clip's frame rate and size; a missing or unreadable file is one SourceError."""
    import cv2

    if not source.is_file():
        raise SourceError(f"--source {str(source)!r}: no such file; pass the clip the ground truth describes")
    cap = cv2.VideoCapture(str(source))
    try:
        if not cap.isOpened():
            raise SourceError(f"--source {str(source)!r}: OpenCV cannot open it as a video")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()
    return fps, size


def detect_clip(
    model: Path, source: Path, imgsz: int | None = None, conf: float = TRACK_CONF, device: str = "cpu"
) -> tuple[list[Detections], list[float]]:
    """Every frame of `source` through edge_rt's engine, letterbox and decoder: boxes and ms per frame."""
    from ..detect.postprocess import Postprocessor, PostprocessSettings
    from ..detect.preprocess import make_preprocessor
    from ..runner import check_graph_nms, resolve_imgsz
    from ..training.eval_models import open_model

    engine = open_model(model, device)
    try:
        info = engine.info
        check_graph_nms(info, conf, 0.7, False)
        pre = make_preprocessor(info, resolve_imgsz(engine, imgsz), ring=2)
        post = Postprocessor(info.num_classes, info.end2end, PostprocessSettings(conf=conf, iou=0.7, max_det=300))
        out: list[Detections] = []
        cost: list[float] = []
        for frame in _frames(source):
            t0 = time.perf_counter_ns()
            prepared = pre([frame])
            dets = post(engine.infer(prepared.tensor, prepared.plan), prepared.letterboxes)[0]
            cost.append((time.perf_counter_ns() - t0) / 1e6)
            out.append(dets)
    finally:
        engine.close()
    if not out:
        raise SourceError(f"--source {str(source)!r}: no frame could be read")
    return out, cost


# --------------------------------------------------------------------------------------- trackers

# (detections, time in seconds, frame image or None) -> (rows of the detections kept, their ids, ms the update took)
Step = Callable[[Detections, float, np.ndarray | None], tuple[np.ndarray, np.ndarray, float]]


def _edge_tracker() -> Step:
    from ..tracking.bytetrack import ByteTracker, TrackerSettings

    tracker = ByteTracker(TrackerSettings(conf=0.25))

    def step(dets: Detections, t_s: float, image: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, float]:
        t0 = time.perf_counter_ns()
        res = tracker.update(dets, t_s)
        ms = (time.perf_counter_ns() - t0) / 1e6
        return np.asarray(res.rows, np.int64), np.asarray(res.ids, np.int64), ms

    return step


def _ultralytics_tracker(kind: str, shape: tuple[int, int]) -> Step:
    """Ultralytics' tracker with its default YAML, built as `ultralytics/trackers/track.py` builds it."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    try:
        from ultralytics.engine.results import Boxes
        from ultralytics.trackers.bot_sort import BOTSORT
        from ultralytics.trackers.byte_tracker import BYTETracker
        from ultralytics.utils import YAML, IterableSimpleNamespace
        from ultralytics.utils.checks import check_yaml
    except ImportError as exc:
        raise MissingDependencyError(
            f"Ultralytics' trackers need ultralytics and lap ({exc}); pip install 'edge_rt[train]'"
        ) from None
    cfg = IterableSimpleNamespace(**YAML.load(check_yaml(f"{kind}.yaml")))
    tracker: Any = BOTSORT(cfg) if kind == "botsort" else BYTETracker(cfg)
    orig_shape = (shape[1], shape[0])

    def step(dets: Detections, t_s: float, image: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, float]:
        data = np.concatenate([dets.xyxy, dets.conf[:, None], dets.cls[:, None].astype(np.float32)], axis=1)
        boxes = Boxes(data.astype(np.float32), orig_shape)  # what `model.track()` hands it: .conf, .xywh, .cls
        t0 = time.perf_counter_ns()
        out = tracker.update(boxes, image)
        ms = (time.perf_counter_ns() - t0) / 1e6
        if len(out) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), ms
        return out[:, -1].astype(np.int64), out[:, 4].astype(np.int64), ms

    return step


def run_tracker(
    name: str, detections: Sequence[Detections], every: int, fps: float, source: Path, shape: tuple[int, int]
) -> tuple[MotRows, list[int], list[float]]:
    """Feed frames 0, every, 2*every, ... to a fresh tracker: its boxes with ids, the MOT frames it saw,
    and the ms each update took. BoT-SORT also gets the frame image (its camera-motion compensation)."""
    step = _edge_tracker() if name == "edge_rt" else _ultralytics_tracker(name, shape)
    images: Iterator[np.ndarray] | None = _frames(source) if name == "botsort" else None
    frame_no: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    boxes: list[np.ndarray] = []
    fed: list[int] = []
    cost: list[float] = []
    for i, dets in enumerate(detections):
        image = next(images, None) if images is not None else None
        if i % every:
            continue
        rows, tids, ms = step(dets, i / fps, image)
        cost.append(ms)
        fed.append(i + 1)
        frame_no.append(np.full(len(rows), i + 1, np.int64))
        ids.append(tids)
        boxes.append(dets.xyxy[rows].astype(np.float64))
    rows_out = MotRows.build(np.concatenate(frame_no), np.concatenate(ids), np.concatenate(boxes).reshape(-1, 4))
    return rows_out, fed, cost


# --------------------------------------------------------------------------------------- recorded runs


def tracks_from_messages(path: Path) -> tuple[MotRows, list[int]]:
    """A run's tracks from `edge-rt subscribe` output: one JSON object per line; detections messages
    of one source give their frame (`frame_index` + 1) and each detection's `track_id` and `box`.

    Detections without a `track_id` are left out (not on a track); other schemas (eos, health, events)
    are skipped.
    """
    if not path.is_file():
        raise ConfigError(f"--messages {str(path)!r}: no such file; record a run with `edge-rt subscribe ENDPOINT > FILE`")
    frames: list[int] = []
    seen: set[int] = set()
    sources: set[str] = set()
    rows: list[tuple[int, int, list[float]]] = []
    untracked = 0
    with path.open() as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                raise ConfigError(
                    f"--messages {str(path)!r}:{number}: not a JSON line; expected `edge-rt subscribe` output"
                ) from None
            if not isinstance(msg, dict) or msg.get("schema") != "edge_rt.detections":
                continue
            sources.add(str(msg.get("source")))
            try:
                frame = int(msg["frame_index"]) + 1
                dets = list(msg["detections"])
                found = [(d.get("track_id"), [float(v) for v in d["box"]]) for d in dets]
            except (KeyError, TypeError, ValueError):
                raise ConfigError(
                    f"--messages {str(path)!r}:{number}: a detections message without frame_index or boxes"
                ) from None
            if frame in seen:
                raise ConfigError(
                    f"--messages {str(path)!r}:{number}: frame_index {frame - 1} appears twice (a looping file or two runs); "
                    "record one pass of the clip"
                )
            seen.add(frame)
            frames.append(frame)
            for tid, box in found:
                if tid is None:
                    untracked += 1
                elif len(box) == 4:
                    rows.append((frame, int(tid), box))
    if len(sources) > 1:
        raise ConfigError(
            f"--messages {str(path)!r}: messages of {len(sources)} sources ({', '.join(sorted(sources))}); "
            "record one with `edge-rt subscribe --source NAME`"
        )
    if not frames:
        raise ConfigError(f"--messages {str(path)!r}: no edge_rt.detections messages in it")
    if not rows and untracked:
        raise ConfigError(f"--messages {str(path)!r}: no detection carries a track_id; record a run of `edge-rt run --track`")
    tracks = MotRows.build([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]) if rows else MotRows.empty()
    check_unique(tracks, f"--messages {str(path)!r}")
    return tracks, sorted(frames)


# --------------------------------------------------------------------------------------- the bench


def bench_track(
    gt_path: Path,
    model: Path | None = None,
    source: Path | None = None,
    every: Sequence[int] = (1, 2),
    imgsz: int | None = None,
    trackers: Sequence[str] = TRACKERS,
    messages: Path | None = None,
    conf: float = TRACK_CONF,
    device: str = "cpu",
    min_visibility: float = 0.0,
    fps: float | None = None,
    lines: Path | None = None,
) -> TrackBenchResult:
    """Detect once, track with each tracker at each frame step, score all against `gt_path`; where the clip
    has true line crossings (`lines`, or `<stem>.lines.json` beside the source), count them too."""
    gt = read_mot(gt_path, "--gt")
    if lines is None and source is not None and lines_file(source).is_file():
        lines = lines_file(source)
    truth = read_truth(lines) if lines is not None else None
    if (model is None) != (source is None):
        raise ConfigError("--model and --source go together: the detector runs the model over the clip")
    if model is None and messages is None:
        raise ConfigError(
            "nothing to score: give --model and --source (the trackers on a clip), --messages (a recorded run), or both"
        )
    if not 0.0 <= min_visibility <= 1.0:
        raise ConfigError(f"--min-visibility {min_visibility}: must be between 0 and 1")
    if not 0.0 < conf < 1.0:
        raise ConfigError(f"--conf {conf}: must be between 0 and 1")
    result_rows: list[TrackRow] = []
    extra: dict[str, Any] = {}
    if model is not None and source is not None:
        clip_fps, size = _open_clip(source)
        rate = fps or clip_fps
        if not rate or rate <= 0:
            raise ConfigError(f"--source {str(source)!r}: the file gives no frame rate; pass --fps")
        detections, detect_cost = detect_clip(model, source, imgsz, conf, device)
        n = len(detections)
        if int(gt.frame.max()) > n:
            raise ConfigError(
                f"--gt {str(gt_path)!r} has boxes up to frame {int(gt.frame.max())} but {str(source)!r} has {n} frames; "
                "is it the ground truth of this clip?"
            )
        for name in trackers:
            for k in every:
                tracks, fed, cost = run_tracker(name, detections, k, rate, source, size)
                counts = count_lines(tracks, fed, rate, size, truth) if truth is not None else None
                result_rows.append(TrackRow(name, k, score(gt, tracks, fed, min_visibility), pct(cost), counts))
        extra = {
            "source": str(source),
            "model": Path(model).name,
            "frames": n,
            "fps": rate,
            "size": size,
            "detections_per_frame": float(np.mean([len(d) for d in detections])),
            "detect_ms": pct(detect_cost),
        }
    if messages is not None:
        tracks, fed = tracks_from_messages(messages)
        step = int(np.median(np.diff(fed))) if len(fed) > 1 else 1
        result_rows.append(TrackRow("messages", step, score(gt, tracks, fed, min_visibility), {}))
        extra["messages"] = str(messages)
    return TrackBenchResult(
        gt=str(gt_path),
        gt_ids=len(np.unique(gt.ids)),
        gt_boxes=len(gt),
        rows=result_rows,
        conf=conf,
        host=describe_host(device),
        lines=truth,
        **extra,
    )
