"""LSTM and GRU → tf_keras ``LSTM`` / ``GRU`` (in ``Bidirectional`` for both directions), weights re-ordered.

ONNX runs recurrent layers sequence-first: ``X [T, B, C]`` in, ``Y [T, dirs, B, H]`` and ``Y_h [dirs, B, H]``
out. The Keras layers take ``[B, T, C]``, which is the same tensor with the batch axis first, so no transpose is
needed: the layout records that the ONNX batch is axis 1 (see ``layout.py``).

Sequences of up to ``UNROLL_MAX`` steps (text lines: 25-80) are unrolled into plain builtin ops (FULLY_CONNECTED,
LOGISTIC, TANH, MUL, ADD per step, weights stored once). Measured on a CRNN with two bidirectional 256-unit LSTMs
over 26 steps: INT8 cosine with FP32 0.9985 unrolled against 0.27 with TFLite's fused
``UNIDIRECTIONAL_SEQUENCE_LSTM`` (whose int8 kernel also ran slower, 11.5 ms against 5.6 ms here), and no state
kept between invocations. Longer sequences keep the fused op (a GRU has none, so it is unrolled whatever its
length); the fused op keeps its state in variable tensors, which a caller resets before each sequence
(``interpreter.reset_all_variables()``; edgeopt's runtime does).

Gate orders differ: ONNX LSTM stacks ``i, o, f, c``, Keras ``i, f, c, o``; GRU is ``z, r, h`` on both sides.
ONNX's ``linear_before_reset=1`` (what torch exports) is Keras's ``reset_after=True``.
"""
from __future__ import annotations

import numpy as np

from edgeopt.frontends.onnx.context import NodeError, attr
from edgeopt.frontends.onnx.layers import custom
from edgeopt.frontends.onnx.layout import Value, permute, plain_rows

_DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
_LSTM_ORDER = (0, 2, 3, 1)  # Keras gate k takes ONNX gate _LSTM_ORDER[k]: i<-i, f<-f, c<-c, o<-o


def variant_problem(node, consts: dict) -> str | None:
    """Why a recurrent node cannot be mapped (peepholes, clip, other activations...), or None.

    Checked for every node before mapping, so all of them are listed in one unsupported-ops error.
    """
    if node.op_type not in _DEFAULT_ACTS:
        return None
    acts = attr(node, "activations")
    dirs = 2 if attr(node, "direction", "forward") == "bidirectional" else 1
    if acts is not None:
        acts = [a.decode() if isinstance(a, bytes) else str(a) for a in acts]
        if [a.lower() for a in acts] != [a.lower() for a in _DEFAULT_ACTS[node.op_type] * dirs]:
            return f"activations {acts} (only the default {_DEFAULT_ACTS[node.op_type]})"
    if attr(node, "clip") is not None:
        return "cell clipping (clip)"
    if int(attr(node, "input_forget", 0)):
        return "coupled input-forget gate (input_forget=1)"
    if int(attr(node, "layout", 0)):
        return "batch-first layout (layout=1)"
    if node.op_type == "LSTM" and len(node.input) > 7 and node.input[7]:
        p = consts.get(node.input[7])
        if p is None or np.any(np.asarray(p) != 0):
            return "peephole connections (input P)"
    for i, what in ((5, "initial_h"), (6, "initial_c")):
        if len(node.input) > i and node.input[i]:
            v = consts.get(node.input[i])
            if v is not None and np.any(np.asarray(v) != 0):
                return f"a non-zero constant initial state ({what})"
    return None


def _initial_states_zero(ctx, node) -> None:
    for i in (5, 6):
        v = ctx.inp(node, i)
        if isinstance(v, Value):
            raise NodeError("an initial state computed at run time is not supported (only zero initial states)")
        if v is not None and np.any(np.asarray(v) != 0):
            raise NodeError("only zero initial states are supported")


def _sequence_lens(ctx, node, steps: int) -> None:
    lens = ctx.inp(node, 4)
    if isinstance(lens, Value):
        raise NodeError("sequence_lens computed at run time is not supported")
    if lens is not None and np.any(np.asarray(lens) != steps):
        raise NodeError(f"sequence_lens {np.asarray(lens).tolist()} differ from the sequence length {steps}")


