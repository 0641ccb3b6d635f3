"""Fold the letterbox into the model: uint8 camera frames in, detections out, all inside one graph.

On a GPU this is what lets a frame cross to the device once, as uint8 (a quarter of the float
bytes), and be resized, padded, flipped to RGB, transposed and scaled there, inside the same call
as the model, whichever runtime runs it: ONNX Runtime on CPU or CUDA, its TensorRT provider, or a
native TensorRT engine built from the file. We chose the graph over a hand-written CUDA kernel
because it needs no CuPy or NVRTC on the box (JetPack has neither by default), runs the same on
every backend, and ONNX Runtime's CPU provider runs it too, so CI checks its numbers against the
host letterbox (`tests/exporters/test_graph_preprocess.py`).

The graph in front of the model, for frames [B, H, W, 3] uint8 BGR and plan [6] int64
(new_h, new_w, top, left, bottom, right) from `preprocess.plan_vector`:

    Cast(float) -> Transpose(NCHW) -> Resize(linear, half_pixel) -> Round -> Gather(BGR->RGB)
      -> Pad(114) -> Div(255) [-> Cast(float16)] -> the model's image input

The resize runs on NCHW, the one layout every runtime resizes alike: ONNX Runtime's CUDA kernel
takes the last two axes as height and width whatever the scales say (an NHWC resize, which its CPU
kernel does run, would resize width and channels there). TensorRT takes UINT8 only at the network's
inputs and outputs, so the Cast comes first. The channel flip waits until after the resize, on the
model-sized tensor.

Resize with `half_pixel` and no antialias is OpenCV's INTER_LINEAR; Round brings it to the uint8
values OpenCV's resize produces (within one level: OpenCV interpolates in fixed point).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..detect.model_info import GRAPH_PREPROCESS_KEY
from ..errors import MissingDependencyError, ModelError

FRAMES = "frames"
PLAN = "letterbox"
_PREFIX = "edge_rt_pre/"


def _onnx():  # type: ignore[no-untyped-def]
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("--graph-preprocess needs onnx: pip install 'edge_rt[train]'") from None
    return onnx


def preprocess_graph(  # type: ignore[no-untyped-def]
    opset: int,
    ir_version: int,
    out_name: str,
    out_dtype: str,
    fixed_hw: tuple[int, int] | None = None,
    batch: int | None = None,
):
    """The letterbox as an ONNX model whose single output feeds the detector's image input.

    `fixed_hw`: the model's static input size; a final Reshape states it, so TensorRT sizes its
    buffers from the shape instead of from the plan's value range. `batch`: the model's fixed batch,
    stated on the frames input, so a runtime reads from the file which batch the model takes.
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    def name(n: str) -> str:
        return _PREFIX + n

    consts: dict[str, np.ndarray] = {
        "rgb": np.array([2, 1, 0], np.int64),
        "zero2": np.zeros(2, np.int64),
        "s0": np.array([0], np.int64),
        "s2": np.array([2], np.int64),
        "s4": np.array([4], np.int64),
        "s6": np.array([6], np.int64),
        "pad_value": np.array(114.0, np.float32),
        "scale": np.array(255.0, np.float32),
    }
    init = [numpy_helper.from_array(v, name(k)) for k, v in consts.items()]
    n = name
    nodes = [
        helper.make_node("Cast", [FRAMES], [n("f")], to=TensorProto.FLOAT),
        helper.make_node("Transpose", [n("f")], [n("nchw_bgr")], perm=[0, 3, 1, 2]),
        # sizes = [B, 3, new_h, new_w]
        # Shape's start/end attributes came with opset 15; Shape + Slice reads the same at 13 and 14.
        helper.make_node("Shape", [n("nchw_bgr")], [n("nchw_shape")]),
        helper.make_node("Slice", [n("nchw_shape"), n("s0"), n("s2")], [n("bc")]),
        helper.make_node("Slice", [PLAN, n("s0"), n("s2")], [n("new_hw")]),
        helper.make_node("Concat", [n("bc"), n("new_hw")], [n("sizes")], axis=0),
        helper.make_node(
            "Resize",
            [n("nchw_bgr"), "", "", n("sizes")],
            [n("resized_f")],
            mode="linear",
            coordinate_transformation_mode="half_pixel",
        ),
        helper.make_node("Round", [n("resized_f")], [n("resized")]),
        helper.make_node("Gather", [n("resized"), n("rgb")], [n("nchw")], axis=1),
        # pads = [0, 0, top, left, 0, 0, bottom, right]
        helper.make_node("Slice", [PLAN, n("s2"), n("s4")], [n("begin")]),
        helper.make_node("Slice", [PLAN, n("s4"), n("s6")], [n("end")]),
        helper.make_node("Concat", [n("zero2"), n("begin"), n("zero2"), n("end")], [n("pads")], axis=0),
        helper.make_node("Pad", [n("nchw"), n("pads"), n("pad_value")], [n("padded")], mode="constant"),
    ]
    last = n("padded")
    if fixed_hw is not None:
        init.append(numpy_helper.from_array(np.array([batch or -1, 3, *fixed_hw], np.int64), n("static_shape")))
        nodes.append(helper.make_node("Reshape", [last, n("static_shape")], [n("static")]))
        last = n("static")
    if out_dtype == "float16":
        nodes.append(helper.make_node("Div", [last, n("scale")], [n("scaled")]))
        nodes.append(helper.make_node("Cast", [n("scaled")], [out_name], to=TensorProto.FLOAT16))
    else:
        nodes.append(helper.make_node("Div", [last, n("scale")], [out_name]))
    out_type = TensorProto.FLOAT16 if out_dtype == "float16" else TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "edge_rt_letterbox",
        [
            helper.make_tensor_value_info(FRAMES, TensorProto.UINT8, [batch or "batch", "height", "width", 3]),
            helper.make_tensor_value_info(PLAN, TensorProto.INT64, [6]),
        ],
        [helper.make_tensor_value_info(out_name, out_type, [batch or "batch", 3, *(fixed_hw or ("in_h", "in_w"))])],
        initializer=init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model


