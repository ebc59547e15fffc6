"""Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Shape, Expand, Identity, Cast: layout-aware, transposes minimised.

A Transpose only relabels the layout. A Reshape groups input and output axes into blocks of equal size (sizes
of 1 ignored); when each block's axes already sit together and in ONNX order in the Keras tensor, it is a free
Keras Reshape, otherwise one Permute first brings them together.
"""
from __future__ import annotations

import numpy as np
import onnx

from edgeopt.frontends.onnx.context import NodeError, attr
from edgeopt.frontends.onnx.elementwise import with_constant
from edgeopt.frontends.onnx.layout import Value, flatten_rows, permute, plain_rows, relabel


def _groups(in_shape, out_shape) -> list[tuple[list[int], list[int]]]:
    """Blocks (input axes, output axes) of equal element count, over the non-batch axes of size > 1.

    >>> _groups((1, 8, 4, 4), (1, 2, 4, 16))
    [([1], [1, 2]), ([2, 3], [3])]
    """
    ins = [i for i in range(1, len(in_shape)) if in_shape[i] != 1]
    outs = [i for i in range(1, len(out_shape)) if out_shape[i] != 1]
    groups, i, j = [], 0, 0
    while i < len(ins) and j < len(outs):
        gi, gj = [ins[i]], [outs[j]]
        pi, pj = in_shape[ins[i]], out_shape[outs[j]]
        i, j = i + 1, j + 1
        while pi != pj:
            if pi < pj and i < len(ins):
                gi.append(ins[i]); pi *= in_shape[ins[i]]; i += 1
            elif pj < pi and j < len(outs):
                gj.append(outs[j]); pj *= out_shape[outs[j]]; j += 1
            else:
                raise NodeError(f"cannot reshape {list(in_shape)} to {list(out_shape)}")
        groups.append((gi, gj))
    if i < len(ins) or j < len(outs):
        raise NodeError(f"cannot reshape {list(in_shape)} to {list(out_shape)}")
    return groups


def _compatible(x: Value, groups, in_shape) -> list[int] | None:
    """Group indices in Keras order, when every group's axes are contiguous and in ONNX order; else None."""
    owner = {a: g for g, (axes, _) in enumerate(groups) for a in axes}
    seq = [p for p in x.perm[1:] if in_shape[p] != 1]
    order: list[int] = []
    for pos, p in enumerate(seq):
        g = owner[p]
        if order and order[-1] == g:
            if p < seq[pos - 1]:
                return None
            continue
        if g in order:
            return None
        order.append(g)
    return order


def _batch_out_axis(in_shape, out_shape, b: int) -> int | None:
    """Where the batch axis ``b`` of ``in_shape`` lands in ``out_shape``, when the reshape keeps it apart.

    The batch is its own block: the elements before it (their product) stay before it. Among the output axes of
    the batch's size with that product before them, the one nearest ``b`` is taken.

    >>> _batch_out_axis((7, 2, 1, 5), (7, 1, 10), 2)
    1
    """
    before = int(np.prod(in_shape[:b]))
    cands = [a for a in range(len(out_shape)) if out_shape[a] == in_shape[b]
             and int(np.prod(out_shape[:a])) == before]
    return min(cands, key=lambda a: abs(a - b)) if cands else None


def _to_front(axis: int, rank: int) -> dict[int, int]:
    """Axis renumbering that moves ``axis`` to 0 and keeps the others in order."""
    order = [axis] + [a for a in range(rank) if a != axis]
    return {a: i for i, a in enumerate(order)}


