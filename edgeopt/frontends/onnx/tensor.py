"""Concat, Split, Slice, Pad, Gather on run-time tensors (constant inputs are folded before they get here)."""
from __future__ import annotations

import numpy as np

from edgeopt.frontends.onnx.context import NodeError, attr
from edgeopt.frontends.onnx.layers import custom
from edgeopt.frontends.onnx.layout import CHANNELS_LAST, Value, permute, plain_rows
from edgeopt.frontends.onnx.shape import reshape_value


def _axis(node, x: Value, default: int | None = None) -> int:
    """The node's ``axis`` attribute for ``x``, which must not be the batch axis."""
    a, rank = attr(node, "axis", default), x.rank
    if a is None:
        raise NodeError("axis is missing")
    a = int(a) + rank if int(a) < 0 else int(a)
    if not 0 <= a < rank:
        raise NodeError(f"axis {a} out of range for rank {rank}")
    if a == x.batch_axis:
        raise NodeError("operating along the batch axis is not supported")
    return a


def concat(ctx, node):
    vals = [ctx.inp(node, i) for i in range(len(node.input)) if node.input[i]]
    if not vals or not all(isinstance(v, Value) for v in vals):
        raise NodeError("concatenating constants with run-time tensors is not supported")
    vals = [plain_rows(v, ctx) for v in vals]
    if len({v.rank for v in vals}) != 1 or len({v.batch_axis for v in vals}) != 1:
        raise NodeError("inputs have different ranks or batch axes")
    axis = _axis(node, vals[0])
    perms = [v.perm for v in vals]
    target = CHANNELS_LAST if CHANNELS_LAST in perms else max(set(perms), key=perms.count)
    vals = [permute(v, target, ctx) for v in vals]
    if len(vals) == 1:
        return [vals[0]]
    layer = ctx.keras.layers.Concatenate(axis=target.index(axis), name=ctx.name("concat"))
    return [Value(ctx.apply(layer, [v.t for v in vals]), target)]


