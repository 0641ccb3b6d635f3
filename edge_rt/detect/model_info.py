"""What the runtime needs to know about a model, read from the model itself (no extra files)."""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ..errors import ModelError


@dataclass(frozen=True)
class ModelInfo:
    """Shapes and labels of a detection model, whatever runtime executes it."""

    names: Mapping[int, str]
    imgsz: tuple[int, int]  # (height, width) the model was exported for
    stride: int
    batch: int | None  # fixed batch size, or None when the batch axis is dynamic
    dynamic_shape: bool  # height and width may vary (Ultralytics `dynamic=True` export)
    end2end: bool  # output is [B, N, 6] with NMS inside the model
    input_name: str
    input_dtype: str  # "float32" or "float16"; for graph_preprocess models the inner model's
    task: str = "detect"
    # The letterbox runs inside the graph (`edge-rt export --graph-preprocess`): the image input takes
    # uint8 BGR frames [B, H, W, 3] at camera size and `plan_input` the int64 letterbox vector.
    graph_preprocess: bool = False
    plan_input: str | None = None
    # (conf, iou) of an NMS exported inside the graph (`--nms`): a run cannot go below that conf.
    graph_nms: tuple[float, float] | None = None
    # Largest batch a dynamic-batch graph handles: Ultralytics unrolls its NMS per image, so frames
    # past the exported batch would silently get no boxes.
    max_batch: int | None = None
    # "nhwc": the engine takes the letterboxed frames as uint8 BGR [B, H, W, 3] and converts them itself
    # (OpenVINO's pre-processing); "nchw": float RGB [B, 3, H, W] from the host.
    input_layout: str = "nchw"

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def label(self, cls: int) -> str:
        return self.names.get(cls, str(cls))


GRAPH_PREPROCESS_KEY = "edge_rt_preprocess"  # metadata of models with the letterbox in the graph
GRAPH_NMS_KEY = "edge_rt_nms"  # metadata of models exported with NMS in the graph: conf and iou


def _literal(value: str | None, key: str) -> object:
    if value is None:
        return None
    try:
        return ast.literal_eval(value)  # Ultralytics writes Python literals; never eval()
    except (ValueError, SyntaxError):
        try:
            return int(value)
        except ValueError:
            raise ModelError(f"model metadata {key!r} is not readable: {value[:60]!r}") from None


