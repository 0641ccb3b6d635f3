"""`edge-rt draw zones|clip`: see a source's zones and lines on its own frame, or a file source annotated.

`draw zones` checks a config without guessing: one frame (or a picture), every zone and line, each
line's `in` side. It loads no model. `draw clip` runs the model and the objects stage over every
frame of a file, in this process, and writes what they saw: boxes with track ids, zones with their
counts, lines with their crossings, and a marker on each event.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, EdgeRtError, SourceError
from .common import Parser, quiet_native_logs

if TYPE_CHECKING:
    from ..camera.sources import SourceSpec
    from ..config import RunConfig
    from ..tracking.events import Event
    from ..tracking.settings import SourceTracking
    from ..tracking.stage import Objects

FLASH_S = 0.5  # an event's marker stays this long, so it can be seen at normal speed
_NO_MODEL = "(no model: draw zones needs none)"


def add_draw(sub: Any) -> None:
    p = sub.add_parser("draw", help="draw a source's zones and lines on one of its frames (PNG), or annotate a file source (mp4)")
    dsub = p.add_subparsers(dest="what", metavar="<what>", parser_class=Parser, required=True)
    z = dsub.add_parser(
        "zones",
        help="one frame of a source with its zones, lines and each line's `in` side, as a PNG",
        description="Grabs one frame of the source (a file's frame N; a camera's or stream's first frame) or takes "
        "--image, and draws every zone (fill, outline, name, class filter, loiter_s) and line (name, ends A and B, "
        "an arrow to its `in` side: B - A turned 90 degrees clockwise on screen). A source with no zones or lines "
        "gets a 0-1 grid instead, to read their coordinates from. Loads no model.",
    )
    z.add_argument("--config", required=True, metavar="FILE.yaml", help="the run config with the source's zones: and lines:")
    z.add_argument("--source", metavar="NAME", help="the source to draw (default: the first one with zones or lines, else the first file)")
    pick = z.add_mutually_exclusive_group()
    pick.add_argument("--frame", type=int, metavar="N", help="draw on frame N of the source (default 0, the first)")
    pick.add_argument("--image", metavar="FILE", help="draw on this picture (.jpg, .png) instead of grabbing a frame")
    z.add_argument("--output", "-o", required=True, metavar="FILE.png", help="where to write the picture (.png or .jpg)")
    z.set_defaults(handler=_cmd_zones)
    c = dsub.add_parser(
        "clip",
        help="run the model and tracker over a file source and write an annotated mp4",
        description="Every frame of a file source through the model and the objects stage, in this process (nothing "
        "is published): boxes coloured by track id, 'label #id conf', zones with their counts, lines with in/out "
        "counts, a marker on each cross, enter, exit and loiter. The source is tracked even without track: in the "
        "config. Uses the config's model, device, conf, iou, classes.",
    )
    c.add_argument("--config", required=True, metavar="FILE.yaml", help="the run config")
    c.add_argument("--source", metavar="NAME", help="a file source of the config (default: the first with zones or lines)")
    c.add_argument("--model", "-m", help="use this model instead of the config's")
    c.add_argument("--frames", type=int, metavar="N", help="only the first N frames (default: all)")
    c.add_argument(
        "--output", "-o", required=True, metavar="FILE.mp4", help="the annotated clip (mp4v, the source's fps and size)"
    )
    c.set_defaults(handler=_cmd_clip)


def _cmd_zones(args: argparse.Namespace) -> int:
    import cv2

    from ..draw import draw_grid, draw_regions

    if args.frame is not None and args.frame < 0:
        raise ConfigError(f"--frame {args.frame}: must be >= 0")
    output = _check_output(args.output, (".png", ".jpg", ".jpeg"), "a .png (or .jpg) file")
    config = _load(args.config, {}, need_model=False)
    spec, tracking = pick_source(config, args.source)
    if args.image is not None:
        if not Path(args.image).is_file():
            raise SourceError(f"--image {args.image!r}: no such file")
        image = cv2.imread(args.image, cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"--image {args.image!r}: OpenCV cannot read it as a picture (.jpg, .png, .bmp, ...)")
    else:
        image = grab_frame(spec, args.frame or 0, config.open_timeout)
    regions = len(tracking.zones) + len(tracking.lines)
    drawn = draw_regions(image, tracking.zones, tracking.lines) if regions else draw_grid(image)
    ok, buf = cv2.imencode(output.suffix.lower(), drawn)
    if not ok:
        raise ConfigError(f"--output {str(output)!r}: OpenCV cannot encode a {output.suffix} picture")
    try:
        output.write_bytes(buf.tobytes())
    except OSError as exc:
        raise ConfigError(f"--output {str(output)!r}: cannot write it ({exc.strerror or exc}); pick another path") from None
    h, w = drawn.shape[:2]
    drew = f"{_count(len(tracking.zones), 'zone')}, {_count(len(tracking.lines), 'line')}" if regions else (
        "no zones or lines yet: a 0-1 grid to read their coordinates from"
    )
    print(f"draw zones: source {spec.name}, {drew}, {w}x{h} -> {output}")
    return 0


def _cmd_clip(args: argparse.Namespace) -> int:
    if args.frames is not None and args.frames < 1:
        raise ConfigError(f"--frames {args.frames}: must be >= 1")
    output = _check_output(args.output, (".mp4",), "an .mp4 file")
    config = _load(args.config, {"model": args.model}, need_model=True)
    spec, tracking = pick_source(config, args.source)
    from ..camera.sources import SourceKind

    if spec.kind is not SourceKind.FILE:
        raise ConfigError(
            f"draw clip needs a file source; source {spec.name!r} is a {spec.kind.value} source "
            "(record a clip of it, or check its zones with `edge-rt draw zones`)"
        )
    print(annotate_clip(config, spec, tracking, output, args.frames))
    return 0


def _load(path: str, cli: dict[str, Any], need_model: bool) -> RunConfig:
    """The run config, as `edge-rt run` reads it; `draw zones` needs no model, so a config may lack one."""
    from ..config import build_run_config, check_relative_paths, load_yaml
    from ..ops.redact import redact_url

    quiet_native_logs("error")  # FFmpeg's own lines about a source that will not open stay out of the one-line error
    try:
        values = load_yaml(path)
        check_relative_paths({k: v for k, v in values.items() if cli.get(k) is None}, path)  # what the config still says
        if not need_model:
            values.setdefault("model", _NO_MODEL)
        return build_run_config(values, cli, origin=f"config {path!r}")
    except EdgeRtError as exc:
        clean = redact_url(str(exc))  # a camera password never reaches the error line
        if clean == str(exc):
            raise
        raise type(exc)(clean) from None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def pick_source(config: RunConfig, name: str | None) -> tuple[SourceSpec, SourceTracking]:
    """The named source, else the first with zones or lines, else the first file source, else the first;
    its tracking as configured, or a default tracker where the config tracks it not."""
    from ..camera.sources import SourceKind
    from ..tracking.settings import SourceTracking, TrackConfig

    tracked = {t.source: t for t in config.tracking}
    has = [s for s in config.sources if s.name in tracked and (tracked[s.name].zones or tracked[s.name].lines)]
    if name is not None:
        spec = next((s for s in config.sources if s.name == name), None)
        if spec is None:
            known = ", ".join(s.name for s in config.sources)
            raise ConfigError(f"--source {name!r}: the config has no such source (it has: {known})")
    elif has:
        spec = has[0]
    else:
        spec = next((s for s in config.sources if s.kind is SourceKind.FILE), config.sources[0])
    tracking = tracked.get(spec.name)
    if tracking is None or tracking.track is None:
        tracking = SourceTracking(
            spec.name, TrackConfig(), tracking.zones if tracking else (), tracking.lines if tracking else ()
        )
    return spec, tracking


def _still_showing(showing: list[tuple[int, Event]], objects: Objects, n: int, hold: int) -> list[tuple[int, Event]]:
    """Event markers to draw on frame `n`: each for `hold` frames from its own, one per object, place and
    kind (the latest), on the object's box in this frame where it is still seen."""
    boxes: dict[int, tuple[float, float, float, float]] = {}
    if objects.track_ids is not None:
        for tid, (x1, y1, x2, y2) in zip(objects.track_ids.tolist(), objects.dets.xyxy.tolist()):
            boxes[tid] = (x1, y1, x2, y2)
    fresh = [(n + hold - 1, e) for e in objects.events if e.kind in ("cross", "enter", "exit", "loiter")]
    latest: dict[tuple[int, str, str], tuple[int, Event]] = {}
    for end, e in [*showing, *fresh]:
        if end >= n:
            box = boxes.get(e.track_id, e.box)
            latest[(e.track_id, e.kind, e.zone or e.line or "")] = (end, replace(e, box=box))
    return list(latest.values())


