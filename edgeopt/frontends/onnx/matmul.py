"""Gemm and MatMul with a constant weight → Dense (weight rows follow a flattened NHWC input's order)."""
from __future__ import annotations

import numpy as np

from edgeopt.frontends.onnx.context import NodeError, attr
from edgeopt.frontends.onnx.layers import custom
from edgeopt.frontends.onnx.layout import Value, plain


def dense(ctx, x: Value, w: np.ndarray, b: np.ndarray | None) -> Value:
    """``x @ w + b`` over the last ONNX axis of ``x``; ``w`` is [K, M]."""
    if x.rows is not None:
        w = w[x.rows]
    elif x.perm[-1] != x.rank - 1:
        x = plain(x, ctx)
    k = x.onnx_shape(ctx.batch)[-1]
    if w.shape[0] != k:
        raise NodeError(f"weight shape {list(w.shape)} does not fit {k} input features")
    m = w.shape[1]
    layer = ctx.keras.layers.Dense(m, use_bias=b is not None, name=ctx.name("dense"))
    y = ctx.apply(layer, x.t)
    weights = [w.astype(np.float32)]
    if b is not None:
        b = np.asarray(b, np.float32)
        if b.size not in (1, m) or (b.ndim == 2 and b.shape[0] != 1):
            raise NodeError(f"bias of shape {list(b.shape)} does not broadcast to [1, {m}]")
        weights.append(np.broadcast_to(b.reshape(-1), (m,)).astype(np.float32))
    layer.set_weights(weights)
    return Value(y, x.perm if x.rows is None else (0, 1))


def gemm(ctx, node):
    a = ctx.value(node, 0)
    if a.rank != 2:
        raise NodeError(f"Gemm input must be 2-D, got rank {a.rank}")
    if int(attr(node, "transA", 0)):
        raise NodeError("transA=1 would move the batch axis; not supported")
    w = ctx.const(node, 1, "Gemm B")
    if w is None or np.ndim(w) != 2:
        raise NodeError("B must be a 2-D constant")
    w = np.asarray(w, np.float32)
    if int(attr(node, "transB", 0)):
        w = w.T
    w = w * float(attr(node, "alpha", 1.0))
    c = ctx.const(node, 2, "Gemm C")
    if c is not None:
        c = np.asarray(c, np.float32) * float(attr(node, "beta", 1.0))
    return [dense(ctx, a, w, c)]


def matmul(ctx, node):
    a, b = ctx.inp(node, 0), ctx.inp(node, 1)
    if not isinstance(a, Value):
        raise NodeError("MatMul with a constant first operand is not supported")
    if not isinstance(b, Value):
        if b is None or np.ndim(b) != 2:
            raise NodeError("the constant MatMul operand must be 2-D")
        # A third input is a bias fused from a following Add (see fold.fuse_bias_adds).
        return [dense(ctx, a, np.asarray(b, np.float32), ctx.const(node, 2, "bias"))]
    a, b = plain(a, ctx), plain(b, ctx)
    if a.rank != b.rank or a.rank < 3:
        raise NodeError("MatMul of two run-time tensors needs equal ranks >= 3 (batched matrices)")
    if a.batch_axis != b.batch_axis or a.batch_axis >= a.rank - 2:
        raise NodeError(f"the batch axis ({a.batch_axis} and {b.batch_axis}) must be the same leading axis of "
                        "both operands")
    y = ctx.apply(custom("BinaryOp")("matmul", name=ctx.name("matmul")), [a.t, b.t])
    return [Value(y, a.perm)]


HANDLERS = {"Gemm": gemm, "MatMul": matmul}
