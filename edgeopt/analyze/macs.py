"""Multiply-accumulate arithmetic shared by the Keras, TFLite and ONNX views.

One MAC is one ``a * b + c``. Only the ops that dominate inference cost are counted: convolutions (regular, grouped,
depthwise, transposed) and matrix products (fully connected / Dense / Gemm / MatMul / BATCH_MATMUL). Bias additions,
activations, pooling, element-wise ops and normalisation count 0, so the three views of one network agree exactly.

Every function takes plain integers (already read from a layout-specific shape), e.g. a 3x3 convolution from 3 to 8
channels with a 32x32 output::

    >>> conv(out_elements=32 * 32 * 8, kernel_spatial=3 * 3, in_channels_per_group=3)
    221184
"""
from __future__ import annotations

from math import prod
from typing import Iterable


def elements(shape: Iterable[int | None]) -> int:
    """Number of elements of a shape; unknown (None / negative) dimensions count as 1 (batch 1).

    >>> elements([None, 32, 32, 8])
    8192
    """
    return prod(int(d) if d is not None and int(d) > 0 else 1 for d in shape)


def conv(*, out_elements: int, kernel_spatial: int, in_channels_per_group: int) -> int:
    """Regular or grouped convolution: every output value reads ``kh*kw*cin/groups`` inputs.

    >>> conv(out_elements=16, kernel_spatial=9, in_channels_per_group=4)
    576
    """
    return out_elements * kernel_spatial * in_channels_per_group


def depthwise(*, out_elements: int, kernel_spatial: int) -> int:
    """Depthwise convolution: every output value reads ``kh*kw`` inputs of its own channel.

    >>> depthwise(out_elements=32 * 32 * 8, kernel_spatial=9)
    73728
    """
    return out_elements * kernel_spatial


def transpose_conv(*, in_elements: int, kernel_spatial: int, out_channels_per_group: int) -> int:
    """Transposed convolution: every input value is scattered into ``kh*kw*cout/groups`` outputs.

    >>> transpose_conv(in_elements=16 * 16 * 8, kernel_spatial=4, out_channels_per_group=4)
    32768
    """
    return in_elements * kernel_spatial * out_channels_per_group


def matmul(*, out_elements: int, reduce_dim: int) -> int:
    """Matrix product (Dense, FULLY_CONNECTED, Gemm, MatMul): every output is a dot product of length ``reduce_dim``.

    >>> matmul(out_elements=10, reduce_dim=128)
    1280
    """
    return out_elements * reduce_dim
