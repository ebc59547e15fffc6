"""Graph clean-up before mapping: float16 → float32, constant evaluation, and bias Adds fused into Conv/MatMul."""
from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from edgeopt.frontends.onnx.context import attr

_F16 = TensorProto.FLOAT16


def _tensor_to_f32(t: TensorProto) -> None:
    arr = numpy_helper.to_array(t).astype(np.float32)
    t.CopyFrom(numpy_helper.from_array(arr, t.name))


def _types_to_f32(values) -> int:
    n = 0
    for v in values:
        tt = v.type.tensor_type
        if tt.elem_type == _F16:
            tt.elem_type = TensorProto.FLOAT
            n += 1
    return n


def has_float16(model: onnx.ModelProto) -> bool:
    g = model.graph
    return (any(t.data_type == _F16 for t in g.initializer)
            or any(v.type.tensor_type.elem_type == _F16 for v in list(g.input) + list(g.output)))


def to_float32(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` computing in float32: fp16 initializers, constants, Casts and I/O types widened.

    >>> m32 = to_float32(onnx.load("squeezenet_fp16.onnx"))  # doctest: +SKIP
    """
    m = copy.deepcopy(model)
    g = m.graph
    for t in g.initializer:
        if t.data_type == _F16:
            _tensor_to_f32(t)
    for node in g.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == _F16:
                _tensor_to_f32(a.t)
            elif node.op_type == "Cast" and a.name == "to" and a.i == _F16:
                a.i = TensorProto.FLOAT
    _types_to_f32(list(g.input) + list(g.output) + list(g.value_info))
    return m


def evaluate(node: onnx.NodeProto, inputs: list[np.ndarray | None], opset: int) -> list[np.ndarray]:
    """Run one node on constant inputs with onnx's reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    if node.op_type == "Constant":
        for name in ("value", "value_float", "value_floats", "value_int", "value_ints"):
            v = attr(node, name)
            if v is not None:
                return [np.asarray(v, np.float32 if "float" in name else (np.int64 if "int" in name else None))]
    if node.op_type in ("DequantizeLinear", "QuantizeLinear"):
        return [_quantize_linear(node, inputs)]
    feeds = {name: v for name, v in zip(node.input, inputs) if name}
    _check_size(node, inputs)
    # Wrapped in a model: a bare NodeProto is evaluated with the newest op version whatever the opset.
    h = onnx.helper
    graph = h.make_graph([node], "fold", [h.make_empty_tensor_value_info(n) for n in feeds],
                         [h.make_empty_tensor_value_info(o) for o in node.output if o])
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
    outs = ReferenceEvaluator(m).run(None, feeds)
    return [np.asarray(o) for o in outs]


def _quantize_linear(node: onnx.NodeProto, inputs: list) -> np.ndarray:
    """Dequantize ``(x - zero_point) * scale`` (or quantize) a constant, per tensor or along ``axis``.

    The reference evaluator knows these ops only from opset 19; QDQ weights of opset 10-18 graphs fold here.
    """
    x, scale = np.asarray(inputs[0]), np.asarray(inputs[1], np.float32)
    zero = np.asarray(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else np.zeros((), np.int8)
    if scale.ndim == 1 and scale.size > 1:
        axis = int(attr(node, "axis", 1))
        axis = axis + x.ndim if axis < 0 else axis
        shape = [1] * x.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    if node.op_type == "DequantizeLinear":
        return ((x.astype(np.float32) - zero.astype(np.float32)) * scale).astype(np.float32)
    info = np.iinfo(zero.dtype)
    q = np.round(x.astype(np.float32) / scale) + zero.astype(np.float32)
    return np.clip(q, info.min, info.max).astype(zero.dtype)


def fold_constants(nodes: list, consts: dict, opset: int) -> tuple[list, int]:
    """Evaluate every node whose inputs are all constants; return the remaining nodes and the count folded.

    Weights computed from weights (a Reshape of an initializer, ``Constant`` nodes, Cast of constants) become
    plain constants here, so the op handlers and the bias fusion see them as weights.
    """
    kept, folded = [], 0
    for n in nodes:
        if all(not i or i in consts for i in n.input) and n.domain in ("", "ai.onnx"):
            try:
                outs = evaluate(n, [consts.get(i) if i else None for i in n.input], opset)
            except Exception:  # left to the mapping pass, which reports it with the node's name
                kept.append(n)
                continue
            for name, v in zip(n.output, outs):
                if name:
                    consts[name] = v
            folded += 1
        else:
            kept.append(n)
    return kept, folded


# Elements: 2^29 float32 is 2 GiB, beyond the largest weights of real models (VGG-16's 103M-element fc6); a
# constant this large is a corrupt shape, not a weight.
_MAX_FOLDED = 1 << 29


def _check_size(node: onnx.NodeProto, inputs: list) -> None:
    """Refuse to materialise absurdly large constants (ConstantOfShape/Expand/Tile/Range on bad shapes)."""
    if node.op_type in ("ConstantOfShape", "Expand") and inputs and inputs[-1] is not None:
        n = int(np.prod(np.asarray(inputs[-1], np.float64).clip(min=1)))
    elif node.op_type == "Tile" and len(inputs) == 2 and inputs[0] is not None and inputs[1] is not None:
        n = int(np.size(inputs[0]) * np.prod(np.asarray(inputs[1], np.float64).clip(min=1)))
    elif node.op_type == "Range" and len(inputs) == 3 and all(v is not None for v in inputs):
        start, limit, delta = (float(np.asarray(v).reshape(-1)[0]) for v in inputs)
        n = int(abs((limit - start) / delta)) if delta else _MAX_FOLDED + 1
    else:
        return
    if n > _MAX_FOLDED:
        raise ValueError(f"{node.op_type} would create {n} elements")


def _per_channel(c: np.ndarray, rank: int, channels: int) -> np.ndarray | None:
    """``c`` as a [channels] vector when it broadcasts along axis 1 of a rank-``rank`` tensor only."""
    c = np.asarray(c)
    if c.ndim > rank or c.dtype.kind != "f":
        return None
    full = c.reshape((1,) * (rank - c.ndim) + c.shape)
    if any(d != 1 for i, d in enumerate(full.shape) if i != 1) or full.shape[1] not in (1, channels):
        return None
    return np.broadcast_to(full.reshape(-1), (channels,)).astype(np.float32)


def index_nodes(nodes: list) -> tuple[dict[str, int], dict[str, onnx.NodeProto]]:
    """(how many node inputs read each tensor, the node producing each tensor)."""
    users: dict[str, int] = {}
    for n in nodes:
        for i in n.input:
            users[i] = users.get(i, 0) + 1
    return users, {o: n for n in nodes for o in n.output}


def fuse_bias_adds(nodes: list, consts: dict, outputs: set[str]) -> tuple[list, int]:
    """Fold ``Conv → Add(const per-channel)`` and ``MatMul(x, W) → Add(const)`` into the Conv/Gemm bias.

    CNTK and some converters write the bias as a separate Add; a fused bias keeps the Keras model to one layer
    per conv, which pruning and quantization both want.
    """
    users, producer = index_nodes(nodes)
    out, fused, drop = [], 0, set()
    for n in nodes:
        if n.op_type != "Add" or len(n.input) != 2:
            out.append(n)
            continue
        src, c = None, None
        for a, b in ((0, 1), (1, 0)):
            if n.input[b] in consts and n.input[a] in producer:
                src, c = producer[n.input[a]], consts[n.input[b]]
        if src is None or users.get(src.output[0], 0) != 1 or src.output[0] in outputs or id(src) in drop:
            out.append(n)
            continue
        new = _fused(src, c, consts)
        if new is None:
            out.append(n)
            continue
        new.output[0] = n.output[0]
        out[out.index(src)] = new
        drop.add(id(src))
        fused += 1
    return out, fused


def _fused(src: onnx.NodeProto, c: np.ndarray, consts: dict) -> onnx.NodeProto | None:
    """``src`` with the constant ``c`` added to its bias (MatMul gets a third, bias input), or None."""
    try:
        return _fuse(src, c, consts)
    except (ValueError, TypeError, IndexError):  # odd shapes: leave the Add to the mapping, which reports it
        return None


def _fuse(src: onnx.NodeProto, c: np.ndarray, consts: dict) -> onnx.NodeProto | None:
    if not src.input or src.input[0] in consts or len(src.input) < 2 or src.input[1] not in consts:
        return None
    w = consts[src.input[1]]
    name = f"{src.output[0]}__fused_bias"
    if src.op_type == "Conv" and np.ndim(w) == 4:
        bias = _per_channel(c, 4, w.shape[0])
        if bias is None:
            return None
        if len(src.input) > 2 and src.input[2]:
            if src.input[2] not in consts:
                return None
            bias = bias + np.asarray(consts[src.input[2]], np.float32).reshape(-1)
    elif src.op_type == "MatMul" and len(src.input) == 2 and np.ndim(w) == 2:
        c = np.asarray(c)
        if c.dtype.kind != "f" or c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1) or c.size not in (1, w.shape[1]):
            return None
        bias = np.broadcast_to(c.reshape(-1), (w.shape[1],)).astype(np.float32)
    else:
        return None
    consts[name] = bias
    new = copy.deepcopy(src)
    del new.input[2:]
    new.input.append(name)
    return new
