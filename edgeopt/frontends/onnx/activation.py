"""Activations → Keras ReLU / LeakyReLU / PReLU / Activation / Softmax, or a small registered layer."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgeopt.frontends.onnx.context import NodeError, attr
from edgeopt.frontends.onnx.layers import custom
from edgeopt.frontends.onnx.layout import Value, plain_rows


def _keep(ctx, x: Value, layer) -> list[Value]:
    """Apply an elementwise layer; the layout (and any flattened feature order) is unchanged."""
    return [replace(x, t=ctx.apply(layer, x.t))]


def _simple(make):
    def handler(ctx, node):
        return _keep(ctx, ctx.value(node, 0), make(ctx, node))
    return handler


def _clip_bounds(ctx, node) -> tuple[float | None, float | None]:
    if ctx.opset < 11:
        lo, hi = attr(node, "min"), attr(node, "max")
    else:
        lo, hi = ctx.const(node, 1, "Clip min"), ctx.const(node, 2, "Clip max")
    lo = None if lo is None or np.asarray(lo).size == 0 else float(np.asarray(lo).reshape(-1)[0])
    hi = None if hi is None or np.asarray(hi).size == 0 else float(np.asarray(hi).reshape(-1)[0])
    return lo, hi


def clip(ctx, node):
    x = ctx.value(node, 0)
    lo, hi = _clip_bounds(ctx, node)
    L = ctx.keras.layers
    if lo == 0.0:
        # ReLU / ReLU6 (tf2onnx and torch write Relu6 as Clip(0, 6)).
        return _keep(ctx, x, L.ReLU(max_value=hi, name=ctx.name("relu" if hi is None else "relu6")))
    return _keep(ctx, x, custom("Clip")(lo, hi, name=ctx.name("clip")))


def prelu(ctx, node):
    x = plain_rows(ctx.value(node, 0), ctx)
    slope = ctx.const(node, 1, "PRelu slope")
    if slope is None:
        raise NodeError("slope input is missing")
    slope = np.asarray(slope, np.float32)
    if slope.ndim > x.rank:
        raise NodeError(f"slope shape {list(slope.shape)} has more axes than the input")
    full = slope.reshape((1,) * (x.rank - slope.ndim) + slope.shape)
    shape = x.onnx_shape(ctx.batch)
    if any(full.shape[i] not in (1, shape[i]) for i in range(x.rank)):
        raise NodeError(f"slope shape {list(slope.shape)} does not broadcast to {list(shape)}")
    keras_alpha = full.transpose(x.perm)[0]
    shared = [i + 1 for i, d in enumerate(keras_alpha.shape) if d == 1]
    layer = ctx.keras.layers.PReLU(shared_axes=shared or None, name=ctx.name("prelu"))
    y = ctx.apply(layer, x.t)
    layer.set_weights([keras_alpha])
    return [Value(y, x.perm)]


def _axes_for_softmax(ctx, node, x: Value) -> list[int]:
    axis = int(attr(node, "axis", -1 if ctx.opset >= 13 else 1))
    if axis < 0:
        axis += x.rank
    if not 0 <= axis < x.rank or axis == x.batch_axis:
        raise NodeError(f"softmax axis {axis} is the batch axis or out of range for rank {x.rank}")
    # Before opset 13 the input is flattened to 2-D at `axis`: softmax runs over all axes from `axis` on.
    return [axis] if ctx.opset >= 13 else list(range(axis, x.rank))


def softmax(log: bool):
    def handler(ctx, node):
        x = plain_rows(ctx.value(node, 0), ctx)
        axes = _axes_for_softmax(ctx, node, x)
        shape = x.onnx_shape(ctx.batch)
        big = [a for a in axes if shape[a] != 1] or [axes[-1]]
        kaxes = sorted(x.onnx_axis_to_keras(a) for a in big)
        layer = ctx.keras.layers.Softmax(axis=kaxes[0] if len(kaxes) == 1 else kaxes, name=ctx.name("softmax"))
        y = ctx.apply(layer, x.t)
        if log:
            y = ctx.apply(custom("UnaryOp")("log", name=ctx.name("log")), y)
        return [Value(y, x.perm)]
    return handler


def _act(name):
    return _simple(lambda ctx, node: ctx.keras.layers.Activation(name, name=ctx.name(name)))


def _unary(fn):
    return _simple(lambda ctx, node: custom("UnaryOp")(fn, name=ctx.name(fn)))


HANDLERS = {
    "Relu": _simple(lambda ctx, node: ctx.keras.layers.ReLU(name=ctx.name("relu"))),
    "LeakyRelu": _simple(lambda ctx, node: ctx.keras.layers.LeakyReLU(alpha=float(attr(node, "alpha", 0.01)),
                                                                       name=ctx.name("leaky_relu"))),
    "Elu": _simple(lambda ctx, node: ctx.keras.layers.ELU(alpha=float(attr(node, "alpha", 1.0)),
                                                           name=ctx.name("elu"))),
    "PRelu": prelu,
    "Clip": clip,
    "Sigmoid": _act("sigmoid"),
    "Tanh": _act("tanh"),
    "Softplus": _act("softplus"),
    "Softsign": _act("softsign"),
    "HardSigmoid": _simple(lambda ctx, node: custom("HardSigmoid")(float(attr(node, "alpha", 0.2)),
                                                                    float(attr(node, "beta", 0.5)),
                                                                    name=ctx.name("hard_sigmoid"))),
    "HardSwish": _simple(lambda ctx, node: custom("HardSwish")(name=ctx.name("hard_swish"))),
    "Softmax": softmax(False),
    "LogSoftmax": softmax(True),
    "Exp": _unary("exp"),
    "Log": _unary("log"),
    "Sqrt": _unary("sqrt"),
    "Abs": _unary("abs"),
    "Neg": _unary("neg"),
    "Reciprocal": _unary("reciprocal"),
    "Floor": _unary("floor"),
    "Ceil": _unary("ceil"),
    "Erf": _unary("erf"),
    "Gelu": _simple(lambda ctx, node: custom("UnaryOp")("gelu_tanh" if attr(node, "approximate", "none") == "tanh"
                                                        else "gelu", name=ctx.name("gelu"))),
}
