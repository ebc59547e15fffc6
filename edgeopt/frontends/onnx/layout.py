"""Layout tracking: how each Keras tensor's axes relate to the ONNX tensor it stands for.

A :class:`Value` holds a Keras tensor ``t`` and a permutation ``perm`` with ``t == onnx.transpose(perm)``
(keras axis ``i`` is onnx axis ``perm[i]``). Keras axis 0 is always the batch; on the ONNX side the batch is axis
``perm[0]``, which is 0 unless the graph moved it (attention blocks transpose ``[3, B, heads, N, d]``, recurrent
layers run sequence-first ``[T, B, C]``). Image tensors live as ``perm=(0, 2, 3, 1)`` (NHWC). A ``Transpose``
node only relabels ``perm``; a physical ``Permute`` is inserted only where an op needs a particular order.

A 2-D value may also carry ``rows``: the features of a flattened channels-last tensor, in NHWC order
(``t[:, j] == onnx[:, rows[j]]``). Dense layers absorb ``rows`` into their weight rows, so Flatten→Gemm after a
conv costs no transpose; elementwise ops keep ``rows``; other consumers call :func:`plain`, which reshapes back
to the ``src`` shape, transposes to ONNX order and flattens again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CHANNELS_LAST = (0, 2, 3, 1)


@dataclass(frozen=True)
class Value:
    t: Any
    perm: tuple[int, ...]
    rows: np.ndarray | None = None
    src: tuple | None = None  # (keras per-sample shape, perm) of the 4-D tensor that was flattened

    @property
    def rank(self) -> int:
        return len(self.perm)

    def onnx_shape(self, batch: int) -> tuple[int, ...]:
        """Static ONNX-layout shape, the batch axis reported as ``batch``."""
        ks = [batch] + [int(d) if d is not None else -1 for d in self.t.shape[1:]]
        out = [0] * len(ks)
        for i, p in enumerate(self.perm):
            out[p] = ks[i]
        return tuple(out)

    def onnx_axis_to_keras(self, axis: int) -> int:
        return self.perm.index(axis)

    @property
    def batch_axis(self) -> int:
        """The ONNX axis that holds the batch (Keras axis 0)."""
        return self.perm[0]


def identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def batch_first(rank: int, batch_axis: int = 0) -> tuple[int, ...]:
    """ONNX axis order with the batch axis moved first: the closest a Keras tensor can be to the ONNX layout.

    >>> batch_first(3, 1)
    (1, 0, 2)
    """
    return (batch_axis, *[a for a in range(rank) if a != batch_axis])


def relabel(perm: tuple[int, ...], transpose: tuple[int, ...]) -> tuple[int, ...]:
    """The perm after an ONNX ``Transpose(transpose)`` that leaves the Keras tensor untouched.

    onnx_out = onnx_in.T(transpose) and keras = onnx_in.T(perm), so keras = onnx_out.T(argsort(transpose)[perm]).

    >>> relabel((0, 1, 2, 3), (0, 3, 1, 2))   # an NHWC input transposed to NCHW is channels-last
    (0, 2, 3, 1)
    """
    inv = np.argsort(transpose)
    return tuple(int(inv[p]) for p in perm)


def flat_rows(onnx_shape: tuple[int, ...], perm: tuple[int, ...]) -> np.ndarray:
    """For each feature of ``Flatten(keras tensor)``, its index in ``Flatten(onnx tensor)``.

    >>> flat_rows((1, 2, 1, 2), (0, 2, 3, 1)).tolist()   # NHWC order of a [C=2, H=1, W=2] map
    [0, 2, 1, 3]
    """
    per_sample = onnx_shape[1:]
    idx = np.arange(int(np.prod(per_sample))).reshape(per_sample)
    return idx.transpose([p - 1 for p in perm[1:]]).ravel()


def permute(value: Value, perm: tuple[int, ...], ctx) -> Value:
    """``value`` with the Keras tensor physically reordered to ``perm``.

    A reorder that only moves size-1 axes is a free Reshape rather than a transpose.
    """
    value = plain_rows(value, ctx)
    if tuple(value.perm) == tuple(perm):
        return value
    if perm[0] != value.perm[0]:
        raise ValueError("the batch axis must stay first")
    keras = ctx.keras
    inv = np.argsort(value.perm)
    order = [int(inv[p]) for p in perm]  # keras_new = keras_cur.transpose(order)
    shape = value.onnx_shape(ctx.batch)
    non_unit_cur = [a for a in order if value.t.shape[a] != 1 or a == 0]
    if non_unit_cur == sorted(non_unit_cur):
        target = [shape[p] for p in perm[1:]]
        return Value(ctx.apply(keras.layers.Reshape(target, name=ctx.name("reshape")), value.t), tuple(perm))
    layer = keras.layers.Permute(order[1:], name=ctx.name("permute"))
    return Value(ctx.apply(layer, value.t), tuple(perm))


def plain_rows(value: Value, ctx) -> Value:
    """Undo the NHWC feature order of a flattened value (rebuilds it from its source in ONNX order)."""
    if value.rows is None:
        return value
    shape, perm = value.src
    t = ctx.apply(ctx.keras.layers.Reshape(shape, name=ctx.name("unflatten")), value.t)
    src = permute(Value(t, perm), identity(len(perm)), ctx)
    return Value(ctx.apply(ctx.keras.layers.Flatten(name=ctx.name("flatten")), src.t), (0, 1))


def flatten_rows(value: Value, ctx) -> Value:
    """Flatten a batch of tensors in their Keras order, remembering the ONNX order in ``rows``."""
    shape = value.onnx_shape(ctx.batch)
    t = ctx.apply(ctx.keras.layers.Flatten(name=ctx.name("flatten")), value.t)
    if value.perm == identity(value.rank):
        return Value(t, (0, 1))
    rows = flat_rows(shape, value.perm)
    if np.array_equal(rows, np.arange(rows.size)):
        return Value(t, (0, 1))  # only size-1 axes moved: the orders agree
    src = (tuple(int(d) for d in value.t.shape[1:]), value.perm)
    return Value(t, (0, 1), rows, src)


def plain(value: Value, ctx) -> Value:
    """``value`` in ONNX axis order (the batch axis first, when the graph moved it elsewhere)."""
    return permute(value, batch_first(value.rank, value.batch_axis), ctx)