def _weights(op: str, w, r, b, d: int, hidden: int, linear_before_reset: int) -> list[np.ndarray]:
    """Keras (kernel, recurrent_kernel, bias) of direction ``d`` from ONNX W [dirs, G*H, C], R, B [dirs, 2*G*H]."""
    gates = 4 if op == "LSTM" else 3
    w, r = np.asarray(w, np.float32)[d], np.asarray(r, np.float32)[d]
    b = np.zeros(2 * gates * hidden, np.float32) if b is None else np.asarray(b, np.float32)[d]
    order = _LSTM_ORDER if op == "LSTM" else (0, 1, 2)

    def gated(m):  # [G*H, ...] -> Keras order, transposed to [..., G*H]
        blocks = [m[g * hidden:(g + 1) * hidden] for g in order]
        return np.concatenate(blocks, axis=0).T if m.ndim == 2 else np.concatenate(blocks)

    wb, rb = gated(b[:gates * hidden]), gated(b[gates * hidden:])
    if op == "GRU" and linear_before_reset:
        return [gated(w), gated(r), np.stack([wb, rb])]
    return [gated(w), gated(r), wb + rb]


UNROLL_MAX = 128  # steps; longer LSTMs keep TFLite's fused sequence op


def _cell(ctx, op: str, hidden: int, backwards: bool, linear_before_reset: int, name: str, steps: int):
    L = ctx.keras.layers
    common = dict(return_sequences=True, return_state=True, go_backwards=backwards, name=name)
    if op == "LSTM":
        return L.LSTM(hidden, unit_forget_bias=False, unroll=steps <= UNROLL_MAX, **common)
    # TFLite has no fused GRU op and its WHILE-loop form does not convert reliably: unroll the fixed-length sequence.
    return L.GRU(hidden, reset_after=bool(linear_before_reset), unroll=True, **common)


def recurrent(op: str):
    def handler(ctx, node):
        x = plain_rows(ctx.value(node, 0), ctx)
        known = {n: v for n in node.input[5:8] if n and not isinstance(v := ctx.env.get(n), Value) and v is not None}
        problem = variant_problem(node, known)
        if problem:
            raise NodeError(f"{problem} is not supported")
        if x.rank != 3 or x.batch_axis != 1:
            raise NodeError(f"the input must be [T, B, C] with the batch on axis 1 (layout {x.perm})")
        x = permute(x, (1, 0, 2), ctx)  # Keras [B, T, C]
        steps, _, _ = x.onnx_shape(ctx.batch)
        w, r = ctx.const(node, 1, "W"), ctx.const(node, 2, "R")
        b = ctx.const(node, 3, "B") if len(node.input) > 3 and node.input[3] else None
        _sequence_lens(ctx, node, steps)
        _initial_states_zero(ctx, node)
        hidden = int(attr(node, "hidden_size", np.asarray(r).shape[-1]))
        direction = attr(node, "direction", "forward")
        lbr = int(attr(node, "linear_before_reset", 0))
        if direction == "bidirectional":
            fwd = _cell(ctx, op, hidden, False, lbr, ctx.name(op.lower()), steps)
            bwd = _cell(ctx, op, hidden, True, lbr, ctx.name(f"{op.lower()}_reverse"), steps)
            layer = ctx.keras.layers.Bidirectional(fwd, backward_layer=bwd, merge_mode="concat",
                                                   name=ctx.name("bidirectional"))
            outs = ctx.apply(layer, x.t)
            layer.set_weights(_weights(op, w, r, b, 0, hidden, lbr) + _weights(op, w, r, b, 1, hidden, lbr))
            seq, states = outs[0], outs[1:]
            n_state = len(states) // 2
            h = [states[0], states[n_state]]
            c = [states[1], states[n_state + 1]] if op == "LSTM" else None
            dirs = 2
        elif direction in ("forward", "reverse"):
            layer = _cell(ctx, op, hidden, direction == "reverse", lbr, ctx.name(op.lower()), steps)
            outs = ctx.apply(layer, x.t)
            layer.set_weights(_weights(op, w, r, b, 0, hidden, lbr))
            seq, h, c = outs[0], [outs[1]], ([outs[2]] if op == "LSTM" else None)
            if direction == "reverse":  # go_backwards returns the outputs last step first
                seq = ctx.apply(custom("Reverse")(1, name=ctx.name("reverse")), seq)
            dirs = 1
        else:
            raise NodeError(f"direction '{direction}' is not supported")
        L = ctx.keras.layers
        # Y [T, dirs, B, H] is Keras [B, T, dirs, H]; Y_h / Y_c [dirs, B, H] are Keras [B, dirs, H].
        y = Value(ctx.apply(L.Reshape((steps, dirs, hidden), name=ctx.name("reshape")), seq), (2, 0, 1, 3))
        return [y, _stack_states(ctx, h, hidden), _stack_states(ctx, c, hidden) if c else None]
    return handler


def _stack_states(ctx, states, hidden: int) -> Value:
    L = ctx.keras.layers
    t = states[0] if len(states) == 1 else ctx.apply(L.Concatenate(axis=-1, name=ctx.name("concat")), states)
    return Value(ctx.apply(L.Reshape((len(states), hidden), name=ctx.name("reshape")), t), (1, 0, 2))


HANDLERS = {"LSTM": recurrent("LSTM"), "GRU": recurrent("GRU")}
