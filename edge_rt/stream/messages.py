"""The message dicts the pipeline publishes: detections per frame, events, end of stream.

Built here so the pipeline only times and wires stages; the JSON Schemas in edge_rt/schemas/ say
what each field means and tests check these against them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..camera.sources import Frame
from ..tracking.events import Event
from ..tracking.stage import Objects
from ..wire.schema import DETECTIONS, EOS, EVENT, VERSION


def detection_items(objects: Objects, names: Mapping[int, str]) -> list[dict[str, Any]]:
    """`detections`: cls, label, conf, box; with tracking also track_id, with zones the zones each is in."""
    dets = objects.dets
    boxes = np.round(dets.xyxy.astype(np.float64), 2).tolist()
    confs = np.round(dets.conf.astype(np.float64), 4).tolist()
    items = [
        {"cls": int(c), "label": names.get(int(c), str(int(c))), "conf": cf, "box": b}
        for c, cf, b in zip(dets.cls.tolist(), confs, boxes)
    ]
    if objects.track_ids is not None:
        for item, tid in zip(items, objects.track_ids.tolist()):
            item["track_id"] = tid
    if objects.zones is not None:
        for item, zones in zip(items, objects.zones):
            item["zones"] = list(zones)
    return items


def event_message(
    event: Event,
    header: Mapping[str, Any],
    seq: int,
    frame: Frame,
    names: Mapping[int, str],
    publish_ns: int,
    clip: str | None = None,
) -> dict[str, Any]:
    """One `edge_rt.event`; `header` holds box and session. `box` is the publishing box's name, as in
    every message; the object's own box is `object.box`, a detection item like those of the frame."""
    h, w = frame.image.shape[:2]
    label = names.get(event.cls, str(event.cls))
    message: dict[str, Any] = {
        "schema": EVENT,
        "version": VERSION,
        **header,
        "source": frame.source,
        "seq": seq,
        "event": event.kind,
        "track_id": event.track_id,
        "cls": event.cls,
        "label": label,
        "frame_index": frame.index,
        "width": w,
        "height": h,
        "timestamps": {"capture_ns": frame.capture_ns, "publish_ns": publish_ns},
        "object": {
            "cls": event.cls,
            "label": label,
            "conf": round(event.conf, 4),
            "box": [round(v, 2) for v in event.box],
            "track_id": event.track_id,
        },
    }
    for key in ("zone", "line", "direction"):
        value = getattr(event, key)
        if value is not None:
            message[key] = value
    if event.duration_s is not None:
        message["duration_s"] = round(event.duration_s, 3)
    if event.best_conf is not None:
        message["best_conf"] = round(event.best_conf, 4)
    if clip is not None:
        message["clip"] = clip
    return message


def eos_message(header: Mapping[str, Any], source: str, seq: int, frames: int, ended: bool, publish_ns: int) -> dict[str, Any]:
    """The explicit last message of a source, so subscribers know the stream ended on purpose."""
    return {
        "schema": EOS,
        "version": VERSION,
        **header,
        "source": source,
        "seq": seq,
        "frames": frames,
        "reason": "end of file" if ended else "shutdown",
        "timestamps": {"publish_ns": publish_ns},
    }


def detections_message(
    header: Mapping[str, Any], frame: Frame, seq: int, items: list[dict[str, Any]], extra: Mapping[str, Any]
) -> dict[str, Any]:
    h, w = frame.image.shape[:2]
    return {
        "schema": DETECTIONS,
        "version": VERSION,
        **header,
        "source": frame.source,
        "seq": seq,
        "frame_index": frame.index,
        "width": w,
        "height": h,
        **extra,
        "detections": items,
    }
