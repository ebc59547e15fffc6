"""Coral Edge TPU (``edgetpu_compiler`` + ``libedgetpu`` delegate): which ops get mapped to the TPU.

Source: Coral, "TensorFlow models on the Edge TPU" (https://coral.ai/docs/edgetpu/models-intro/), sections
"Model requirements", "Supported operations" and "Compiling"; and "Edge TPU Compiler"
(https://coral.ai/docs/edgetpu/compiler/).

Rules, in our words:
- The model must be fully 8-bit quantized (int8 or uint8 tensors; int32 only for biases). A model with float
  compute (float32 or float16 ops) is rejected by the compiler as a whole: nothing runs on the TPU. Float inputs or
  outputs are fine when they only feed a QUANTIZE at the start or come from a DEQUANTIZE at the end.
- Tensor sizes are constant at compile time (no dynamic shapes); parameters (weights, biases) are constants.
- Tensors are 1-, 2- or 3-dimensional; a higher-rank tensor is accepted only if no more than its 3 innermost
  dimensions are larger than 1 (so NHWC with batch 1 is fine).
- Only the ops of the compatibility table map, with their listed limits (pools and concatenation without fused
  activation, MEAN / PAD only over the spatial x/y axes, FULLY_CONNECTED with the default weights format). Ops
  added in later compiler/runtime releases (e.g. TRANSPOSE, SQUARED_DIFFERENCE, REDUCE_MAX) need a recent
  compiler: the table is version-dependent and this list follows its latest published form.
- The compiler partitions the graph once: at the first op it cannot map, that op and every op after it run on the
  CPU, even supported ones (``prefix`` partitioning).
- An already-compiled model holds the TPU part as the custom op ``edgetpu-custom-op``; it counts as mapped.
"""
from __future__ import annotations

from edgeopt.analyze.delegates.base import OpView, check_all, is_float, static_shapes
from edgeopt.analyze.tflite import OpInfo

NAME = "edgetpu"
TITLE = "Edge TPU"
SOURCE = ("Coral, TensorFlow models on the Edge TPU, https://coral.ai/docs/edgetpu/models-intro/ ; "
          "Edge TPU Compiler, https://coral.ai/docs/edgetpu/compiler/")
PARTITIONING = "prefix"
LIMITS = {"max_partitions": 1, "min_nodes_per_partition": 1,
          "notes": ["full 8-bit (int8/uint8) quantization required; float models are rejected by the compiler",
                    "the first unsupported op and everything after it run on the CPU",
                    "tensors: at most 3 dimensions larger than 1; static shapes only"]}

SUPPORTED = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS", "FULLY_CONNECTED",
    "L2_NORMALIZATION", "LOGISTIC", "LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN",
    "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6",
    "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX",
    "SPACE_TO_DEPTH", "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE",
    "TRANSPOSE_CONV",
})
_NO_FUSED_ACTIVATION = frozenset({"AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION"})


def model_reason(summary) -> str | None:
    if summary.float_ops:
        names = sorted({summary.ops[k].op for k in summary.float_ops})
        return (f"model is not fully 8-bit quantized: {len(summary.float_ops)} op(s) compute in float "
                f"({', '.join(names)}); the Edge TPU compiler needs int8/uint8 tensors throughout")
    return None


def _tensor_rules(op: OpInfo, view: OpView) -> str | None:
    for t in view.activations(op):
        if op.op == "QUANTIZE" and t in view.runtime_inputs(op) and is_float(t):
            continue  # the float->int8 QUANTIZE at the input is accepted
        if t.dtype not in ("int8", "uint8", "int32"):
            return f"dtype {t.dtype} of tensor '{t.name}' (Edge TPU needs 8-bit quantized tensors)"
        if len(t.shape) > 3 and any(d > 1 for d in t.shape[:-3]):
            return f"tensor '{t.name}' {list(t.shape)} has a dimension > 1 outside its 3 innermost"
    return None


def _op_specific(op: OpInfo, view: OpView) -> str | None:
    act = op.options.get("fused_activation_function", "NONE")
    if op.op in _NO_FUSED_ACTIVATION and act != "NONE":
        return f"{op.op} with fused activation {act}"
    if op.op == "FULLY_CONNECTED" and op.options.get("weights_format", 0) != 0:
        return "FULLY_CONNECTED with shuffled weights format"
    if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"):
        w = view.input(op, 1)  # the filter / weights input (TRANSPOSE_CONV: output_shape, filter, input)
        if w is None or not view.is_constant(w):
            return f"{op.op} with non-constant weights"
    if op.op == "MEAN":
        axes = view.input(op, 1)
        if axes is None or axes.values is None or not set(axes.values) <= {1, 2, -2, -3}:
            return "MEAN over axes other than x/y"
    if op.op == "PAD":
        pads = view.input(op, 1)
        if pads is None or pads.values is None:
            return "PAD with non-constant paddings"
        rows = [pads.values[i:i + 2] for i in range(0, len(pads.values), 2)]
        if len(rows) == 4 and any(any(r) for r in (rows[0], rows[3])):
            return "PAD along batch or channel axes (x/y only)"
    if op.op == "CONCATENATION" and view.const_inputs(op) and len(op.inputs) != 2:
        return "CONCATENATION with a constant input and more than 2 inputs"
    return None


def op_reason(op: OpInfo, view: OpView) -> str | None:
    if op.custom:
        if op.custom_name == "edgetpu-custom-op":
            return None
        return f"custom op '{op.custom_name}' not supported"
    if op.op not in SUPPORTED:
        return f"op {op.op} not supported by the Edge TPU"
    return check_all(op, view, (_tensor_rules, static_shapes, _op_specific))
