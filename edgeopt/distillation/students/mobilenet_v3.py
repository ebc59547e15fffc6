"""MobileNetV3-Small and -Large (Howard et al., "Searching for MobileNetV3", ICCV 2019) in tf_keras.

The paper's Tables 1 and 2, width 1.0: inverted residuals with squeeze-and-excitation (a quarter of the expanded
channels, rounded to 8, ReLU then hard-sigmoid), hard-swish in the later stages and the head, the last stage's
1x1 conv, global pooling, a 1x1 conv of 1280 (Large) or 1024 (Small) channels with hard-swish, dropout 0.2 and the
classifier. Hard-swish is the importer's ``HardSwish`` layer (TFLite HARD_SWISH). With ``small`` inputs the stem
keeps resolution (stride 1: overall stride 16 instead of 32).
"""
from __future__ import annotations

from edgeopt._tf import keras

from .common import activation, conv_bn, divisible, dw_bn

# (kernel, expanded channels, out channels, squeeze-excite, activation, stride)
LARGE = ((3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1),
         (5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
         (3, 240, 80, False, "hswish", 2), (3, 200, 80, False, "hswish", 1), (3, 184, 80, False, "hswish", 1),
         (3, 184, 80, False, "hswish", 1), (3, 480, 112, True, "hswish", 1), (3, 672, 112, True, "hswish", 1),
         (5, 672, 160, True, "hswish", 2), (5, 960, 160, True, "hswish", 1), (5, 960, 160, True, "hswish", 1))
SMALL = ((3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1),
         (5, 96, 40, True, "hswish", 2), (5, 240, 40, True, "hswish", 1), (5, 240, 40, True, "hswish", 1),
         (5, 120, 48, True, "hswish", 1), (5, 144, 48, True, "hswish", 1), (5, 288, 96, True, "hswish", 2),
         (5, 576, 96, True, "hswish", 1), (5, 576, 96, True, "hswish", 1))
CONFIGS = {"large": (LARGE, 960, 1280), "small": (SMALL, 576, 1024)}


def build(input_shape, classes: int, *, size: str = "large", small: bool = False, name: str | None = None):
    k = keras()
    blocks, last, hidden = CONFIGS[size]
    inputs = k.Input(input_shape, name="input")
    x = conv_bn(inputs, 16, 3, 1 if small else 2, "stem", "hswish")
    cin = 16
    for i, (kernel, exp, cout, se, act, stride) in enumerate(blocks):
        x = _block(x, cin, exp, cout, kernel, stride, se, act, f"block{i}")
        cin = cout
    x = conv_bn(x, last, 1, 1, "last", "hswish")
    x = k.layers.GlobalAveragePooling2D(keepdims=True, name="pool")(x)
    x = k.layers.Conv2D(hidden, 1, name="hidden_conv")(x)
    x = activation(x, "hswish", "hidden_hswish")
    x = k.layers.Dropout(0.2, name="dropout")(x)
    x = k.layers.Conv2D(classes, 1, name="classifier")(x)
    x = k.layers.Flatten(name="logits")(x)
    return k.Model(inputs, x, name=name or f"mobilenet_v3_{size}")


def _block(x, cin, exp, cout, kernel, stride, se, act, name):
    k = keras()
    y = x
    if exp != cin:
        y = conv_bn(y, exp, 1, 1, f"{name}_expand", act)
    y = dw_bn(y, kernel, stride, name, act)
    if se:
        y = _squeeze_excite(y, exp, f"{name}_se")
    y = conv_bn(y, cout, 1, 1, f"{name}_project")
    if stride == 1 and cin == cout:
        y = k.layers.Add(name=f"{name}_add")([x, y])
    return y


def _squeeze_excite(x, channels: int, name: str):
    k = keras()
    s = k.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    s = k.layers.Conv2D(divisible(channels / 4), 1, name=f"{name}_reduce")(s)
    s = activation(s, "relu", f"{name}_relu")
    s = k.layers.Conv2D(channels, 1, name=f"{name}_expand")(s)
    s = activation(s, "hsigmoid", f"{name}_gate")
    return k.layers.Multiply(name=f"{name}_mul")([x, s])