def split(ctx, node):
    x = plain_rows(ctx.value(node, 0), ctx)
    axis = _axis(node, x, 0)
    dim = x.onnx_shape(ctx.batch)[axis]
    sizes = ctx.ints(node, 1, "split sizes") if ctx.opset >= 13 and len(node.input) > 1 else attr(node, "split")
    n = len(node.output)
    if sizes is None or len(sizes) == 0:
        parts = int(attr(node, "num_outputs", n))
        step = -(-dim // parts)  # opset 18: the last piece may be smaller
        sizes = [min(step, dim - i * step) for i in range(parts)]
    sizes = [int(s) for s in sizes]
    if sum(sizes) != dim or len(sizes) != n or min(sizes) < 1:
        raise NodeError(f"split sizes {sizes} do not divide axis {axis} of size {dim} into {n} outputs")
    layer = custom("Split")(x.onnx_axis_to_keras(axis), sizes, name=ctx.name("split"))
    outs = ctx.apply(layer, x.t)
    return [Value(t, x.perm) for t in outs]


def slice_(ctx, node):
    x = plain_rows(ctx.value(node, 0), ctx)
    shape = x.onnx_shape(ctx.batch)
    if ctx.opset < 10:
        starts, ends, axes, steps = attr(node, "starts"), attr(node, "ends"), attr(node, "axes"), None
    else:
        starts, ends = ctx.ints(node, 1, "starts"), ctx.ints(node, 2, "ends")
        axes, steps = ctx.ints(node, 3, "axes"), ctx.ints(node, 4, "steps")
    if starts is None or ends is None or len(starts) != len(ends):
        raise NodeError("starts and ends must be given with equal lengths")
    axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    if len(axes) != len(starts) or len(steps) != len(starts):
        raise NodeError("starts, ends, axes and steps have different lengths")
    begin, end, stride = [0] * x.rank, list(shape), [1] * x.rank
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = a + x.rank if a < 0 else a
        if not 0 <= a < x.rank:
            raise NodeError(f"axis {a} out of range")
        if st <= 0:
            raise NodeError(f"step {st} is not supported (only positive steps)")
        b, e2, _ = slice(int(s), int(e), st).indices(shape[a])
        if a == x.batch_axis:
            if (b, e2, st) != (0, shape[a], 1):
                raise NodeError("slicing the batch axis is not supported")
            continue
        if e2 <= b:
            raise NodeError(f"slice [{s}:{e}] of axis {a} (size {shape[a]}) is empty")
        begin[a], end[a], stride[a] = b, e2, st
    if begin == [0] * x.rank and end == list(shape) and stride == [1] * x.rank:
        return [x]
    kb = [begin[p] for p in x.perm]
    ke = [end[p] for p in x.perm]
    ks = [stride[p] for p in x.perm]
    y = ctx.apply(custom("Slice")(kb, ke, ks, name=ctx.name("slice")), x.t)
    return [Value(y, x.perm)]


def pad(ctx, node):
    x = plain_rows(ctx.value(node, 0), ctx)
    mode = attr(node, "mode", "constant")
    if ctx.opset < 11:
        pads, value = attr(node, "pads"), float(attr(node, "value", 0.0))
    else:
        pads = ctx.ints(node, 1, "pads")
        v = ctx.const(node, 2, "constant_value")
        value = 0.0 if v is None or np.asarray(v).size == 0 else float(np.asarray(v).reshape(-1)[0])
    if pads is None:
        raise NodeError("pads are missing")
    axes = ctx.ints(node, 3, "axes") if ctx.opset >= 18 and len(node.input) > 3 else None
    axes = list(range(x.rank)) if axes is None else [a + x.rank if a < 0 else a for a in axes]
    if len(pads) != 2 * len(axes) or any(not 0 <= a < x.rank for a in axes):
        raise NodeError(f"{len(pads)} pads for {len(axes)} axes")
    full = [[0, 0] for _ in range(x.rank)]
    for i, a in enumerate(axes):
        full[a] = [int(pads[i]), int(pads[i + len(axes)])]
    if any(v < 0 for p in full for v in p):
        raise NodeError(f"negative pads {list(pads)} (cropping) are not supported")
    if full[x.batch_axis] != [0, 0]:
        raise NodeError("padding the batch axis is not supported")
    if mode not in ("constant", "reflect", "edge"):
        raise NodeError(f"pad mode '{mode}' is not supported")
    if not any(v for p in full for v in p):
        return [x]
    shape = x.onnx_shape(ctx.batch)
    if mode == "reflect" and any(max(full[a]) >= shape[a] for a in range(x.rank)):
        raise NodeError("reflect pads must be smaller than the padded axis")
    kpads = [full[p] for p in x.perm]
    L = ctx.keras.layers
    if x.perm == CHANNELS_LAST and mode == "constant" and value == 0.0 and kpads[3] == [0, 0]:
        y = ctx.apply(L.ZeroPadding2D((tuple(kpads[1]), tuple(kpads[2])), name=ctx.name("pad")), x.t)
    else:
        y = ctx.apply(custom("Pad")(kpads, mode, value, name=ctx.name("pad")), x.t)
    return [Value(y, x.perm)]


def gather(ctx, node):
    x = plain_rows(ctx.value(node, 0), ctx)
    idx = ctx.const(node, 1, "Gather indices")
    if idx is None or np.ndim(idx) > 1:
        raise NodeError("only constant scalar or 1-D indices are supported")
    axis = _axis(node, x, 0)
    dim = x.onnx_shape(ctx.batch)[axis]
    flat = [int(i) + dim if int(i) < 0 else int(i) for i in np.asarray(idx).reshape(-1)]
    if not flat or any(not 0 <= i < dim for i in flat):
        raise NodeError(f"indices {flat} out of range for axis {axis} of size {dim}")
    step = flat[1] - flat[0] if len(flat) > 1 else 1
    if step <= 0 or flat != list(range(flat[0], flat[0] + step * len(flat), step)):
        raise NodeError("only evenly spaced increasing indices are supported")
    shape = list(x.onnx_shape(ctx.batch))
    begin, end, stride = [0] * x.rank, list(shape), [1] * x.rank
    begin[axis], end[axis], stride[axis] = flat[0], flat[-1] + 1, step
    y = ctx.apply(custom("Slice")([begin[p] for p in x.perm], [end[p] for p in x.perm],
                                  [stride[p] for p in x.perm], name=ctx.name("gather")), x.t)
    out = Value(y, x.perm)
    if np.ndim(idx) == 0:
        shape[axis] = 1
        out = reshape_value(ctx, out, [d for i, d in enumerate(shape) if i != axis])
    return [out]


HANDLERS = {"Concat": concat, "Split": split, "Slice": slice_, "Pad": pad, "Gather": gather}
