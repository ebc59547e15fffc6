"""TFLite GPU delegate (OpenCL / OpenGL ES on Android, Metal on iOS): which ops it takes.

Sources:
- TensorFlow Lite "GPU delegates" guide, "Supported ops" and quantized-model sections
  (https://www.tensorflow.org/lite/performance/gpu, now https://ai.google.dev/edge/litert/performance/gpu).
- The compatibility checker the delegate itself runs, tensorflow/lite/tools/versioning/gpu_compatibility.cc
  (``CheckGpuDelegateCompatibility``; https://github.com/tensorflow/tensorflow), which lists more ops than the guide.
- Defaults from tensorflow/lite/delegates/gpu/delegate_options.h (``TfLiteGpuDelegateOptionsV2Default``).

Rules, in our words:
- Compute is float16/float32. Quantized (int8/uint8) models are accepted since the default options set
  ``TFLITE_GPU_EXPERIMENTAL_FLAGS_ENABLE_QUANT``: the delegate dequantizes weights and runs the ops in float, so an
  int8 model runs, with quantize/dequantize emulated; int16 activations are not supported.
- Tensors of rank > 4 are rejected (the delegate lays tensors out as BHWC; some newer builds accept 5-D for a few
  ops: version-dependent). Shapes must be static.
- Fused activation SIGN_BIT is not supported (NONE, RELU, RELU_N1_TO_1, RELU6, TANH, SIGMOID are).
- Per-op constraints below follow gpu_compatibility.cc; the older guide's "only version 1 of each op unless
  quantization is enabled" remark predates that checker and is not applied.
- Only ``max_delegated_partitions`` = 1 partition is delegated by default (the largest); others run on the CPU.
"""
from __future__ import annotations

from edgeopt.analyze.delegates.base import OpView, activation_in, check_all, dtypes, max_rank, static_shapes
from edgeopt.analyze.tflite import OpInfo

NAME = "gpu"
TITLE = "GPU delegate"
SOURCE = ("TensorFlow Lite GPU delegate guide, https://www.tensorflow.org/lite/performance/gpu ; "
          "tensorflow/lite/tools/versioning/gpu_compatibility.cc")
PARTITIONING = "graph"
LIMITS = {"max_partitions": 1, "min_nodes_per_partition": 1,
          "notes": ["max_delegated_partitions defaults to 1: only the largest supported partition runs on the GPU",
                    "int8/uint8 models run with weights dequantized to float (quantized support on by default)",
                    "tensors of rank > 4 and dynamic shapes are not supported"]}

# Ops accepted by gpu_compatibility.cc when the op-specific check below passes.
SUPPORTED = frozenset({
    "ABS", "ADD", "ADD_N", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CAST", "CONCATENATION", "CONV_2D", "COS", "CUMSUM",
    "DENSIFY", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE", "DIV", "ELU", "EQUAL", "EXP", "FLOOR",
    "FLOOR_DIV", "FLOOR_MOD", "FULLY_CONNECTED", "GATHER", "GELU", "GREATER", "GREATER_EQUAL", "HARD_SWISH",
    "LEAKY_RELU", "LESS", "LESS_EQUAL", "LOG", "LOGICAL_AND", "LOGISTIC", "LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN",
    "MINIMUM", "MIRROR_PAD", "MUL", "NEG", "NOT_EQUAL", "ONE_HOT", "PACK", "PAD", "PADV2", "POW", "PRELU",
    "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE",
    "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SELECT", "SELECT_V2", "SIGN", "SIN", "SLICE",
    "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SPLIT_V", "SQRT", "SQUARE", "SQUARED_DIFFERENCE", "STRIDED_SLICE", "SUB",
    "SUM", "TANH", "TILE", "TRANSPOSE", "TRANSPOSE_CONV",
})
CUSTOM_SUPPORTED = frozenset({"Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D", "Resampler"})
_DTYPES = ("float32", "float16", "int8", "uint8", "bool", "int32")


def _op_specific(op: OpInfo, view: OpView) -> str | None:
    o = op.options
    if op.op == "FULLY_CONNECTED":
        if o.get("weights_format", 0) != 0:
            return "FULLY_CONNECTED with shuffled weights format"
        if (x := view.input(op, 0)) is not None and view.is_constant(x):
            return "FULLY_CONNECTED with a constant input"
    if op.op == "SOFTMAX" and o.get("beta", 1.0) != 1.0:
        return "SOFTMAX with beta != 1"
    if op.op == "STRIDED_SLICE" and (o.get("ellipsis_mask") or o.get("new_axis_mask") or o.get("shrink_axis_mask")):
        return "STRIDED_SLICE with ellipsis/new_axis/shrink_axis mask"
    if op.op in ("SLICE", "STRIDED_SLICE") and (x := view.input(op, 0)) is not None and len(x.shape) not in (3, 4):
        return f"{op.op} on a rank-{len(x.shape)} tensor (3-D or 4-D only)"
    if op.op in ("ADD", "MUL") and len(op.inputs) != 2:
        return f"{op.op} with {len(op.inputs)} inputs (two required)"
    if op.op == "MUL":
        a, b = view.input(op, 0), view.input(op, 1)
        if a and b and len(a.shape) == len(b.shape):
            # Broadcasting both ways (e.g. [1,256,1] x [1,1,256]) is an outer product the delegate does not do.
            if any(x < y for x, y in zip(a.shape, b.shape)) and any(x > y for x, y in zip(a.shape, b.shape)):
                return "MUL broadcasting both inputs"
    if op.op in ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD"):
        axes = view.input(op, 1)
        if axes is None or not view.is_constant(axes):
            return f"{op.op} with non-constant axes"
    if op.op == "MIRROR_PAD" and o.get("mode", 0) != 0:
        return "MIRROR_PAD in SYMMETRIC mode (REFLECT only)"
    if op.op == "DEQUANTIZE" and view.inputs(op) and view.inputs(op)[0].dtype == "int16":
        return "DEQUANTIZE of int16"
    return None


def model_reason(summary) -> str | None:
    return None


def op_reason(op: OpInfo, view: OpView) -> str | None:
    if op.custom:
        return None if op.custom_name in CUSTOM_SUPPORTED else f"custom op '{op.custom_name}' not supported"
    if op.op not in SUPPORTED:
        return f"op {op.op} not supported by the GPU delegate"
    return check_all(op, view, (
        dtypes(_DTYPES, "GPU computes in float16/float32; int8/uint8 are dequantized"),
        max_rank(4), static_shapes, activation_in({"NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGMOID"}),
        _op_specific))
