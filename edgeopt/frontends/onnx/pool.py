"""MaxPool, AveragePool, global pools and Reduce* → Keras pooling layers (NHWC)."""
from __future__ import annotations

import numpy as np

from edgeopt.frontends.onnx.context import NodeError, attr
from edgeopt.frontends.onnx.layers import custom
from edgeopt.frontends.onnx.layout import CHANNELS_LAST, Value, permute, plain_rows
from edgeopt.frontends.onnx.padding import ceil_extra, keras_padding, spatial_pads



def _pool_input(ctx, node) -> tuple[Value, list[int]]:
    x = ctx.value(node, 0)
    if x.rank != 4:
        raise NodeError(f"only 2-D pooling on 4-D tensors is supported (input rank {x.rank})")
    x = permute(x, CHANNELS_LAST, ctx)
    return x, list(x.onnx_shape(ctx.batch)[2:])


def _geometry(node, sizes):
    kernel = list(attr(node, "kernel_shape", []))
    strides = list(attr(node, "strides", [1, 1]))
    dil = list(attr(node, "dilations", [1, 1]))
    if len(kernel) != 2 or len(strides) != 2 or len(dil) != 2 or min(kernel + strides + dil) < 1:
        raise NodeError(f"bad kernel_shape {kernel} / strides {strides} / dilations {dil}")
    if max(dil) > 1:
        raise NodeError(f"dilated pooling (dilations {dil}) has no Keras equivalent")
    pads = spatial_pads(node, sizes, kernel, strides, dil)
    extra = [0, 0]
    if int(attr(node, "ceil_mode", 0)):
        extra = [ceil_extra(sizes[i], kernel[i], strides[i], 1, pads[i]) for i in range(2)]
    return kernel, strides, pads, extra


def max_pool(ctx, node):
    if len(node.output) > 1 and node.output[1]:
        raise NodeError("the Indices output of MaxPool is not supported")
    x, sizes = _pool_input(ctx, node)
    kernel, strides, pads, extra = _geometry(node, sizes)
    L = ctx.keras.layers
    padding = keras_padding(sizes, kernel, strides, [1, 1], pads) if not any(extra) else None
    if padding is None:
        # ONNX pads MaxPool with -inf. Replicating the edge is exact too: every window holds a real element, so it
        # holds the edge element the padding copies. A -inf (or lowest float) pad would instead join the int8
        # range the converter calibrates for the pad's input and output (scale 1e36), ruining the layer.
        full = [[0, 0], [pads[0][0], pads[0][1] + extra[0]], [pads[1][0], pads[1][1] + extra[1]], [0, 0]]
        if _non_negative(x):
            # After a ReLU zeros never win the max either, and a zero pad keeps int8 ranges tight.
            layer = L.ZeroPadding2D((tuple(full[1]), tuple(full[2])), name=ctx.name("pad"))
            x = Value(ctx.apply(layer, x.t), x.perm)
        elif any(v for p in full for v in p):
            x = Value(ctx.apply(custom("Pad")(full, "edge", 0.0, name=ctx.name("pad")), x.t), x.perm)
        padding = "valid"
    layer = L.MaxPooling2D(kernel, strides, padding=padding, name=ctx.name("maxpool"))
    return [Value(ctx.apply(layer, x.t), CHANNELS_LAST)]


def _non_negative(x: Value) -> bool:
    """True when the Keras tensor comes straight from a ReLU-like layer (so it is >= 0)."""
    history = getattr(x.t, "_keras_history", None)
    layer = getattr(history, "layer", None)
    if layer is None:
        return False
    name = type(layer).__name__
    if name == "ReLU":
        cfg = layer.get_config()
        return not cfg.get("negative_slope") and not cfg.get("threshold")
    if name == "Activation":
        return layer.get_config().get("activation") in ("relu", "sigmoid", "softmax", "relu6")
    return name in ("Softmax", "HardSigmoid")


