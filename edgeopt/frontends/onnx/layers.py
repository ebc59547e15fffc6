"""The few custom Keras layers the importer needs where no builtin layer fits.

Each one is registered serializable (so a model saves to ``.keras`` and reloads) and is written with plain
TensorFlow ops that the TFLite converter maps to builtins (MUL, ADD, MINIMUM, MAXIMUM, STRIDED_SLICE, PAD,
MIRROR_PAD, RESIZE_*, MEAN, ...), never Flex ops.
"""
from __future__ import annotations

from edgeopt._tf import keras, tf


def _register(cls):
    return keras().utils.register_keras_serializable(package="edgeopt")(cls)


def _base():
    return keras().layers.Layer


_BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "max": lambda a, b: tf().maximum(a, b),
    "min": lambda a, b: tf().minimum(a, b),
    "pow": lambda a, b: tf().pow(a, b),
    "matmul": lambda a, b: tf().linalg.matmul(a, b),
}

_UNARY = {
    "exp": lambda x: tf().exp(x),
    "log": lambda x: tf().math.log(x),
    "sqrt": lambda x: tf().sqrt(x),
    "abs": lambda x: tf().abs(x),
    "neg": lambda x: -x,
    "reciprocal": lambda x: 1.0 / x,
    "floor": lambda x: tf().floor(x),
    "ceil": lambda x: tf().math.ceil(x),
    "sin": lambda x: tf().sin(x),
    "cos": lambda x: tf().cos(x),
    "erf": lambda x: tf().math.erf(x),
    "gelu": lambda x: tf().nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: tf().nn.gelu(x, approximate=True),
}

_REDUCE = {
    "mean": lambda x, a, k: tf().reduce_mean(x, axis=a, keepdims=k),
    "max": lambda x, a, k: tf().reduce_max(x, axis=a, keepdims=k),
    "min": lambda x, a, k: tf().reduce_min(x, axis=a, keepdims=k),
    "sum": lambda x, a, k: tf().reduce_sum(x, axis=a, keepdims=k),
    "prod": lambda x, a, k: tf().reduce_prod(x, axis=a, keepdims=k),
}