def reshape_value(ctx, x: Value, out_shape) -> Value:
    """``x`` reshaped to the ONNX shape ``out_shape``.

    When the graph moved the batch axis (``x.batch_axis != 0``), the reshape must keep the batch apart from the
    other axes; it is then done on the tensor with the batch moved first on both sides (the same reshape, since
    the axes before and after the batch regroup among themselves).
    """
    out_shape = [int(d) for d in out_shape]
    b = x.batch_axis
    in_shape = x.onnx_shape(ctx.batch)
    bo = _batch_out_axis(in_shape, out_shape, b) if b != 0 or out_shape[0] != in_shape[0] else 0
    if bo is None:
        raise NodeError(f"reshaping {list(in_shape)} to {out_shape} merges the batch axis ({b}) with other axes; "
                        "only reshapes that keep the batch apart can be mapped")
    if b == 0 and bo == 0:
        return _reshape_batch_first(ctx, x, out_shape)
    fwd = _to_front(b, x.rank)
    xv = Value(x.t, tuple(fwd[p] for p in x.perm), x.rows, x.src)
    vout = [out_shape[bo]] + [d for a, d in enumerate(out_shape) if a != bo]
    y = _reshape_batch_first(ctx, xv, vout)
    back = {v: a for a, v in _to_front(bo, len(out_shape)).items()}
    return Value(y.t, tuple(back[p] for p in y.perm), y.rows, y.src)


def _reshape_batch_first(ctx, x: Value, out_shape: list[int]) -> Value:
    in_shape = x.onnx_shape(ctx.batch)
    if out_shape[0] != in_shape[0] or int(np.prod(out_shape[1:])) != int(np.prod(in_shape[1:])):
        raise NodeError(f"reshaping {list(in_shape)} to {out_shape} changes the batch axis; only per-sample "
                        "reshapes can be mapped")
    if tuple(out_shape) == tuple(in_shape):
        return x
    x = plain_rows(x, ctx)
    if len(out_shape) == 2 and x.rank > 2:
        return flatten_rows(x, ctx)
    groups = _groups(in_shape, out_shape)
    order = _compatible(x, groups, in_shape)
    if order is None:
        firsts: list[int] = []
        owner = {a: g for g, (axes, _) in enumerate(groups) for a in axes}
        for p in x.perm[1:]:
            if in_shape[p] != 1 and owner[p] not in firsts:
                firsts.append(owner[p])
        units = [a for a in range(1, x.rank) if in_shape[a] == 1]
        new_perm = (0, *[a for g in firsts for a in groups[g][0]], *units)
        x = permute(x, new_perm, ctx)
        order = firsts
    out_perm = [0] + [a for g in order for a in groups[g][1]]
    for a in range(1, len(out_shape)):
        if out_shape[a] == 1:
            out_perm.insert(out_perm.index(a - 1) + 1 if a - 1 in out_perm else 1, a)
    target = [out_shape[a] for a in out_perm[1:]]
    if [int(d) for d in x.t.shape[1:]] == target:
        return Value(x.t, tuple(out_perm))
    t = ctx.apply(ctx.keras.layers.Reshape(target, name=ctx.name("reshape")), x.t)
    return Value(t, tuple(out_perm))


def _resolve(in_shape, shape, allowzero: bool) -> list[int]:
    shape = list(shape)
    if not allowzero:
        shape = [in_shape[i] if d == 0 and i < len(in_shape) else d for i, d in enumerate(shape)]
    if shape.count(-1) > 1 or any(d < -1 for d in shape):
        raise NodeError(f"bad target shape {shape}")
    if -1 in shape:
        known = int(np.prod([d for d in shape if d != -1]))
        total = int(np.prod(in_shape))
        if known == 0 or total % known:
            raise NodeError(f"cannot reshape {list(in_shape)} to {shape}")
        shape[shape.index(-1)] = total // known
    return shape


def reshape(ctx, node):
    x = ctx.value(node, 0)
    shape = ctx.ints(node, 1, "Reshape shape") if len(node.input) > 1 else attr(node, "shape")
    if shape is None:
        raise NodeError("the target shape is missing")
    return [reshape_value(ctx, x, _resolve(x.onnx_shape(ctx.batch), shape, bool(attr(node, "allowzero", 0))))]


def flatten(ctx, node):
    x = ctx.value(node, 0)
    shape = x.onnx_shape(ctx.batch)
    axis = int(attr(node, "axis", 1))
    axis = axis + x.rank if axis < 0 else axis
    if x.batch_axis != 0 or not 0 < axis <= x.rank or int(np.prod(shape[1:axis])) != 1:
        raise NodeError(f"Flatten at axis {axis} of {list(shape)} would merge the batch axis")
    return [reshape_value(ctx, x, [shape[0], int(np.prod(shape[axis:]))])]


