"""MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018) in tf_keras.

Width multipliers 0.35 to 1.4 scale every layer (rounded to multiples of 8) but the last 1x1 conv, which keeps
1280 channels up to 1.0 and grows with the width above it, as in the paper's reference models. With ``small``
inputs the stem keeps resolution (stride 1: overall stride 16 instead of 32), as CIFAR-style networks do.
"""
from __future__ import annotations

from edgeopt._tf import keras

from .common import conv_bn, divisible, dw_bn, head

# (expansion t, channels c, repeats n, first stride s): the paper's Table 2
BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def build(input_shape, classes: int, *, width: float = 1.0, small: bool = False, name: str = "mobilenet_v2"):
    k = keras()
    inputs = k.Input(input_shape, name="input")
    x = conv_bn(inputs, divisible(32 * width), 3, 1 if small else 2, "stem", "relu6")
    cin = x.shape[-1]
    index = 0
    for t, c, n, s in BLOCKS:
        cout = divisible(c * width)
        for i in range(n):
            x = _inverted(x, cin, cout, t, s if i == 0 else 1, f"block{index}")
            cin, index = cout, index + 1
    last = divisible(1280 * width) if width > 1.0 else 1280
    x = conv_bn(x, last, 1, 1, "last", "relu6")
    return k.Model(inputs, head(x, classes), name=name)


def _inverted(x, cin: int, cout: int, expansion: int, stride: int, name: str):
    k = keras()
    y = x
    if expansion != 1:
        y = conv_bn(y, cin * expansion, 1, 1, f"{name}_expand", "relu6")
    y = dw_bn(y, 3, stride, name, "relu6")
    y = conv_bn(y, cout, 1, 1, f"{name}_project")
    if stride == 1 and cin == cout:
        y = k.layers.Add(name=f"{name}_add")([x, y])
    return y
