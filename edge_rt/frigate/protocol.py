"""Frigate's `zmq` detector protocol on the wire: what a request may be, what an answer looks like.

Read at the source, Frigate 0.17 `frigate/detectors/plugins/zmq_ipc.py` (`ZmqIpcDetector`):

- every header is `json.dumps(dict).encode("utf-8")`; a request is `[header, raw C-order tensor]` with
  header `{"shape": [...], "dtype": "uint8"|"float32", "model_type": "yologeneric"|...}` (the enum's
  *name*; `model_type` changes nothing for the zmq detector, which uses the answer as it comes);
- the handshake is a one-frame `{"model_request": true, "model_name": NAME}` answered by one JSON frame
  `{"model_available", "model_loaded"}`, then, when not available, `[{"model_data": true,
  "model_name": NAME}, FILE BYTES]` answered by `{"model_saved", "model_loaded"}`;
- an answer is `[{"shape": [20, 6], "dtype": "float32"}, 480 bytes]` (or those 480 bytes alone); Frigate
  reshapes it to the header's shape, and anything unreadable becomes zeros on its side.

The tensor is the camera region Frigate cropped and *stretched* (no letterbox) to the model's
width x height (`create_tensor_input`), NHWC uint8 in `input_pixel_format`; `input_tensor: nchw`
transposes it and `input_dtype: float` divides by 255 (`float_denorm` keeps 0-255) before it is sent
(`LocalObjectDetector._transform_input`). Rows are `[class_id, score, y_min, x_min, y_max, x_max]`
normalised to that tensor; Frigate stops reading at the first score under its threshold, so rows are
sorted by score and padded with zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson

from ..detect.postprocess import Detections

ROWS = 20  # Frigate reads exactly [20, 6]
ANSWER_HEADER = orjson.dumps({"shape": [ROWS, 6], "dtype": "float32"})
ZEROS = np.zeros((ROWS, 6), np.float32)
DTYPES = ("uint8", "float32")
MIN_SIDE, MAX_SIDE = 8, 4096  # a tensor side outside this is no model input Frigate makes
PIXEL_FORMATS = ("rgb", "bgr")


class BadRequest(ValueError):
    """A request this server cannot use; `kind` groups the log lines (one per kind, rate-limited)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, eq=False)
class TensorRequest:
    """One Frigate tensor, as the image edge_rt's preprocessing takes (HWC uint8 BGR) and its size."""

    image: np.ndarray
    width: int
    height: int
    layout: str  # "nhwc" or "nchw": as Frigate sent it, for the logs


@dataclass(frozen=True)
class ModelRequest:
    """`{"model_request": true}`: does the server have NAME (a file's base name) loaded?"""

    name: str


@dataclass(frozen=True, eq=False)
class ModelUpload:
    """`{"model_data": true}` + the file's bytes: Frigate sends its model when we said we lack it."""

    name: str
    data: memoryview


Request = TensorRequest | ModelRequest | ModelUpload


def parse_request(body: list[memoryview], pixel_format: str = "rgb") -> Request:
    """Frames after the routing envelope -> a request, or BadRequest saying what is wrong."""
    if not body:
        raise BadRequest("frames", "empty message")
    try:
        header = orjson.loads(body[0])
    except orjson.JSONDecodeError:
        raise BadRequest("json", f"header is not JSON ({bytes(body[0][:40])!r})") from None
    if not isinstance(header, dict):
        raise BadRequest("json", f"header is JSON but not an object ({type(header).__name__})")
    if header.get("model_request"):
        return ModelRequest(_name(header))
    if header.get("model_data"):
        if len(body) < 2:
            raise BadRequest("frames", "model_data without the file's bytes")
        return ModelUpload(_name(header), body[1])
    if len(body) != 2:
        raise BadRequest("frames", f"expected [header, tensor], got {len(body)} frame(s)")
    return _tensor(header, body[1], pixel_format)


def _name(header: dict[str, object]) -> str:
    name = header.get("model_name")
    return name if isinstance(name, str) else ""


def _tensor(header: dict[str, object], payload: memoryview, pixel_format: str) -> TensorRequest:
    shape, dtype = header.get("shape"), header.get("dtype")
    if dtype not in DTYPES:
        raise BadRequest("dtype", f"dtype {dtype!r}: expected one of {', '.join(DTYPES)} (Frigate's input_dtype int, float or float_denorm)")
    if not (isinstance(shape, list) and len(shape) == 4 and all(type(d) is int and d > 0 for d in shape)):
        raise BadRequest("shape", f"shape {shape!r}: expected [1, H, W, 3] (nhwc) or [1, 3, H, W] (nchw)")
    if shape[0] != 1:
        raise BadRequest("shape", f"shape {shape}: Frigate sends one image per request, batch {shape[0]}")
    if shape[3] == 3:
        layout, (h, w) = "nhwc", shape[1:3]
    elif shape[1] == 3:
        layout, (h, w) = "nchw", shape[2:4]
    else:
        raise BadRequest("shape", f"shape {shape}: expected [1, H, W, 3] (nhwc) or [1, 3, H, W] (nchw)")
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
        raise BadRequest("shape", f"shape {shape}: sides must be {MIN_SIDE} to {MAX_SIDE} pixels")
    np_dtype = np.dtype(dtype)
    expected = h * w * 3 * np_dtype.itemsize
    if payload.nbytes != expected:
        raise BadRequest("bytes", f"shape {shape} {dtype} needs {expected} bytes, got {payload.nbytes}")
    array = np.frombuffer(payload, np_dtype).reshape(shape)[0]
    if layout == "nchw":
        array = array.transpose(1, 2, 0)
    if np_dtype != np.uint8:
        array = _to_uint8(array)
    if pixel_format == "rgb":
        array = array[..., ::-1]  # edge_rt's preprocessing takes BGR, as OpenCV reads cameras
    return TensorRequest(np.ascontiguousarray(array), w, h, layout)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Frigate's floats come from uint8: /255 (`input_dtype: float`) or as they were (`float_denorm`).

    The scale is told by the values (all <= 1: divided); back to uint8 this is lossless, and the tensor
    then takes exactly the path `edge-rt run` takes, so the boxes are the same.
    """
    values = np.nan_to_num(array, nan=0.0, posinf=255.0, neginf=0.0)
    scale = 255.0 if values.size and float(values.max()) <= 1.0 else 1.0
    return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)


def to_rows(det: Detections, width: int, height: int) -> np.ndarray:
    """Detections in tensor pixels -> Frigate's [20, 6] rows: best first, normalised, zeros after."""
    out = np.zeros((ROWS, 6), np.float32)
    if len(det) == 0:
        return out
    order = np.argsort(-det.conf, kind="stable")[:ROWS]
    k = len(order)
    xyxy = det.xyxy[order]
    out[:k, 0] = det.cls[order]
    out[:k, 1] = det.conf[order]
    out[:k, 2] = xyxy[:, 1] / height
    out[:k, 3] = xyxy[:, 0] / width
    out[:k, 4] = xyxy[:, 3] / height
    out[:k, 5] = xyxy[:, 2] / width
    return out


def answer_frames(rows: np.ndarray) -> list[bytes]:
    """The multipart answer Frigate reshapes: header, then the rows' C-order bytes."""
    return [ANSWER_HEADER, np.ascontiguousarray(rows, np.float32).tobytes()]


def json_frame(answer: dict[str, bool]) -> list[bytes]:
    """A handshake answer: one JSON frame (Frigate reads `len(frames) == 1` there)."""
    return [orjson.dumps(answer)]