def _check_output(path: str, suffixes: tuple[str, ...], what: str) -> Path:
    """Fail before any frame is read: a wrong extension, a missing or read-only folder."""
    out = Path(path).expanduser()
    if out.suffix.lower() not in suffixes:
        raise ConfigError(f"--output {path!r}: expected {what}")
    folder = out.parent
    if not folder.is_dir():
        raise ConfigError(f"--output {path!r}: no such folder {str(folder)!r}")
    if out.is_dir() or not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ConfigError(f"--output {path!r}: cannot write there; pick a writable path")
    return out


def grab_frame(spec: SourceSpec, index: int, open_timeout_s: float) -> np.ndarray:
    """Frame `index` of a source (0: the first it delivers), opened with bounded open and read timeouts."""
    import cv2

    from ..camera.readers import open_capture
    from ..camera.reconnect import CaptureSettings
    from ..camera.sources import SourceKind

    cap = open_capture(spec, CaptureSettings(open_timeout_s=open_timeout_s, stall_timeout_s=2 * open_timeout_s))
    try:
        for i in range(index + 1):
            ok, image = cap.read()
            if not ok or image is None:
                if spec.kind is SourceKind.FILE:
                    if i:
                        raise SourceError(f"source {spec.name!r}: --frame {index} is past the end of the file ({i} frames)")
                    raise SourceError(f"source {spec.name!r}: OpenCV opened {spec.uri!r} but cannot read a frame of it")
                raise SourceError(f"source {spec.name!r}: opened, but no frame came within {open_timeout_s:g}s")
    finally:
        cap.release()
    assert image is not None  # the loop ran at least once and raised on a missing frame
    if image.ndim == 2 or image.shape[2] != 3:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_BGRA2BGR)
    return image