def transpose(ctx, node):
    x = plain_rows(ctx.value(node, 0), ctx)
    t = attr(node, "perm")
    t = tuple(range(x.rank))[::-1] if t is None else tuple(int(p) for p in t)
    if sorted(t) != list(range(x.rank)):
        raise NodeError(f"perm {list(t)} is not a permutation of {x.rank} axes")
    # The batch may move: Keras axis 0 stays the batch, and the layout records where ONNX now has it.
    return [Value(x.t, relabel(x.perm, t))]


def _axes(ctx, node) -> list[int] | None:
    if ctx.opset >= 13 and len(node.input) > 1 and node.input[1]:
        return ctx.ints(node, 1, "axes")
    a = attr(node, "axes")
    return None if a is None else [int(v) for v in a]


def squeeze(ctx, node):
    x = ctx.value(node, 0)
    shape = x.onnx_shape(ctx.batch)
    axes = _axes(ctx, node)
    if axes is None:
        # Keep the batch axis even when it is 1: the Keras model always has one.
        axes = [i for i in range(x.rank) if shape[i] == 1 and i != x.batch_axis]
    axes = sorted({a + x.rank if a < 0 else a for a in axes})
    if any(not 0 <= a < x.rank or shape[a] != 1 for a in axes) or x.batch_axis in axes:
        raise NodeError(f"cannot squeeze axes {axes} of shape {list(shape)}"
                        + (" (the batch axis cannot be removed)" if x.batch_axis in axes else ""))
    return [reshape_value(ctx, x, [d for i, d in enumerate(shape) if i not in axes])]


def unsqueeze(ctx, node):
    x = plain_rows(ctx.value(node, 0), ctx)
    axes = _axes(ctx, node)
    if not axes:
        raise NodeError("axes are missing")
    rank = x.rank + len(axes)
    axes = sorted({a + rank if a < 0 else a for a in axes})
    if len(axes) != rank - x.rank or any(not 0 <= a < rank for a in axes):
        raise NodeError(f"bad axes {axes} for rank {x.rank}")
    # Inserted axes only shift the others: the batch goes where its ONNX axis moves to.
    kept = [a for a in range(rank) if a not in axes]
    new_perm = [kept[p] for p in x.perm] + axes
    t = ctx.apply(ctx.keras.layers.Reshape([int(d) for d in x.t.shape[1:]] + [1] * len(axes),
                                           name=ctx.name("reshape")), x.t)
    return [Value(t, tuple(new_perm))]


def shape_of(ctx, node):
    x = ctx.value(node, 0)
    s = np.array(x.onnx_shape(ctx.batch), np.int64)
    start, end = int(attr(node, "start", 0)), attr(node, "end")
    return [s[start:] if end is None else s[start:int(end)]]


def size_of(ctx, node):
    return [np.array(int(np.prod(ctx.value(node, 0).onnx_shape(ctx.batch))), np.int64)]


def passthrough(ctx, node):
    return [ctx.inp(node, 0)]


def cast(ctx, node):
    x = ctx.value(node, 0)
    to = int(attr(node, "to", onnx.TensorProto.FLOAT))
    if to not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE):
        raise NodeError(f"casting a run-time tensor to {onnx.TensorProto.DataType.Name(to)} is not supported")
    return [x]


def expand(ctx, node):
    x = ctx.value(node, 0)
    shape = ctx.ints(node, 1, "Expand shape")
    in_shape = x.onnx_shape(ctx.batch)
    try:
        out = np.broadcast_shapes(in_shape, tuple(shape))
    except ValueError as exc:
        raise NodeError(f"cannot expand {list(in_shape)} to {shape}: {exc}") from None
    if tuple(out) == tuple(in_shape):
        return [x]
    # Broadcasting against zeros of the target shape is an Expand made of one builtin ADD.
    return [with_constant(ctx, "add", x, np.zeros(out[1:], np.float32)[None])]


HANDLERS = {
    "Reshape": reshape,
    "Flatten": flatten,
    "Transpose": transpose,
    "Squeeze": squeeze,
    "Unsqueeze": unsqueeze,
    "Shape": shape_of,
    "Size": size_of,
    "Identity": passthrough,
    "Dropout": passthrough,
    "Cast": cast,
    "Expand": expand,
}
