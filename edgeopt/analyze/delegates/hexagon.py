"""TFLite Hexagon delegate (Qualcomm Hexagon DSP via hexagon_nn): which ops it takes.

Sources: TensorFlow Lite "Hexagon delegate" guide (https://www.tensorflow.org/lite/performance/hexagon_delegate) and
tensorflow/lite/delegates/hexagon/README.md "Supported Ops" (checked in ``IsNodeSupportedByHexagon``); partition
defaults from tensorflow/lite/delegates/hexagon/hexagon_delegate.cc (``kMaxHexagonGraphs = 4``,
``kMinNodesPerHexagonGraph = 2``).

Rules, in our words:
- Quantized models only: every computed tensor must be uint8 or int8 (int32 only for biases). Float ops stay on the
  CPU. Early releases took only uint8 models from quantization-aware training; later ones also take int8 models from
  post-training quantization (version-dependent).
- Inputs/outputs of at most 4 dimensions; static shapes.
- Per-op limits: CONV_2D stride <= 3; DEPTHWISE_CONV_2D filter width 3, depth multiplier 1, dilation only with
  stride 1, otherwise stride <= 3; pools and L2_NORMALIZATION without fused activation; ADD / MUL / SUB with at most
  a ReLU-family activation; PAD with zero padding only; RESIZE_BILINEAR output size <= 65; TRANSPOSE_CONV stride
  <= 3 without dilation; QUANTIZE with 8-bit input and output.
- Up to 4 partitions of at least 2 ops are delegated by default.
"""
from __future__ import annotations

from edgeopt.analyze.delegates.base import OpView, activation_in, check_all, max_rank, static_shapes
from edgeopt.analyze.tflite import OpInfo

NAME = "hexagon"
TITLE = "Hexagon DSP"
SOURCE = ("TensorFlow Lite Hexagon delegate, https://www.tensorflow.org/lite/performance/hexagon_delegate ; "
          "tensorflow/lite/delegates/hexagon/README.md")
PARTITIONING = "graph"
LIMITS = {"max_partitions": 4, "min_nodes_per_partition": 2,
          "notes": ["quantized (uint8/int8) models only; float ops stay on the CPU",
                    "int8 (symmetric, post-training) models need a recent delegate; early ones took uint8 QAT only",
                    "tensors of at most 4 dimensions"]}

SUPPORTED = frozenset({
    "ADD", "ARG_MAX", "ARG_MIN", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTH_TO_SPACE",
    "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "HARD_SWISH", "L2_NORMALIZATION", "LOGISTIC", "MAXIMUM", "MAX_POOL_2D",
    "MEAN", "MINIMUM", "MIRROR_PAD", "MUL", "NEG", "PACK", "PAD", "QUANTIZE", "RELU", "RELU6", "RESHAPE",
    "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "STRIDED_SLICE",
    "SUB", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
})
_RELU_FAMILY = {"NONE", "RELU", "RELU6", "RELU_N1_TO_1"}


def model_reason(summary) -> str | None:
    return None


def _quantized(op: OpInfo, view: OpView) -> str | None:
    for t in view.activations(op):
        if t.dtype not in ("int8", "uint8") and not (t.dtype == "int32" and op.op in ("ARG_MAX", "ARG_MIN")):
            return f"dtype {t.dtype} of tensor '{t.name}' (Hexagon runs quantized uint8/int8 ops only)"
    return None


def _stride(op: OpInfo) -> int:
    return max(op.options.get("stride_h", 1), op.options.get("stride_w", 1))


def _op_specific(op: OpInfo, view: OpView) -> str | None:
    o = op.options
    act = o.get("fused_activation_function", "NONE")
    if op.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_NORMALIZATION") and act != "NONE":
        return f"{op.op} with fused activation {act}"
    if op.op in ("ADD", "MUL", "SUB") and act not in _RELU_FAMILY:
        return f"{op.op} with fused activation {act}"
    if op.op == "CONV_2D" and _stride(op) > 3:
        return f"CONV_2D stride {_stride(op)} > 3"
    if op.op == "DEPTHWISE_CONV_2D":
        w = view.input(op, 1)
        if w is not None and len(w.shape) == 4 and w.shape[2] != 3:
            return f"DEPTHWISE_CONV_2D filter width {w.shape[2]} (3 only)"
        if o.get("depth_multiplier", 1) != 1:
            return "DEPTHWISE_CONV_2D depth multiplier != 1"
        dilated = o.get("dilation_h_factor", 1) > 1 or o.get("dilation_w_factor", 1) > 1
        if dilated and _stride(op) != 1:
            return "DEPTHWISE_CONV_2D dilation with stride != 1"
        if _stride(op) > 3:
            return f"DEPTHWISE_CONV_2D stride {_stride(op)} > 3"
    if op.op == "TRANSPOSE_CONV":
        if _stride(op) > 3:
            return f"TRANSPOSE_CONV stride {_stride(op)} > 3"
        if o.get("dilation_h_factor", 1) != 1 or o.get("dilation_w_factor", 1) != 1:
            return "TRANSPOSE_CONV with dilation"
    if op.op == "RESIZE_BILINEAR":
        out = view.outputs(op)[0]
        if len(out.shape) == 4 and max(out.shape[1:3]) > 65:
            return f"RESIZE_BILINEAR to {out.shape[1]}x{out.shape[2]} (size <= 65 only)"
    return None


def op_reason(op: OpInfo, view: OpView) -> str | None:
    if op.custom:
        return f"custom op '{op.custom_name}' not supported"
    if op.op not in SUPPORTED:
        return f"op {op.op} not supported by the Hexagon delegate"
    return check_all(op, view, (_quantized, max_rank(4), static_shapes, activation_in(_RELU_FAMILY | {"TANH"}),
                                _op_specific))
