"""Building blocks the students share: width rounding, conv + BatchNorm + activation, the hard activations.

Hard-swish and hard-sigmoid are the importer's own layers (``HardSwish``: ``x * relu6(x + 3) / 6``, which the
TFLite converter maps to its HARD_SWISH op; ``HardSigmoid``: ``clip(x / 6 + 1/2, 0, 1)``), so a student and an
imported model carry the same layer classes through pruning, quantization-aware training and conversion.
"""
from __future__ import annotations

from edgeopt._tf import keras


def divisible(value: float, divisor: int = 8, minimum: int | None = None) -> int:
    """``value`` rounded to the nearest multiple of ``divisor``, never more than 10 % below it (the rounding of the
    MobileNet papers' reference code)."""
    minimum = minimum or divisor
    rounded = max(minimum, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def activation(x, kind: str, name: str):
    """``relu``, ``relu6``, ``hswish`` or ``hsigmoid`` applied to ``x``."""
    from edgeopt.frontends.onnx.layers import custom

    k = keras()
    if kind == "relu":
        return k.layers.ReLU(name=name)(x)
    if kind == "relu6":
        return k.layers.ReLU(6.0, name=name)(x)
    if kind == "hswish":
        return custom("HardSwish")(name=name)(x)
    if kind == "hsigmoid":
        return custom("HardSigmoid")(alpha=1.0 / 6.0, beta=0.5, name=name)(x)
    raise ValueError(f"unknown activation {kind!r}")


def conv_bn(x, filters: int, kernel: int, stride: int, name: str, act: str | None = None):
    """A bias-free conv, BatchNorm (momentum 0.9 as in torch's reference models, epsilon 1e-3) and an optional
    activation."""
    k = keras()
    x = k.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = k.layers.BatchNormalization(epsilon=1e-3, momentum=0.9, name=f"{name}_bn")(x)
    return activation(x, act, f"{name}_{act}") if act else x


def dw_bn(x, kernel: int, stride: int, name: str, act: str | None = None):
    """A bias-free depthwise conv, BatchNorm and an optional activation."""
    k = keras()
    x = k.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = k.layers.BatchNormalization(epsilon=1e-3, momentum=0.9, name=f"{name}_dwbn")(x)
    return activation(x, act, f"{name}_{act}") if act else x


def head(x, classes: int, name: str = "classifier"):
    """Global average pooling and the Dense classifier (logits)."""
    k = keras()
    x = k.layers.GlobalAveragePooling2D(name="pool")(x)
    return k.layers.Dense(classes, name=name)(x)