def _dim(value: object) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def info_from_metadata(
    meta: Mapping[str, str],
    input_name: str,
    input_shape: Sequence[object],
    input_dtype: str,
    output_shape: Sequence[object],
    source: str,
) -> ModelInfo:
    """Combine Ultralytics' metadata with the graph's own shapes; the graph wins where they disagree."""
    task = str(meta.get("task", "detect"))
    graph = _literal(meta.get(GRAPH_PREPROCESS_KEY), GRAPH_PREPROCESS_KEY)
    if graph is not None:
        return _graph_preprocess_info(meta, graph, input_name, input_shape, output_shape, source)
    if task != "detect":
        raise ModelError(f"{source}: task {task!r} is not supported; edge_rt runs detection models (task 'detect')")
    if len(input_shape) != 4:
        raise ModelError(f"{source}: expected a 4-D image input [B, 3, H, W], got shape {list(input_shape)}")
    if _dim(input_shape[1]) not in (None, 3):
        raise ModelError(f"{source}: expected 3 input channels, got {input_shape[1]}")
    if len(output_shape) != 3:
        raise ModelError(f"{source}: expected a 3-D detection output, got shape {list(output_shape)}")

    names_raw = _literal(meta.get("names"), "names")
    imgsz_raw = _literal(meta.get("imgsz"), "imgsz")
    end2end_meta = _literal(meta.get("end2end"), "end2end")
    args = _literal(meta.get("args"), "args")
    if isinstance(args, dict) and args.get("nms"):
        end2end_meta = True

    h, w = _dim(input_shape[2]), _dim(input_shape[3])
    dynamic_shape = h is None or w is None
    if isinstance(imgsz_raw, (list, tuple)) and len(imgsz_raw) == 2:
        imgsz = (int(imgsz_raw[0]), int(imgsz_raw[1]))
    elif isinstance(imgsz_raw, int):
        imgsz = (imgsz_raw, imgsz_raw)
    else:
        imgsz = (h or 640, w or 640)
    if not dynamic_shape:
        imgsz = (h, w)  # type: ignore[assignment]

    out_c, out_last = _dim(output_shape[1]), _dim(output_shape[2])
    if isinstance(names_raw, dict):
        names = {int(k): str(v) for k, v in names_raw.items()}
    else:
        nc = (out_c - 4) if out_c and out_c > 4 else 0
        names = {i: f"class{i}" for i in range(nc)}
    if end2end_meta is None:
        end2end = out_last == 6 and out_c != 4 + len(names)
    else:
        end2end = bool(end2end_meta)
    if end2end and out_last not in (None, 6):
        raise ModelError(f"{source}: end-to-end output must be [B, N, 6], got {list(output_shape)}")
    if not end2end and out_c is not None and names and out_c != 4 + len(names):
        raise ModelError(
            f"{source}: output has {out_c} channels but metadata names {len(names)} classes "
            f"(expected 4 + {len(names)}); not a YOLO detection head"
        )
    if not names:
        raise ModelError(f"{source}: cannot tell the class count (no 'names' metadata, output {list(output_shape)})")
    stride = _literal(meta.get("stride"), "stride")
    nms = _literal(meta.get(GRAPH_NMS_KEY), GRAPH_NMS_KEY)
    graph_nms = (float(nms["conf"]), float(nms["iou"])) if isinstance(nms, dict) and "conf" in nms and "iou" in nms else None
    return ModelInfo(
        names=names,
        imgsz=imgsz,
        stride=int(stride) if isinstance(stride, int) else 32,
        batch=_dim(input_shape[0]),
        dynamic_shape=dynamic_shape,
        end2end=end2end,
        input_name=input_name,
        input_dtype=input_dtype,
        task=task,
        graph_nms=graph_nms,
        max_batch=int(nms["max_batch"]) if isinstance(nms, dict) and nms.get("max_batch") else None,
    )


def _graph_preprocess_info(
    meta: Mapping[str, str],
    graph: object,
    input_name: str,
    input_shape: Sequence[object],
    output_shape: Sequence[object],
    source: str,
) -> ModelInfo:
    """A model whose first input takes uint8 frames [B, H, W, 3]: the inner model's facts live in the metadata."""
    if not isinstance(graph, dict) or graph.get("version") != 1 or "plan_input" not in graph:
        raise ModelError(f"{source}: metadata {GRAPH_PREPROCESS_KEY!r} is not a version edge_rt reads: {str(graph)[:80]}")
    if len(input_shape) != 4 or _dim(input_shape[3]) != 3:
        raise ModelError(f"{source}: a graph-preprocess model takes frames [B, H, W, 3], got shape {list(input_shape)}")
    inner = dict(graph)
    h, w = (int(v) for v in inner["inner_hw"])
    batch = input_shape[0]
    args = _literal(meta.get("args"), "args")
    exported = _literal(meta.get("batch"), "batch")
    if _dim(batch) is None and isinstance(args, dict) and args.get("dynamic") is False and _dim(exported):
        # written before the frames input stated a static export's batch: its inner reshapes hold that batch
        batch = exported
    base = info_from_metadata(
        {k: v for k, v in meta.items() if k != GRAPH_PREPROCESS_KEY},
        input_name,
        [batch, 3, None if inner.get("dynamic") else h, None if inner.get("dynamic") else w],
        str(inner.get("dtype", "float32")),
        output_shape,
        source,
    )
    return replace(base, graph_preprocess=True, plan_input=str(inner["plan_input"]))
