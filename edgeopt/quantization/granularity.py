"""Weight-scale granularity chosen per layer: per-tensor where it costs no measurable fidelity, per-channel where
it does, so that narrow and depthwise networks land near a quarter of their FP32 size.

A per-channel INT8 weight tensor carries one float32 scale per output channel, and so does its int32 bias; in a
narrow network with many channels and few weights per channel those vectors are a large share of the file. A
layer switched to per-tensor here gets one scale: its weights are requantized from their per-channel values
(dequantized, then rounded on the grid of the largest absolute weight), its bias is rescaled to the new
input-times-weight scale (TFLite adds the int32 bias at that scale), and every other tensor is left as it was.

The layers are tried in the order of the relative error one scale gives their weights; the largest prefix whose
model keeps the output cosine with FP32 within ``tolerance`` of the per-channel model, and for a classifier its
top-1 agreement with FP32 within one point (two samples if that is more), on held-back samples, is kept, found by bisection (the cosine falls, in practice, as more layers switch; the check measures every model
it keeps).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

TOLERANCE = 0.002  # output cosine the per-tensor layers may cost, against the all-per-channel model
AGREEMENT_TOLERANCE = 0.01  # and top-1 agreement with FP32 (a classifier): one point, or two samples if more


@dataclass(frozen=True)
class Layer:
    op: str  # CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV
    name: str  # the weight tensor's name
    weight: int  # tensor indices in subgraph 0
    bias: int | None
    channels: int
    error_per_tensor: float  # ||Q(W) - W|| / ||W||, W the per-channel weights, Q one scale for the tensor
    saved_bytes: int  # float32 scales dropped (weight and bias)


# op → (weights, bias, data input) input indices
_INPUTS = {"CONV_2D": (1, 2, 0), "DEPTHWISE_CONV_2D": (1, 2, 0), "FULLY_CONNECTED": (1, 2, 0),
           "TRANSPOSE_CONV": (1, 3, 2)}


def _model(data: bytes):
    from ai_edge_litert import schema_py_generated as schema

    return schema, schema.ModelT.InitFromPackedBuf(bytearray(data), 0)


def _op_names(schema) -> dict[int, str]:
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _buffer(model, tensor) -> np.ndarray | None:
    data = model.buffers[tensor.buffer].data
    return None if data is None or len(data) == 0 else np.asarray(data, np.uint8)


def _weights(model, tensor) -> np.ndarray:
    return _buffer(model, tensor).view(np.int8).reshape(tuple(tensor.shape))


def _per_tensor(w_float: np.ndarray) -> tuple[np.ndarray, float]:
    scale = float(np.max(np.abs(w_float))) / 127.0 or 1.0
    return np.clip(np.round(w_float / scale), -127, 127).astype(np.int8), scale


def layers(data: bytes) -> list[Layer]:
    """Every op of subgraph 0 whose INT8 weights have per-channel scales (the candidates), with the weight error
    of each granularity."""
    schema, model = _model(data)
    names = _op_names(schema)
    graph = model.subgraphs[0]
    users: dict[int, int] = {}  # readers per tensor (equal constants may also share a buffer: see to_per_tensor)
    for op in graph.operators:
        for t in op.inputs if op.inputs is not None else []:
            users[int(t)] = users.get(int(t), 0) + 1
    out = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "")
        if kind not in _INPUTS:
            continue
        wi, bi, _ = _INPUTS[kind]
        ins = list(op.inputs)
        w = graph.tensors[ins[wi]]
        q = w.quantization
        if w.type != schema.TensorType.INT8 or q is None or q.scale is None or len(q.scale) < 2 \
                or _buffer(model, w) is None or users.get(int(ins[wi]), 0) != 1:
            continue
        bias = ins[bi] if len(ins) > bi and ins[bi] >= 0 else None
        if bias is not None:
            bt = graph.tensors[bias]
            if bt.type != schema.TensorType.INT32 or _buffer(model, bt) is None or users.get(int(bias), 0) != 1:
                continue  # a bias tensor that another op reads too (or not int32) would change under that op
        wq = _weights(model, w).astype(np.float64)
        dim = int(q.quantizedDimension)
        shape = [1] * wq.ndim
        shape[dim] = -1
        w_float = wq * np.asarray(q.scale, np.float64).reshape(shape)  # the per-channel weights, the reference
        q_pt, s_pt = _per_tensor(w_float)
        err_pt = float(np.linalg.norm(q_pt.astype(np.float64) * s_pt - w_float)) / (
            float(np.linalg.norm(w_float)) or 1.0)
        saved = 4 * (len(q.scale) - 1) * (2 if bias is not None else 1)
        out.append(Layer(kind, w.name.decode() if isinstance(w.name, bytes) else str(w.name), int(ins[wi]),
                         None if bias is None else int(bias), len(q.scale), err_pt, saved))
    return out


def _own_buffer(schema, model, tensor, data: np.ndarray) -> None:
    """Point ``tensor`` at a new buffer holding ``data``: the old one may be shared with another tensor (the
    converter stores equal constants once), which must keep its values. Equal vectors are merged again when the
    file is written."""
    old = int(tensor.buffer)
    buf = schema.BufferT()
    buf.data = data
    model.buffers.append(buf)
    tensor.buffer = len(model.buffers) - 1
    if not any(int(t.buffer) == old for g in model.subgraphs for t in g.tensors):
        model.buffers[old].data = None  # no reader left: the old values are not written


def to_per_tensor(data: bytes, chosen: Sequence[Layer]) -> bytes:
    """``data`` with the weights of ``chosen`` on one scale (and their biases rescaled to it)."""
    from .compact import _sharing_builder

    schema, model = _model(data)
    names = _op_names(schema)
    graph = model.subgraphs[0]
    input_scale = {}
    wanted = {layer.weight for layer in chosen if layer.bias is not None}
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "")
        if kind in _INPUTS and int(op.inputs[_INPUTS[kind][0]]) in wanted:
            x = graph.tensors[op.inputs[_INPUTS[kind][2]]]
            input_scale[int(op.inputs[_INPUTS[kind][0]])] = float(x.quantization.scale[0])
    for layer in chosen:
        w = graph.tensors[layer.weight]
        q = w.quantization
        dim = int(q.quantizedDimension)
        shape = [1] * len(w.shape)
        shape[dim] = -1
        old = np.asarray(q.scale, np.float64)
        w_float = _weights(model, w).astype(np.float64) * old.reshape(shape)
        q_pt, s_pt = _per_tensor(w_float)
        _own_buffer(schema, model, w, np.frombuffer(q_pt.tobytes(), np.uint8))
        q.scale, q.zeroPoint, q.quantizedDimension = [s_pt], [0], 0
        if layer.bias is not None:
            b = graph.tensors[layer.bias]
            values = _buffer(model, b).view(np.int32).astype(np.float64)
            s_in = input_scale[layer.weight]
            rescaled = np.round(values * old / s_pt)  # b·(s_in·s_c) = b'·(s_in·s)
            info = np.iinfo(np.int32)
            _own_buffer(schema, model, b, np.frombuffer(
                np.clip(rescaled, info.min, info.max).astype(np.int32).tobytes(), np.uint8))
            b.quantization.scale, b.quantization.zeroPoint = [s_in * s_pt], [0]
            b.quantization.quantizedDimension = 0
    builder = _sharing_builder()(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def choose(data: bytes, fidelity: Callable[[bytes], dict], *, samples: int, tolerance: float = TOLERANCE,
           agreement_tolerance: float = AGREEMENT_TOLERANCE) -> tuple[bytes, dict]:
    """The model with the most layers per-tensor whose fidelity (``fidelity(bytes)`` → ``cosine`` and, for a
    classifier, ``top1_agreement``, against FP32, on ``samples`` samples) stays within ``tolerance`` cosine and
    ``agreement_tolerance`` top-1 agreement (at least two samples' worth) of ``data``'s (all per-channel), and the
    record of the choice per layer."""
    agreement_tolerance = max(agreement_tolerance, 2.0 / max(samples, 1))
    order = sorted(layers(data), key=lambda layer: (layer.error_per_tensor, -layer.saved_bytes))
    base = fidelity(data)
    tried: dict[int, tuple[bytes, dict]] = {0: (data, base)}

    def at(k: int) -> tuple[bytes, dict]:
        if k not in tried:
            model = to_per_tensor(data, order[:k])
            tried[k] = (model, fidelity(model))
        return tried[k]

    def keeps(k: int) -> bool:
        f = at(k)[1]
        agree = base.get("top1_agreement") is None or \
            base["top1_agreement"] - f["top1_agreement"] <= agreement_tolerance + 1e-12
        return base["cosine"] - f["cosine"] <= tolerance and agree

    lo, hi = 0, len(order)  # lo: known to keep the fidelity
    if hi and keeps(hi):
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if keeps(mid):
            lo = mid
        else:
            hi = mid
    model, value = at(lo)
    per_tensor = {layer.name for layer in order[:lo]}
    record = {"tolerance": tolerance, "agreement_tolerance": agreement_tolerance,
              "cosine_per_channel": base["cosine"], "cosine": value["cosine"],
              "top1_agreement_per_channel": base.get("top1_agreement"), "top1_agreement": value.get("top1_agreement"),
              "layers_total": len(order),
              "per_tensor": lo, "size_per_channel": len(data), "size": len(model), "tried": len(tried),
              "layers": [{"op": layer.op, "weights": layer.name, "channels": layer.channels,
                          "granularity": "per-tensor" if layer.name in per_tensor else "per-channel",
                          "weight_error_per_tensor": layer.error_per_tensor, "saved_bytes": layer.saved_bytes}
                         for layer in order]}
    return model, record