def _build_classes():
    """Define the layer classes once TensorFlow is available (importing edgeopt never imports TF)."""
    Layer = _base()

    @_register
    class ConstantOp(Layer):
        """``x <op> c`` (or ``c <op> x`` when ``reverse``) with a stored, non-trainable constant ``c``.

        >>> ConstantOp("mul", (1, 1, 3), value=np.ones((1, 1, 3)))  # doctest: +SKIP
        """

        def __init__(self, op, shape, reverse=False, value=None, **kw):
            super().__init__(**kw)
            self.op, self.shape, self.reverse = op, tuple(shape), bool(reverse)
            self._init = value

        def build(self, input_shape):
            init = "zeros" if self._init is None else keras().initializers.Constant(self._init)
            self.value = self.add_weight(name="value", shape=self.shape, initializer=init, trainable=False)
            super().build(input_shape)

        def call(self, x):
            c = tf().cast(self.value, x.dtype)
            return _BINARY[self.op](c, x) if self.reverse else _BINARY[self.op](x, c)

        def get_config(self):
            return {**super().get_config(), "op": self.op, "shape": list(self.shape), "reverse": self.reverse}

    @_register
    class BinaryOp(Layer):
        """An elementwise op on two tensors that has no builtin merge layer (div, pow, matmul)."""

        def __init__(self, op, **kw):
            super().__init__(**kw)
            self.op = op

        def call(self, inputs):
            return _BINARY[self.op](inputs[0], inputs[1])

        def get_config(self):
            return {**super().get_config(), "op": self.op}

    @_register
    class UnaryOp(Layer):
        """An elementwise math function (exp, sqrt, abs, ...)."""

        def __init__(self, fn, **kw):
            super().__init__(**kw)
            self.fn = fn

        def call(self, x):
            return _UNARY[self.fn](x)

        def get_config(self):
            return {**super().get_config(), "fn": self.fn}

    @_register
    class Clip(Layer):
        """``min(max(x, low), high)``; either bound may be None."""

        def __init__(self, low=None, high=None, **kw):
            super().__init__(**kw)
            self.low, self.high = low, high

        def call(self, x):
            if self.low is not None:
                x = tf().maximum(x, self.low)
            if self.high is not None:
                x = tf().minimum(x, self.high)
            return x

        def get_config(self):
            return {**super().get_config(), "low": self.low, "high": self.high}

    @_register
    class HardSigmoid(Layer):
        """ONNX HardSigmoid: ``clip(alpha * x + beta, 0, 1)`` (torch exports alpha=1/6, beta=0.5)."""

        def __init__(self, alpha=0.2, beta=0.5, **kw):
            super().__init__(**kw)
            self.alpha, self.beta = float(alpha), float(beta)

        def call(self, x):
            return tf().clip_by_value(x * self.alpha + self.beta, 0.0, 1.0)

        def get_config(self):
            return {**super().get_config(), "alpha": self.alpha, "beta": self.beta}

    @_register
    class HardSwish(Layer):
        """``x * relu6(x + 3) / 6``."""

        def call(self, x):
            return x * tf().nn.relu6(x + 3.0) * (1.0 / 6.0)

    @_register
    class Slice(Layer):
        """A strided slice, with begin/end/strides given for every axis including the batch."""

        def __init__(self, begin, end, strides, **kw):
            super().__init__(**kw)
            self.begin, self.end, self.strides = list(begin), list(end), list(strides)

        def call(self, x):
            # The batch axis is always taken whole: end_mask bit 0.
            return tf().strided_slice(x, self.begin, self.end, self.strides, begin_mask=1, end_mask=1)

        def get_config(self):
            return {**super().get_config(), "begin": self.begin, "end": self.end, "strides": self.strides}

    @_register
    class Split(Layer):
        """Split one axis into pieces of the given sizes (several outputs)."""

        def __init__(self, axis, sizes, **kw):
            super().__init__(**kw)
            self.axis, self.sizes = int(axis), [int(s) for s in sizes]

        def call(self, x):
            return tf().split(x, self.sizes, axis=self.axis)

        def get_config(self):
            return {**super().get_config(), "axis": self.axis, "sizes": self.sizes}

    @_register
    class Pad(Layer):
        """Pad with a constant, by reflection or by repeating the edge; ``pads`` is [[before, after]] per axis."""

        def __init__(self, pads, mode="constant", value=0.0, **kw):
            super().__init__(**kw)
            self.pads, self.mode, self.value = [list(map(int, p)) for p in pads], mode, float(value)

        def call(self, x):
            if self.mode == "constant":
                return tf().pad(x, self.pads, constant_values=self.value)
            if self.mode == "reflect":
                return tf().pad(x, self.pads, mode="REFLECT")
            # "edge": repeat the first/last slice of each axis (TF has no edge mode).
            for axis, (before, after) in enumerate(self.pads):
                parts = []
                if before:
                    first = tf().gather(x, [0] * before, axis=axis)
                    parts.append(first)
                parts.append(x)
                if after:
                    n = x.shape[axis]
                    parts.append(tf().gather(x, [n - 1] * after, axis=axis))
                if len(parts) > 1:
                    x = tf().concat(parts, axis=axis)
            return x

        def get_config(self):
            return {**super().get_config(), "pads": self.pads, "mode": self.mode, "value": self.value}

    @_register
    class Resize(Layer):
        """Nearest or bilinear resize of an NHWC tensor to a fixed size, with TF's coordinate flags."""

        def __init__(self, size, method="bilinear", align_corners=False, half_pixel_centers=True, **kw):
            super().__init__(**kw)
            self.size, self.method = [int(s) for s in size], method
            self.align_corners, self.half_pixel_centers = bool(align_corners), bool(half_pixel_centers)

        def call(self, x):
            fn = tf().raw_ops.ResizeBilinear if self.method == "bilinear" else tf().raw_ops.ResizeNearestNeighbor
            y = fn(images=x, size=self.size, align_corners=self.align_corners,
                   half_pixel_centers=self.half_pixel_centers)
            return tf().cast(y, x.dtype)

        def get_config(self):
            return {**super().get_config(), "size": self.size, "method": self.method,
                    "align_corners": self.align_corners, "half_pixel_centers": self.half_pixel_centers}

    @_register
    class Reduce(Layer):
        """reduce_mean/max/min/sum/prod over fixed non-batch axes."""

        def __init__(self, op, axes, keepdims=True, **kw):
            super().__init__(**kw)
            self.op, self.axes, self.keepdims = op, [int(a) for a in axes], bool(keepdims)

        def call(self, x):
            return _REDUCE[self.op](x, self.axes, self.keepdims)

        def get_config(self):
            return {**super().get_config(), "op": self.op, "axes": self.axes, "keepdims": self.keepdims}

    @_register
    class Reverse(Layer):
        """Reverse one non-batch axis (TFLite REVERSE_V2): a reverse-direction recurrent layer's outputs."""

        def __init__(self, axis, **kw):
            super().__init__(**kw)
            self.axis = int(axis)

        def call(self, x):
            return tf().reverse(x, axis=[self.axis])

        def get_config(self):
            return {**super().get_config(), "axis": self.axis}

    return {c.__name__: c for c in (ConstantOp, BinaryOp, UnaryOp, Clip, HardSigmoid, HardSwish, Slice, Split,
                                    Pad, Resize, Reduce, Reverse)}


_CLASSES: dict | None = None


def custom(name: str):
    """The custom layer class ``name`` (classes are defined and registered on first use).

    >>> custom("Clip")(low=0.0, high=1.0)  # doctest: +SKIP
    """
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _build_classes()
    return _CLASSES[name]


def custom_objects() -> dict:
    """Name → class for every custom layer, for ``tf_keras.models.load_model(custom_objects=...)``."""
    custom("Clip")
    return {f"edgeopt>{k}": v for k, v in _CLASSES.items()}
