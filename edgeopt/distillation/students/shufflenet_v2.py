"""ShuffleNetV2 (Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design", ECCV 2018)
in tf_keras, at 0.5x, 1.0x, 1.5x and 2.0x (the paper's Table 5).

A stride-1 unit splits its channels in halves, runs one half through 1x1 conv, 3x3 depthwise and 1x1 conv, and
joins it back to the other; a stride-2 unit runs both halves (the left one through a depthwise and a 1x1 conv).
Every unit ends with a channel shuffle of two groups written with 4-D tensors only (Reshape to (H*W, 2, C/2),
Permute, Reshape back): TFLite RESHAPE and TRANSPOSE, which the GPU delegate and the Edge TPU compiler take (a
5-D reshape the GPU delegate does not). The split is the importer's ``Split`` layer (TFLite SPLIT_V). With
``small`` inputs the stem keeps resolution: its conv has stride 1 and its max pool is left out (overall stride 8
instead of 32).
"""
from __future__ import annotations

from edgeopt._tf import keras

from .common import conv_bn, dw_bn, head

WIDTHS = {0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024), 1.5: (176, 352, 704, 1024),
          2.0: (244, 488, 976, 2048)}
REPEATS = (4, 8, 4)


def build(input_shape, classes: int, *, width: float = 1.0, small: bool = False, name: str | None = None):
    k = keras()
    stages = WIDTHS[width]
    inputs = k.Input(input_shape, name="input")
    x = conv_bn(inputs, 24, 3, 1 if small else 2, "stem", "relu")
    if not small:
        x = k.layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    for s, (channels, repeats) in enumerate(zip(stages[:3], REPEATS)):
        for i in range(repeats):
            x = _unit(x, channels, 2 if i == 0 else 1, f"stage{s + 2}_{i}")
    x = conv_bn(x, stages[3], 1, 1, "last", "relu")
    return k.Model(inputs, head(x, classes), name=name or f"shufflenet_v2_x{str(width).replace('.', '_')}")


def _unit(x, cout: int, stride: int, name: str):
    from edgeopt.frontends.onnx.layers import custom

    k = keras()
    half = cout // 2
    if stride == 1:
        c = x.shape[-1]
        left, right = custom("Split")(axis=-1, sizes=[c // 2, c - c // 2], name=f"{name}_split")(x)
    else:
        left = dw_bn(x, 3, 2, f"{name}_left")
        left = conv_bn(left, half, 1, 1, f"{name}_left_pw", "relu")
        right = x
    right = conv_bn(right, half, 1, 1, f"{name}_pw1", "relu")
    right = dw_bn(right, 3, stride, f"{name}_mid")
    right = conv_bn(right, half, 1, 1, f"{name}_pw2", "relu")
    x = k.layers.Concatenate(name=f"{name}_concat")([left, right])
    return shuffle(x, 2, f"{name}_shuffle")


def shuffle(x, groups: int, name: str):
    """Channel shuffle with 4-D tensors: (H, W, C) -> (H*W, g, C/g) -> (H*W, C/g, g) -> (H, W, C)."""
    k = keras()
    h, w, c = (int(d) for d in x.shape[1:])
    y = k.layers.Reshape((h * w, groups, c // groups), name=f"{name}_split")(x)
    y = k.layers.Permute((1, 3, 2), name=f"{name}_swap")(y)
    return k.layers.Reshape((h, w, c), name=f"{name}_join")(y)
