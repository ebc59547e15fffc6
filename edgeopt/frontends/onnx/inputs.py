"""Model inputs: static shapes (dynamic dims from ``input_shapes``), layouts, and the Keras Input layers."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import onnx

from edgeopt.errors import ModelFileError, UnsupportedModelError
from edgeopt.frontends.onnx.context import Ctx, attr
from edgeopt.frontends.onnx.layout import CHANNELS_LAST, Value, identity
from edgeopt.frontends.spec import TensorSpec

_FLOATS = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)


def _static_shape(inp, path: Path, given: Sequence[int] | None, notes: list[str]) -> list[int]:
    dims = inp.type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
    example = "1," + ",".join(str(d or "N") for d in shape[1:]) if shape else "1,3,224,224"
    if given is not None:
        try:
            given = [int(v) for v in given]
        except (TypeError, ValueError):
            raise ModelFileError(f"input_shapes for '{inp.name}' must be a list of integers, got {given!r}") from None
        if len(given) != len(shape) or any(g < 1 for g in given) or \
                any(s is not None and s != g for s, g in zip(shape, given)):
            raise ModelFileError(f"{path}: --input-shape gives {given} for input '{inp.name}', whose shape is "
                                 f"{[s if s else '?' for s in shape]}",
                                 hint=f"pass --input-shape {inp.name}:{example} matching the model's rank and "
                                      "fixed dims")
        return given
    if not shape:
        raise UnsupportedModelError(f"{path}: input '{inp.name}' is a scalar or has no shape",
                                    hint=f"pass --input-shape {inp.name}:1,3,224,224 with its full shape")
    if shape[0] is None:
        notes.append(f"input '{inp.name}': dynamic batch dimension; the spec uses 1 (the Keras model takes any)")
        shape[0] = 1
    missing = [i for i, d in enumerate(shape) if d is None]
    if missing:
        raise UnsupportedModelError(
            f"{path}: input '{inp.name}' has dynamic dimensions at axes {missing} "
            f"({[d.dim_param or '?' for d in dims]})",
            hint=f"pass --input-shape {inp.name}:{example}")
    return shape


# Ops that keep the layout of their run-time input (constants broadcast in whatever layout the input has), and
# Pad, which Keras models put before their first conv (ZeroPadding2D) while still NHWC.
_PASS_THROUGH = {"Mul", "Add", "Sub", "Div", "Relu", "Clip", "Identity", "Cast", "Sigmoid", "Tanh", "Neg", "Abs",
                 "Pow", "Sqrt", "Max", "Min", "LeakyRelu", "HardSigmoid", "Floor", "Round", "Exp", "Log", "Pad"}
# Ops that read only the shape: they say nothing about the layout.
_SHAPE_ONLY = {"Shape", "Size"}


def _is_nhwc_input(name: str, nodes) -> bool:
    """True for an NHWC input: 4-D, every path from it reaching a Transpose to NCHW (0, 3, 1, 2).

    That is how every Keras exporter (tf2onnx, onnxmltools, keras2onnx) and a torch model that permutes its
    NHWC input write it, whatever the producer name says. The paths may pass through elementwise preprocessing
    (a Rescaling's Mul/Add, a Normalization's Sub/Div) and padding first; Shape/Size readers are ignored.
    """
    users_of: dict[str, list] = {}
    for n in nodes:
        for i in set(n.input):
            users_of.setdefault(i, []).append(n)
    frontier, seen = [name], set()
    found = False
    while frontier:
        users = users_of.get(frontier.pop(), [])
        for n in users:
            if id(n) in seen:
                continue
            seen.add(id(n))
            if n.op_type == "Transpose" and list(attr(n, "perm", [])) == [0, 3, 1, 2]:
                found = True
            elif n.op_type in _SHAPE_ONLY:
                continue
            elif n.op_type in _PASS_THROUGH and len(seen) < 64:
                frontier.extend(o for o in n.output if o)
            else:
                return False
    return found


def _is_sequence_first_input(name: str, nodes) -> bool:
    """True for a 3-D input read as ``X [T, B, C]`` by an LSTM/GRU (its batch is axis 1)."""
    return any(n.op_type in ("LSTM", "GRU") and n.input and n.input[0] == name and not int(attr(n, "layout", 0))
               for n in nodes)


def import_layouts(model) -> dict[str, str]:
    """How the importer will lay out each 4-D run-time input of an ONNX ``ModelProto``, without importing it:
    ``NCHW->NHWC`` for image inputs, ``TBC->BTC`` for sequence-first inputs of an LSTM/GRU, ``as-is`` for inputs
    that are NHWC already (Keras exports) or anything else."""
    consts = {t.name for t in model.graph.initializer}
    nodes = list(model.graph.node)
    out = {}
    for inp in model.graph.input:
        if inp.name in consts:
            continue
        rank = len(inp.type.tensor_type.shape.dim) if inp.type.HasField("tensor_type") else 0
        if rank == 3 and _is_sequence_first_input(inp.name, nodes):
            out[inp.name] = "TBC->BTC"
        else:
            out[inp.name] = "NCHW->NHWC" if rank == 4 and not _is_nhwc_input(inp.name, nodes) else "as-is"
    return out


def make_inputs(graph, nodes, consts, path: Path, input_shapes: Mapping[str, Sequence[int]] | None, opset: int,
                keras, notes: list[str]):
    """The input specs, a fresh :class:`Ctx` holding the Keras inputs, and the Keras Input tensors."""
    real = [i for i in graph.input if i.name not in consts]
    given = dict(input_shapes or {})
    unknown = sorted(set(given) - {i.name for i in real})
    if unknown:
        raise ModelFileError(f"{path}: --input-shape names {unknown}, but the model's inputs are "
                             f"{[i.name for i in real]}")
    if not real:
        raise UnsupportedModelError(f"{path}: the model has no run-time inputs")
    shapes = {}
    for inp in real:
        if not inp.type.HasField("tensor_type"):
            raise UnsupportedModelError(f"{path}: input '{inp.name}' is not a tensor")
        if inp.type.tensor_type.elem_type not in _FLOATS:
            kind = onnx.TensorProto.DataType.Name(inp.type.tensor_type.elem_type)
            raise UnsupportedModelError(f"{path}: input '{inp.name}' is {kind}; only float inputs are supported")
        shapes[inp.name] = _static_shape(inp, path, given.get(inp.name), notes)
    perms = {}
    for inp in real:
        shape = shapes[inp.name]
        perms[inp.name] = identity(len(shape))
        if len(shape) == 3 and _is_sequence_first_input(inp.name, nodes):
            perms[inp.name] = (1, 0, 2)
    first = real[0].name
    batch = shapes[first][perms[first][0]]
    ctx = Ctx(opset=opset, batch=batch, keras=keras)
    specs, tensors = [], []
    for inp in real:
        shape = shapes[inp.name]
        perm = perms[inp.name]
        if len(shape) == 4:
            if _is_nhwc_input(inp.name, nodes):
                notes.append(f"input '{inp.name}' is NHWC already (the graph transposes it to NCHW); kept as-is")
            else:
                perm = CHANNELS_LAST
        keras_shape = tuple(shape[p] for p in perm)
        ctx.node = None
        t = keras.Input(shape=keras_shape[1:], name=ctx.name(_clean(inp.name)), dtype="float32")
        ctx.env[inp.name] = Value(t, perm)
        specs.append(TensorSpec(inp.name, tuple(shape), keras_shape, "float32",
                                None if perm == identity(len(shape)) else perm))
        tensors.append(t)
    return specs, ctx, tensors


def _clean(name: str) -> str:
    import re

    s = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_")
    return s if s and s[0].isalpha() else f"input_{s}"