def annotate_clip(config: RunConfig, spec: SourceSpec, tracking: SourceTracking, output: Path, limit: int | None) -> str:
    """Every frame (or the first `limit`) through engine, postprocess and objects stage, drawn into `output`;
    returns the one-line summary. The clip is written beside `output` and moved there once complete."""
    import cv2

    from ..camera.sources import Frame
    from ..detect.preprocess import make_preprocessor
    from ..draw import draw_counters, draw_events, draw_objects, draw_regions
    from ..engines import load_engine
    from ..runner import detection_stages, resolve_imgsz

    cap = cv2.VideoCapture(spec.uri)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"source {spec.name!r}: OpenCV cannot open {spec.uri!r} as a video")
    rate = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    fps = rate if 0 < rate < 1000 else 30.0
    partial = output.with_name(f".{output.stem}.partial{output.suffix}")
    writer: Any = None
    try:
        engine = load_engine(config.model, config.device, config.threads, max_batch=1, imgsz=config.imgsz)  # a frame at a time
        try:
            info = engine.info
            post, stage = detection_stages(config, info, [tracking])  # as `edge-rt run` builds them
            pre = make_preprocessor(info, resolve_imgsz(engine, config.imgsz), ring=2)
            anchor = ([z.anchor for z in tracking.zones] + [ln.anchor for ln in tracking.lines] + ["bottom_center"])[0]
            kinds: Counter[str] = Counter()
            showing: list[tuple[int, Event]] = []  # (last frame to show it, event)
            hold = max(1, round(FLASH_S * fps))
            n = 0
            while limit is None or n < limit:
                ok, image = cap.read()
                if not ok or image is None:
                    break
                if image.ndim == 2 or image.shape[2] != 3:
                    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_BGRA2BGR)
                if writer is None:
                    size = (image.shape[1], image.shape[0])
                    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
                    if not writer.isOpened():
                        raise ConfigError(f"--output {str(output)!r}: OpenCV cannot write an mp4v video there")
                frame = Frame(spec.name, n, image, time.time_ns(), time.perf_counter_ns(), n / fps)
                prepared = pre([image])
                objects = stage(frame, post(engine.infer(prepared.tensor, prepared.plan), prepared.letterboxes)[0])
                kinds.update(e.kind for e in objects.events)
                showing = _still_showing(showing, objects, n, hold)
                counts = stage.counts()
                occupancy = {z.name: 0 for z in tracking.zones}
                for (source, zone, _label), k in counts.in_zone.items():
                    if source == spec.name:
                        occupancy[zone] = occupancy.get(zone, 0) + k
                crossings = {ln.name: [0, 0] for ln in tracking.lines}
                for (source, line, direction, _label), k in counts.crossings.items():
                    if source == spec.name:
                        crossings.setdefault(line, [0, 0])[0 if direction == "in" else 1] += k
                flash = {e.zone or e.line or "" for _, e in showing}
                drawn = draw_regions(image, tracking.zones, tracking.lines, occupancy=occupancy, flash=flash)
                drawn = draw_objects(drawn, objects, info.names, anchor)
                drawn = draw_events(drawn, [e for _, e in showing])
                drawn = draw_counters(
                    drawn, occupancy, {k: (v[0], v[1]) for k, v in crossings.items()}, f"frame {n}", avoid=objects.dets.xyxy
                )
                writer.write(drawn)
                n += 1
            kinds.update(e.kind for e in stage.finish(spec.name)[1])  # the clip ends: its objects end, as in a run
        finally:
            engine.close()
        if writer is None:
            raise SourceError(f"source {spec.name!r}: no frame could be read from {spec.uri!r}")
        writer.release()
        writer = None
        os.replace(partial, output)
    finally:
        cap.release()
        if writer is not None:
            writer.release()
        partial.unlink(missing_ok=True)
    events = ", ".join(f"{k} {kinds[k]}" for k in ("start", "end", "enter", "exit", "cross", "loiter") if kinds[k]) or "none"
    note = "" if 0 < rate < 1000 else " (the file states no frame rate: 30 assumed)"
    return f"draw clip: {n} frames, {kinds['start']} tracks, events: {events} -> {output}{note}"
