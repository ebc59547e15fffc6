"""TFLite Core ML delegate (iOS, Apple Neural Engine): which ops it takes.

Source: TensorFlow Lite "Core ML delegate" guide, "Supported models" and "Supported ops"
(https://www.tensorflow.org/lite/performance/coreml_delegate); option defaults from
tensorflow/lite/delegates/coreml/coreml_delegate.h (``max_delegated_partitions`` 0 = all,
``min_nodes_per_partition`` 2).

Rules, in our words:
- Float models only (FP32 and FP16). Quantized int8/uint8 ops stay on the CPU. The converter stores FP16 weights
  as constant float16 tensors behind DEQUANTIZE ops; those are folded into the float graph, so they count as taken.
- Conv-type ops (CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV, FULLY_CONNECTED) need constant weights (and bias).
- FULLY_CONNECTED only for a single batch: all input dimensions but the last are 1.
- ADD / MUL broadcast only between shapes that are, in Core ML's [B, C, H, W] layout, [B,C,H,W], [B,C,1,1],
  [B,1,H,W] or [B,1,1,1].
- RESHAPE works only when the delegate targets Core ML 2; the default target is the newest version (3), so RESHAPE
  is not taken by default (version-dependent).
- Custom ops are never taken. Devices without a Neural Engine (before A12) get no delegate by default.
"""
from __future__ import annotations

from edgeopt.analyze.delegates.base import OpView, check_all, is_const_fp16_dequantize, max_rank, static_shapes
from edgeopt.analyze.tflite import OpInfo

NAME = "coreml"
TITLE = "Core ML delegate"
SOURCE = "TensorFlow Lite Core ML delegate, https://www.tensorflow.org/lite/performance/coreml_delegate"
PARTITIONING = "graph"
LIMITS = {"max_partitions": 0, "min_nodes_per_partition": 2, "coreml_version": 3,
          "notes": ["float (FP32/FP16) models only", "RESHAPE only when targeting Core ML 2 (default target is 3)",
                    "enabled by default only on devices with a Neural Engine (A12 and later), iOS 12+"]}

SUPPORTED = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "HARD_SWISH",
    "LOGISTIC", "MAX_POOL_2D", "MUL", "RELU", "RELU_N1_TO_1", "RELU6", "RESHAPE", "RESIZE_BILINEAR", "SOFTMAX",
    "TANH", "TRANSPOSE_CONV",
})


def model_reason(summary) -> str | None:
    return None


def _float(op: OpInfo, view: OpView) -> str | None:
    for t in view.activations(op):
        if t.dtype not in ("float32", "float16"):
            return f"dtype {t.dtype} of tensor '{t.name}' (Core ML delegate takes float models only)"
    return None


def _broadcast_ok(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    if a == b:
        return True
    big, small = (a, b) if len(a) >= len(b) else (b, a)
    small = (1,) * (len(big) - len(small)) + tuple(small)
    if len(big) != 4:
        return small == big
    _, h, w, c = small  # NHWC -> Core ML [B, C, H, W]: allowed C-only, HW-only or scalar broadcasts
    return (h, w) == (1, 1) or (c == 1 and (h, w) == tuple(big[1:3]))


def _op_specific(op: OpInfo, view: OpView) -> str | None:
    if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"):
        consts = [view.input(op, 1)] + ([view.input(op, 2)] if op.op != "TRANSPOSE_CONV" else [])
        if any(t is not None and not view.is_constant(t) for t in consts):
            return f"{op.op} with non-constant weights or bias"
    if op.op == "FULLY_CONNECTED":
        x = view.input(op, 0)
        if x is not None and any(d != 1 for d in x.shape[:-1]):
            return f"FULLY_CONNECTED on input {list(x.shape)} (single batch, all dims but the last 1)"
    if op.op in ("ADD", "MUL"):
        a, b = view.input(op, 0), view.input(op, 1)
        if a is not None and b is not None and not _broadcast_ok(a.shape, b.shape):
            return f"{op.op} broadcast {list(a.shape)} x {list(b.shape)} not supported"
    if op.op == "RESHAPE":
        return "RESHAPE only when targeting Core ML 2 (default target Core ML 3)"
    if op.options.get("fused_activation_function") == "SIGN_BIT":
        return "fused activation SIGN_BIT not supported"
    return None


def op_reason(op: OpInfo, view: OpView) -> str | None:
    if op.custom:
        return f"custom op '{op.custom_name}' not supported"
    if is_const_fp16_dequantize(op, view):
        return None
    if op.op not in SUPPORTED:
        return f"op {op.op} not supported by the Core ML delegate"
    return check_all(op, view, (_float, max_rank(4), static_shapes, _op_specific))
