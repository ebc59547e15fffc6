"""Params and MACs of a tf_keras model, from its layers' input/output shapes.

MACs are counted for Conv2D, DepthwiseConv2D, SeparableConv2D (depthwise + pointwise), Conv2DTranspose and Dense,
with the same arithmetic as the TFLite and ONNX views (:mod:`edgeopt.analyze.macs`), so a network and its
conversions report the same number. Layers are recognised by class name along their MRO, so subclasses count and
TensorFlow is never imported here; wrappers with an inner ``.layer`` (pruning, quantization) count as the layer they
wrap. Nested models are walked recursively and a layer called several times counts once per call. A batch
dimension of ``None`` counts as 1.

    >>> keras_summary(model)   # doctest: +SKIP
    {'params': 20866, 'trainable_params': 20866, 'non_trainable_params': 0, 'macs': 380928, 'macs_by_layer': {...}}
"""
from __future__ import annotations

from typing import Any, Callable

from edgeopt.analyze import macs as M


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conv(layer, in_shape, out_shape) -> int:
    kh, kw = _pair(layer.kernel_size)
    groups = int(getattr(layer, "groups", 1) or 1)
    return M.conv(out_elements=M.elements(out_shape[1:]), kernel_spatial=kh * kw,
                  in_channels_per_group=int(in_shape[-1]) // groups)


def _depthwise(layer, in_shape, out_shape) -> int:
    kh, kw = _pair(layer.kernel_size)
    return M.depthwise(out_elements=M.elements(out_shape[1:]), kernel_spatial=kh * kw)


def _separable(layer, in_shape, out_shape) -> int:
    # Depthwise over Cin*multiplier channels at the output resolution, then a 1x1 conv to Cout.
    kh, kw = _pair(layer.kernel_size)
    mid = int(in_shape[-1]) * int(layer.depth_multiplier)
    spatial = M.elements(out_shape[1:-1])
    return (M.depthwise(out_elements=spatial * mid, kernel_spatial=kh * kw)
            + M.conv(out_elements=M.elements(out_shape[1:]), kernel_spatial=1, in_channels_per_group=mid))


def _transpose(layer, in_shape, out_shape) -> int:
    kh, kw = _pair(layer.kernel_size)
    return M.transpose_conv(in_elements=M.elements(in_shape[1:]), kernel_spatial=kh * kw,
                            out_channels_per_group=int(out_shape[-1]))


def _dense(layer, in_shape, out_shape) -> int:
    return M.matmul(out_elements=M.elements(out_shape[1:]), reduce_dim=int(in_shape[-1]))


# Most specific class first: DepthwiseConv2D, SeparableConv2D and Conv2DTranspose all derive from Conv2D.
_HANDLERS: dict[str, Callable] = {
    "DepthwiseConv2D": _depthwise,
    "SeparableConv2D": _separable,
    "Conv2DTranspose": _transpose,
    "Conv2D": _conv,
    "Dense": _dense,
}


def _handler(layer) -> Callable | None:
    for cls in type(layer).__mro__:
        if cls.__name__ in _HANDLERS:
            return _HANDLERS[cls.__name__]
    return None


def _calls(layer) -> list[tuple[Any, Any]]:
    """(input_shape, output_shape) of every call of ``layer`` recorded in the functional graph."""
    n = max(len(getattr(layer, "_inbound_nodes", []) or []), 1)
    out = []
    for i in range(n):
        try:
            out.append((layer.get_input_shape_at(i), layer.get_output_shape_at(i)))
        except Exception:  # a layer never called on a symbolic tensor has no recorded shapes
            if i == 0 and getattr(layer, "built", False):
                try:
                    out.append((layer.input_shape, layer.output_shape))
                except Exception:
                    pass
    return out


def _is_model(layer) -> bool:
    return any(c.__name__ in ("Functional", "Sequential", "Model") for c in type(layer).__mro__) and hasattr(
        layer, "layers")


def _walk(model, prefix: str, found: dict[str, int]) -> int:
    total = 0
    for layer in model.layers:
        name = f"{prefix}{layer.name}"
        if _is_model(layer):
            inner = _walk(layer, name + "/", found)
            total += inner * max(len(getattr(layer, "_inbound_nodes", []) or []) - 1, 1)
            continue
        target = getattr(layer, "layer", None)
        fn = _handler(target) if target is not None else None
        fn = fn or _handler(layer)
        if fn is None:
            continue
        n = sum(fn(target if target is not None and _handler(target) else layer, i, o) for i, o in _calls(layer))
        if n:
            found[name] = n
            total += n
    return total


def keras_summary(model) -> dict[str, Any]:
    """Params (total / trainable / non-trainable) and MACs of a built tf_keras model.

    >>> from edgeopt._tf import keras
    >>> K = keras()
    >>> m = K.Sequential([K.Input((32, 32, 3)), K.layers.Conv2D(8, 3, padding="same")])
    >>> keras_summary(m)["macs"]   # 32*32*8 outputs x 3*3*3 inputs each
    221184
    """
    import numpy as np

    trainable = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    total = int(model.count_params())
    by_layer: dict[str, int] = {}
    macs = _walk(model, "", by_layer)
    return {"params": total, "trainable_params": trainable, "non_trainable_params": total - trainable,
            "macs": int(macs), "macs_by_layer": by_layer}