def add_graph_preprocess(model_path: Path, output: Path) -> Path:
    """Compose the letterbox graph in front of an Ultralytics-exported detection ONNX."""
    onnx = _onnx()
    from onnx import compose

    model = onnx.load(str(model_path))
    meta = {p.key: p.value for p in model.metadata_props}
    if GRAPH_PREPROCESS_KEY in meta:
        raise ModelError(f"{model_path}: the letterbox is already in this graph")
    if len(model.graph.input) != 1:
        raise ModelError(f"{model_path}: expected one image input, got {len(model.graph.input)}")
    image = model.graph.input[0]
    elem = image.type.tensor_type.elem_type
    dtype = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}.get(elem)
    if dtype is None:
        raise ModelError(f"{model_path}: image input type {elem} is not float32 or float16")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in image.type.tensor_type.shape.dim]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset < 13:
        raise ModelError(f"{model_path}: opset {opset} is too old for the letterbox graph (13 or newer)")
    fixed_hw = (dims[2], dims[3]) if dims[2] and dims[3] else None
    # A static export is static in its batch too (its reshapes say 1): the frames input says the same,
    # so `run` batches what the model takes instead of failing on the first batch of two.
    pre = preprocess_graph(opset, model.ir_version, _PREFIX + "image", dtype, fixed_hw, dims[0] or None)
    sort_topologically(model.graph)
    merged = compose.merge_models(pre, model, io_map=[(_PREFIX + "image", image.name)])
    from ..detect.model_info import _literal

    imgsz = _literal(meta.get("imgsz"), "imgsz")
    inner_hw = list(imgsz) if isinstance(imgsz, (list, tuple)) else [dims[2] or 640, dims[3] or 640]
    if dims[2] and dims[3]:
        inner_hw = [dims[2], dims[3]]
    meta[GRAPH_PREPROCESS_KEY] = repr(
        {"version": 1, "plan_input": PLAN, "inner_hw": inner_hw, "dynamic": dims[2] is None or dims[3] is None, "dtype": dtype}
    )
    del merged.metadata_props[:]
    for k, v in meta.items():
        merged.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(merged)
    output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(merged, str(output))
    return output


def sort_topologically(graph) -> None:  # type: ignore[no-untyped-def]
    """Order `graph`'s nodes so each comes after the nodes it reads from, in place.

    Ultralytics' fp16 export on a CPU appends the Casts of its float32 input and output at the end of
    the node list: ONNX Runtime runs such a file, but onnx's checker (and so `compose.merge_models`)
    refuses it. Names a subgraph (If/Loop) reads from the outer graph count as that node's inputs.
    """
    nodes = list(graph.node)
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    needs = [{x for x in _reads(node) if x in producer and x not in ready} for node in nodes]
    done: list[int] = []
    placed = [False] * len(nodes)
    available = set(ready)
    progress = True
    while progress and len(done) < len(nodes):
        progress = False
        for i, node in enumerate(nodes):
            if not placed[i] and needs[i] <= available:
                placed[i] = True
                done.append(i)
                available.update(node.output)
                progress = True
    if len(done) < len(nodes):
        raise ModelError("the model's graph has a cycle: it cannot be ordered for the letterbox graph")
    if done != list(range(len(nodes))):
        ordered = [nodes[i] for i in done]
        del graph.node[:]
        graph.node.extend(ordered)


def _reads(node) -> set[str]:  # type: ignore[no-untyped-def]
    """The tensors a node reads, its subgraphs' reads from the outer scope included."""
    names = set(node.input)
    for attr in node.attribute:
        for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
            inner = {o for n in sub.node for o in n.output} | {i.name for i in sub.input} | {t.name for t in sub.initializer}
            names |= {x for n in sub.node for x in _reads(n)} - inner
    return names
