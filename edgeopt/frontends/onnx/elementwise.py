"""Add/Sub/Mul/Div/Pow/Max/Min/Sum/Mean with numpy broadcasting, on tensors and constants, in any layout."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgeopt.frontends.onnx.context import NodeError
from edgeopt.frontends.onnx.layers import custom
from edgeopt.frontends.onnx.layout import CHANNELS_LAST, Value, permute, plain_rows

_MERGE = {"add": "Add", "sub": "Subtract", "mul": "Multiply", "max": "Maximum", "min": "Minimum"}
_NUMPY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "max": np.maximum,
          "min": np.minimum, "pow": np.power}


def keras_constant(ctx, x: Value, c: np.ndarray) -> np.ndarray:
    """A constant that broadcasts against ONNX ``x``, rearranged to broadcast against its Keras tensor.

    >>> # x is NCHW [1, 8, 4, 4] held as NHWC; a per-channel bias [8, 1, 1] becomes [1, 1, 8]
    """
    c = np.asarray(c, np.float32)
    if c.ndim > x.rank:
        raise NodeError(f"constant of shape {list(c.shape)} has more axes than the tensor (rank {x.rank})")
    full = c.reshape((1,) * (x.rank - c.ndim) + c.shape)
    if x.rows is not None and full.shape[1] != 1:
        full = full[:, x.rows]
    k = full.transpose(x.perm)
    if k.shape[0] == 1:
        k = k[0]
    if k.size == 1:
        k = k.reshape(())
    return np.ascontiguousarray(k)


def with_constant(ctx, op: str, x: Value, c: np.ndarray, reverse: bool = False) -> Value:
    """``x op c`` (``c op x`` when reverse) as one ConstantOp layer."""
    shape = x.onnx_shape(ctx.batch)
    out = np.broadcast_shapes(shape, np.asarray(c).shape)
    if len(out) != len(shape) or (x.rows is not None and tuple(out) != tuple(shape)):
        raise NodeError(f"broadcasting {list(shape)} with a constant of shape {list(np.shape(c))} changes the rank")
    if out[0] != shape[0]:
        raise NodeError(f"a constant of shape {list(np.shape(c))} would change the batch axis")
    k = keras_constant(ctx, x, c)
    layer = custom("ConstantOp")(op, k.shape, reverse, value=k, name=ctx.name(op))
    return replace(x, t=ctx.apply(layer, x.t))


def _common_layout(ctx, a: Value, b: Value) -> tuple[Value, Value]:
    if a.rank != b.rank:
        raise NodeError(f"broadcasting two run-time tensors of ranks {a.rank} and {b.rank} is not supported")
    if a.rows is not None or b.rows is not None:
        same = a.rows is not None and b.rows is not None and np.array_equal(a.rows, b.rows)
        if not same:
            a, b = plain_rows(a, ctx), plain_rows(b, ctx)
        return a, b
    target = b.perm if b.perm == CHANNELS_LAST and a.perm != CHANNELS_LAST else a.perm
    return permute(a, target, ctx), permute(b, target, ctx)


def binary(ctx, op: str, a, b) -> Value | np.ndarray:
    """``a op b`` where each side is a run-time Value or a numpy constant."""
    if not isinstance(a, Value) and not isinstance(b, Value):
        return _NUMPY[op](np.asarray(a), np.asarray(b))
    if not isinstance(b, Value):
        return with_constant(ctx, op, a, b)
    if not isinstance(a, Value):
        if op in ("add", "mul", "max", "min"):
            return with_constant(ctx, op, b, a)
        return with_constant(ctx, op, b, a, reverse=True)
    a, b = _common_layout(ctx, a, b)
    L = ctx.keras.layers
    if op in _MERGE:
        layer = getattr(L, _MERGE[op])(name=ctx.name(op))
    else:
        layer = custom("BinaryOp")(op, name=ctx.name(op))
    return replace(a, t=ctx.apply(layer, [a.t, b.t]))


def _binary_handler(op):
    def handler(ctx, node):
        if len(node.input) != 2:
            raise NodeError(f"expected 2 inputs, got {len(node.input)}")
        a, b = ctx.inp(node, 0), ctx.inp(node, 1)
        if a is None or b is None:
            raise NodeError("an input is missing")
        return [binary(ctx, op, a, b)]
    return handler


def _variadic(op, mean=False):
    def handler(ctx, node):
        vals = [ctx.inp(node, i) for i in range(len(node.input))]
        if not vals or any(v is None for v in vals):
            raise NodeError("an input is missing")
        acc = vals[0]
        for v in vals[1:]:
            acc = binary(ctx, op, acc, v)
        if mean and len(vals) > 1:
            acc = binary(ctx, "mul", acc, np.float32(1.0 / len(vals)))
        return [acc]
    return handler


HANDLERS = {
    "Add": _binary_handler("add"),
    "Sub": _binary_handler("sub"),
    "Mul": _binary_handler("mul"),
    "Div": _binary_handler("div"),
    "Pow": _binary_handler("pow"),
    "Max": _variadic("max"),
    "Min": _variadic("min"),
    "Sum": _variadic("add"),
    "Mean": _variadic("add", mean=True),
}
