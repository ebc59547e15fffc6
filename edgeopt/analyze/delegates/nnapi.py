"""TFLite NNAPI delegate (Android Neural Networks API): which ops it takes, by Android API level.

Sources: tensorflow/lite/delegates/nnapi/nnapi_delegate.cc (``NNAPIDelegateKernel::Validate``, the per-op minimum
Android SDK versions and type checks) and the Android NDK Neural Networks API reference
(https://developer.android.com/ndk/guides/neuralnetworks, operand types by NNAPI feature level); option defaults
from nnapi_delegate.h (``max_number_delegated_partitions`` = 3, dynamic dimensions off).

Rules, in our words, for a device at ``API_LEVEL`` (30 = Android 11, NNAPI 1.3) unless said otherwise:
- Each op needs a minimum Android API level: 27 (NNAPI 1.0) for the classic CNN ops, 28 for DIV / PAD / MEAN /
  SUB / TRANSPOSE / STRIDED_SLICE ..., 29 for the element-wise, comparison and resize-nearest ops, QUANTIZE,
  TRANSPOSE_CONV ..., 30 for HARD_SWISH, ELU, FILL, PACK ...; the table below follows nnapi_delegate.cc and is an
  approximation of its finer per-version type rules.
- Operand types: float32; float16 (API 29+); uint8 asymmetric quantized; int8 signed quantized natively from
  API 30 (the delegate converts some int8 ops to uint8 on older devices); int32 for biases, shapes and indices.
  int16 activations are not supported.
- Fused activations: NONE, RELU, RELU_N1_TO_1, RELU6 only (no TANH / SIGN_BIT).
- Tensors of rank <= 4 and static shapes (dynamic dimensions need an opt-in flag).
- NNAPI is deprecated from Android 15; the partition limit is 3 by default.
"""
from __future__ import annotations

from edgeopt.analyze.delegates.base import (
    OpView, activation_in, check_all, is_const_fp16_dequantize, max_rank, static_shapes)
from edgeopt.analyze.tflite import OpInfo

NAME = "nnapi"
TITLE = "NNAPI"
SOURCE = ("tensorflow/lite/delegates/nnapi/nnapi_delegate.cc (Validate); "
          "Android NNAPI, https://developer.android.com/ndk/guides/neuralnetworks")
PARTITIONING = "graph"
API_LEVEL = 30
LIMITS = {"max_partitions": 3, "min_nodes_per_partition": 1, "android_api_level": API_LEVEL,
          "notes": ["max_number_delegated_partitions defaults to 3",
                    "int8 is native from API 30 (NNAPI 1.3); older devices get a partial uint8 conversion",
                    "NNAPI is deprecated from Android 15; vendor drivers decide what actually accelerates"]}

_BY_LEVEL = {
    27: ("ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE",
         "EMBEDDING_LOOKUP", "FLOOR", "FULLY_CONNECTED", "HASHTABLE_LOOKUP", "L2_NORMALIZATION", "L2_POOL_2D",
         "LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC", "LSH_PROJECTION", "LSTM", "MAX_POOL_2D", "MUL", "RELU",
         "RELU_N1_TO_1", "RELU6", "RESHAPE", "RESIZE_BILINEAR", "RNN", "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH"),
    28: ("BATCH_TO_SPACE_ND", "DIV", "MEAN", "PAD", "SPACE_TO_BATCH_ND", "SQUEEZE", "STRIDED_SLICE", "SUB",
         "TRANSPOSE", "SQUARED_DIFFERENCE"),
    29: ("ABS", "ARG_MAX", "ARG_MIN", "CAST", "EQUAL", "EXP", "EXPAND_DIMS", "GATHER", "GREATER", "GREATER_EQUAL",
         "LESS", "LESS_EQUAL", "LOG", "LOGICAL_AND", "LOGICAL_NOT", "LOGICAL_OR", "LOG_SOFTMAX", "MAXIMUM",
         "MINIMUM", "NEG", "NOT_EQUAL", "PADV2", "POW", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN",
         "REDUCE_PROD", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SELECT", "SELECT_V2", "SIN", "SLICE", "SPLIT",
         "SPLIT_V", "SQRT", "SUM", "TILE", "TOPK_V2", "TRANSPOSE_CONV", "UNIDIRECTIONAL_SEQUENCE_LSTM",
         "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_RNN"),
    30: ("ELU", "FILL", "HARD_SWISH", "LEAKY_RELU", "PACK", "UNPACK", "MIRROR_PAD", "QUANTIZED_16BIT_LSTM"),
    31: ("BATCH_MATMUL",),
}
MIN_API = {op: level for level, ops in _BY_LEVEL.items() for op in ops}
_DTYPE_MIN_API = {"float32": 27, "uint8": 27, "int32": 27, "float16": 29, "int8": 30, "bool": 29}


def model_reason(summary) -> str | None:
    return None


def _api(op: OpInfo, view: OpView) -> str | None:
    need = MIN_API[op.op]
    if need > API_LEVEL:
        return f"op {op.op} needs Android API {need} (assumed device: {API_LEVEL})"
    return None


def _dtypes(op: OpInfo, view: OpView) -> str | None:
    for t in view.activations(op):
        need = _DTYPE_MIN_API.get(t.dtype)
        if need is None:
            return f"dtype {t.dtype} of tensor '{t.name}' not supported by NNAPI"
        if need > API_LEVEL:
            return f"dtype {t.dtype} needs Android API {need}"
    return None


def op_reason(op: OpInfo, view: OpView) -> str | None:
    if op.custom:
        return f"custom op '{op.custom_name}' not supported"
    if is_const_fp16_dequantize(op, view):
        return None
    if op.op not in MIN_API:
        return f"op {op.op} not supported by the NNAPI delegate"
    return check_all(op, view, (_api, _dtypes, max_rank(4), static_shapes,
                                activation_in({"NONE", "RELU", "RELU_N1_TO_1", "RELU6"})))