def avg_pool(ctx, node):
    x, sizes = _pool_input(ctx, node)
    kernel, strides, pads, extra = _geometry(node, sizes)
    include = bool(int(attr(node, "count_include_pad", 0)))
    L = ctx.keras.layers
    padding = keras_padding(sizes, kernel, strides, [1, 1], pads)
    if not any(extra) and (padding == "valid" or (padding == "same" and not include)):
        # TF 'SAME' average pooling divides by the number of real (unpadded) elements, as ONNX does here.
        layer = L.AveragePooling2D(kernel, strides, padding=padding, name=ctx.name("avgpool"))
        return [Value(ctx.apply(layer, x.t), CHANNELS_LAST)]
    full = ((pads[0][0], pads[0][1] + extra[0]), (pads[1][0], pads[1][1] + extra[1]))
    x = Value(ctx.apply(L.ZeroPadding2D(full, name=ctx.name("pad")), x.t), x.perm)
    y = ctx.apply(L.AveragePooling2D(kernel, strides, padding="valid", name=ctx.name("avgpool")), x.t)
    scale = _divisor_fix(sizes, kernel, strides, pads, extra, include)
    if scale is not None:
        layer = custom("ConstantOp")("mul", scale.shape, value=scale, name=ctx.name("count"))
        y = ctx.apply(layer, y)
    return [Value(y, CHANNELS_LAST)]


def _divisor_fix(sizes, kernel, strides, pads, extra, include) -> np.ndarray | None:
    """Per output position, k*k / (elements that count); None when every window counts k*k.

    Counted: the input, plus the explicit pads when count_include_pad=1; never the ceil_mode overhang.
    """
    mask = np.zeros([sizes[i] + pads[i][0] + pads[i][1] + extra[i] for i in range(2)], np.float64)
    if include:
        mask[: mask.shape[0] - extra[0], : mask.shape[1] - extra[1]] = 1
    else:
        mask[pads[0][0]: pads[0][0] + sizes[0], pads[1][0]: pads[1][0] + sizes[1]] = 1
    out = [(mask.shape[i] - kernel[i]) // strides[i] + 1 for i in range(2)]
    counts = np.zeros(out)
    for i in range(out[0]):
        for j in range(out[1]):
            r, c = i * strides[0], j * strides[1]
            counts[i, j] = mask[r: r + kernel[0], c: c + kernel[1]].sum()
    full = kernel[0] * kernel[1]
    if np.all(counts == full):
        return None
    return (full / np.maximum(counts, 1)).astype(np.float32).reshape(out[0], out[1], 1)


def global_pool(kind):
    def handler(ctx, node):
        x, _ = _pool_input(ctx, node)
        L = ctx.keras.layers
        cls = L.GlobalAveragePooling2D if kind == "avg" else L.GlobalMaxPooling2D
        return [Value(ctx.apply(cls(keepdims=True, name=ctx.name(f"global_{kind}pool")), x.t), CHANNELS_LAST)]
    return handler


def reduce(op):
    def handler(ctx, node):
        x = ctx.value(node, 0)
        keep = bool(int(attr(node, "keepdims", 1)))
        axes = attr(node, "axes")
        if len(node.input) > 1 and node.input[1]:
            axes = ctx.ints(node, 1, "axes")
        if not axes:
            if int(attr(node, "noop_with_empty_axes", 0)):
                return [x]
            axes = list(range(x.rank))
        axes = sorted({a + x.rank if a < 0 else a for a in axes})
        if not all(0 <= a < x.rank for a in axes):
            raise NodeError(f"axes {axes} out of range for rank {x.rank}")
        if x.batch_axis in axes:
            raise NodeError("reducing over the batch axis is not supported")
        x = plain_rows(x, ctx)
        L = ctx.keras.layers
        if x.perm == CHANNELS_LAST and axes == [2, 3] and op in ("mean", "max"):
            cls = L.GlobalAveragePooling2D if op == "mean" else L.GlobalMaxPooling2D
            y = ctx.apply(cls(keepdims=keep, name=ctx.name(f"reduce_{op}")), x.t)
            return [Value(y, CHANNELS_LAST if keep else (0, 1))]
        kaxes = sorted(x.onnx_axis_to_keras(a) for a in axes)
        y = ctx.apply(custom("Reduce")(op, kaxes, keep, name=ctx.name(f"reduce_{op}")), x.t)
        if keep:
            return [Value(y, x.perm)]
        left = [p for p in x.perm if p not in axes]
        renumber = {a: i for i, a in enumerate(sorted(left))}
        return [Value(y, tuple(renumber[p] for p in left))]
    return handler


HANDLERS = {
    "MaxPool": max_pool,
    "AveragePool": avg_pool,
    "GlobalAveragePool": global_pool("avg"),
    "GlobalMaxPool": global_pool("max"),
    "ReduceMean": reduce("mean"),
    "ReduceMax": reduce("max"),
    "ReduceMin": reduce("min"),
    "ReduceSum": reduce("sum"),
    "ReduceProd": reduce("prod"),
}
