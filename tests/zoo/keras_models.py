"""tf_keras (Keras 2) models of the zoo: three ``tf_keras.applications`` networks built offline and a small CNN.

``weights=None`` leaves every BatchNorm at mean 0, variance 1, scale 1, shift 0, which an exporter could drop and
still match; :func:`build` gives them random scales and shifts and statistics measured on random data.

    >>> model = build("keras_small_cnn")
    >>> model.output_shape
    (None, 10)
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from edgeopt._tf import keras, tf


def _mobilenet_v2(k, size: int, classes: int):
    return k.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35, weights=None, classes=classes,
                                      classifier_activation=None)


def _mobilenet_v3_small(k, size: int, classes: int):
    # Includes its own Rescaling(1/127.5, offset=-1): it expects pixels in [0, 255].
    return k.applications.MobileNetV3Small(input_shape=(size, size, 3), weights=None, classes=classes,
                                           classifier_activation=None)


def _efficientnet_b0(k, size: int, classes: int):
    # Includes Rescaling(1/255) and a Normalization layer: it expects pixels in [0, 255].
    return k.applications.EfficientNetB0(input_shape=(size, size, 3), weights=None, classes=classes,
                                         classifier_activation=None)


def _small_cnn(k, size: int, classes: int):
    """Plain, separable and depthwise convs, a residual Add, a Concatenate, LeakyReLU, Flatten + Dense."""
    L = k.layers
    inp = k.Input((size, size, 3), name="input")
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(32, 3, padding="same", use_bias=False)(inp)))
    x = L.MaxPooling2D()(x)
    y = L.BatchNormalization()(L.SeparableConv2D(32, 3, padding="same")(x))
    x = L.Add()([x, L.LeakyReLU(0.1)(y)])
    z = L.ReLU(6.0)(L.BatchNormalization()(L.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False)(x)))
    w = L.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Concatenate()([z, w])
    x = L.AveragePooling2D()(L.Conv2D(64, 1, activation="relu")(x))
    x = L.Dense(64, activation="relu")(L.Flatten()(x))
    return k.Model(inp, L.Dense(classes)(L.Dropout(0.2)(x)), name="small_cnn")


BUILDERS: dict[str, Callable] = {
    "keras_mobilenet_v2": _mobilenet_v2,
    "keras_mobilenet_v3_small": _mobilenet_v3_small,
    "keras_efficientnet_b0": _efficientnet_b0,
    "keras_small_cnn": _small_cnn,
}


def _settle_batchnorm(model, sample: np.ndarray, rng: np.random.Generator) -> None:
    """Random BatchNorm scale/shift, then moving statistics set to the batch statistics of ``sample``.

    With momentum 0 one training-mode call stores the batch statistics as-is:
    moving = moving * momentum + batch * (1 - momentum) = batch.
    """
    norms = [layer for layer in model.layers if isinstance(layer, keras().layers.BatchNormalization)]
    for bn in norms:
        gamma, beta, mean, var = bn.get_weights()
        bn.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                        rng.normal(0.0, 0.2, beta.shape).astype("float32"), mean, var])
        bn.momentum = 0.0
    model(tf().constant(sample), training=True)
    for bn in norms:
        bn.momentum = 0.99


def _randomize_biases(model, rng: np.random.Generator) -> None:
    """Non-zero biases: an all-zero bias is a constant an exporter may legally drop, hiding a bias-handling bug."""
    for layer in model.layers:
        if getattr(layer, "use_bias", False) and layer.bias is not None:
            layer.bias.assign(rng.normal(0.0, 0.1, layer.bias.shape).astype("float32"))


def build(name: str, *, image_size: int, input_range: tuple[float, float], num_classes: int = 10, seed: int = 0):
    """A zoo tf_keras model with seeded weights and non-trivial BatchNorm statistics.

    >>> build("keras_mobilenet_v2", image_size=96, input_range=(-1.0, 1.0)).input_shape
    (None, 96, 96, 3)
    """
    if name not in BUILDERS:
        raise KeyError(f"unknown keras zoo model {name!r}; known: {sorted(BUILDERS)}")
    k = keras()
    k.utils.set_random_seed(seed)
    model = BUILDERS[name](k, image_size, num_classes)
    rng = np.random.default_rng(seed)
    _randomize_biases(model, rng)
    low, high = input_range
    sample = rng.uniform(low, high, (16, image_size, image_size, 3)).astype("float32")
    _settle_batchnorm(model, sample, rng)
    return model


def build_photo_statistics(name: str, *, image_size: int, input_range: tuple[float, float], num_classes: int = 1000,
                           seed: int = 0):
    """A zoo tf_keras model with seeded random weights and biases whose BatchNorms keep their initial scale and
    shift (1, 0) and take their statistics from one batch of 64 crops of the calibration photos in
    ``input_range``, as after training on real images.

    >>> build_photo_statistics("keras_mobilenet_v2", image_size=96, input_range=(-1.0, 1.0)).output_shape
    (None, 1000)
    """
    from images import CALIB_PHOTOS, region_crops

    k = keras()
    k.utils.set_random_seed(seed)
    model = BUILDERS[name](k, image_size, num_classes)
    _randomize_biases(model, np.random.default_rng(seed))
    low, high = input_range
    crops = region_crops(64, (image_size, image_size), photos=CALIB_PHOTOS, seed=11)
    norms = [layer for layer in model.layers if isinstance(layer, k.layers.BatchNormalization)]
    for bn in norms:  # momentum 0: one training-mode call stores the batch statistics
        bn.momentum = 0.0
    model(tf().constant(low + crops.astype("float32") / 255.0 * (high - low)), training=True)
    for bn in norms:
        bn.momentum = 0.99
    return model
