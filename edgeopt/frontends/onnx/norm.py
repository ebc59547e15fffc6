"""BatchNormalization, InstanceNormalization, LayerNormalization → Keras BatchNormalization / GroupNormalization /
LayerNormalization."""
from __future__ import annotations

import numpy as np

from edgeopt.frontends.onnx.context import NodeError, attr
from edgeopt.frontends.onnx.layout import Value, plain_rows

# Keras' fused batch norm raises epsilon to this floor (a cuDNN limit); below it the unfused path keeps it exact.
FUSED_MIN_EPS = 1.001e-5


def _channel_axis(ctx, x: Value) -> int:
    if x.rank < 2:
        raise NodeError("normalization needs a channel axis (rank >= 2)")
    return x.onnx_axis_to_keras(1)


def _per_channel(v, c: int, what: str) -> np.ndarray:
    v = np.asarray(v, np.float32).reshape(-1)
    if v.size == 1:
        v = np.repeat(v, c)
    if v.size != c:
        raise NodeError(f"{what} has {v.size} values for {c} channels")
    return v


def batch_norm(ctx, node):
    x = ctx.value(node, 0)
    if int(attr(node, "spatial", 1)) != 1:
        raise NodeError("BatchNormalization with spatial=0 is not supported")
    if int(attr(node, "training_mode", 0)):
        raise NodeError("BatchNormalization in training mode is not supported; export the model in eval mode")
    c = x.onnx_shape(ctx.batch)[1]
    names = ("scale", "bias", "mean", "variance")
    raw = [ctx.const(node, i + 1, what) for i, what in enumerate(names)]
    if any(p is None for p in raw):
        raise NodeError("scale, bias, mean and variance must all be given")
    params = [_per_channel(p, c, what) for p, what in zip(raw, names)]
    if x.rows is not None:
        # Flattened NHWC features: feature j is ONNX feature rows[j].
        params = [p[x.rows] for p in params]
    eps = float(attr(node, "epsilon", 1e-5))
    momentum = float(attr(node, "momentum", 0.9))
    layer = ctx.keras.layers.BatchNormalization(axis=_channel_axis(ctx, x), epsilon=eps, momentum=momentum,
                                                fused=None if eps >= FUSED_MIN_EPS else False,
                                                name=ctx.name("bn"))
    y = ctx.apply(layer, x.t)
    layer.set_weights(params)
    return [Value(y, x.perm, x.rows, x.src)]


def instance_norm(ctx, node):
    x = plain_rows(ctx.value(node, 0), ctx)
    if x.rank < 3:
        raise NodeError("InstanceNormalization needs spatial axes (rank >= 3)")
    c = x.onnx_shape(ctx.batch)[1]
    scale, bias = ctx.const(node, 1, "scale"), ctx.const(node, 2, "bias")
    if scale is None or bias is None:
        raise NodeError("scale and bias must both be given")
    scale, bias = _per_channel(scale, c, "scale"), _per_channel(bias, c, "bias")
    # One group per channel: normalise each channel of each sample over its spatial positions.
    layer = ctx.keras.layers.GroupNormalization(groups=c, axis=_channel_axis(ctx, x),
                                                epsilon=float(attr(node, "epsilon", 1e-5)), name=ctx.name("in"))
    y = ctx.apply(layer, x.t)
    layer.set_weights([scale, bias])
    return [Value(y, x.perm)]


def layer_norm(ctx, node):
    """ONNX LayerNormalization (opset 17): normalise over axes ``axis..rank-1``, then scale and shift."""
    x = plain_rows(ctx.value(node, 0), ctx)
    axis = int(attr(node, "axis", -1))
    axis = axis + x.rank if axis < 0 else axis
    axes = list(range(axis, x.rank))
    if not axes or x.batch_axis in axes:
        raise NodeError(f"normalizing over axes {axes} includes the batch axis or none")
    scale, bias = ctx.const(node, 1, "Scale"), ctx.const(node, 2, "B")
    if scale is None:
        raise NodeError("Scale is missing")
    shape = x.onnx_shape(ctx.batch)
    norm_shape = [shape[a] for a in axes]
    kaxes = sorted(x.onnx_axis_to_keras(a) for a in axes)
    # gamma/beta are stored for the Keras axes in ascending order
    order = [axes.index(x.perm[k]) for k in kaxes]

    def param(v, what):
        v = np.broadcast_to(np.asarray(v, np.float32), norm_shape) if v is not None else np.zeros(norm_shape)
        return np.ascontiguousarray(v.transpose(order), np.float32)

    layer = ctx.keras.layers.LayerNormalization(axis=kaxes, epsilon=float(attr(node, "epsilon", 1e-5)),
                                                center=bias is not None, name=ctx.name("ln"))
    y = ctx.apply(layer, x.t)
    weights = [param(scale, "Scale")] + ([param(bias, "B")] if bias is not None else [])
    layer.set_weights(weights)
    return [Value(y, x.perm)] + [None] * (len(node.output) - 1)


HANDLERS = {"BatchNormalization": batch_norm, "InstanceNormalization": instance_norm,
            "LayerNormalization": layer_norm}
