"""Resize and Upsample (nearest, linear) → UpSampling2D, or a Resize layer with TF's coordinate flags.

ONNX's coordinate modes are matched against what TF's resize kernels compute (align_corners,
half_pixel_centers); a combination TF cannot reproduce is reported instead of silently approximated.
"""
from __future__ import annotations

import math

import numpy as np

from edgeopt.frontends.onnx.context import NodeError, attr
from edgeopt.frontends.onnx.layers import custom
from edgeopt.frontends.onnx.layout import CHANNELS_LAST, Value, permute


def _source_coords(mode: str, n_out: int, n_in: int, scale: float) -> np.ndarray:
    """Input coordinate of each output pixel (ONNX Resize, coordinate_transformation_mode)."""
    x = np.arange(n_out, dtype=np.float64)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if n_out > 1 else np.zeros(n_out)
    if mode == "align_corners":
        return x * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros(n_out)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    raise NodeError(f"coordinate_transformation_mode '{mode}' is not supported")


def _round(x: np.ndarray, nearest_mode: str) -> np.ndarray:
    if nearest_mode == "floor":
        return np.floor(x)
    if nearest_mode == "ceil":
        return np.ceil(x)
    if nearest_mode == "round_prefer_ceil":
        return np.floor(x + 0.5)
    if nearest_mode == "round_prefer_floor":
        return np.ceil(x - 0.5)
    if nearest_mode == "simple":  # Resize-10 / Upsample: floor when upscaling
        return np.floor(x)
    raise NodeError(f"nearest_mode '{nearest_mode}' is not supported")


def _tf_nearest(n_out: int, n_in: int) -> dict[tuple[bool, bool], np.ndarray]:
    """Indices TF's ResizeNearestNeighbor reads, per (align_corners, half_pixel_centers)."""
    x = np.arange(n_out, dtype=np.float64)
    s = n_in / n_out
    s_ac = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    clip = lambda v: np.clip(v, 0, n_in - 1).astype(int)  # noqa: E731
    return {(False, False): clip(np.floor(x * s)), (False, True): clip(np.floor((x + 0.5) * s)),
            (True, False): clip(np.round(x * s_ac))}


def _geometry(ctx, node, x: Value) -> tuple[list[int], list[float]]:
    shape = x.onnx_shape(ctx.batch)
    scales = sizes = None
    if node.op_type == "Upsample":
        scales = attr(node, "scales") if ctx.opset < 9 else ctx.const(node, 1, "scales")
    elif ctx.opset < 11:
        scales = ctx.const(node, 1, "scales")
    else:
        scales, sizes = ctx.const(node, 2, "scales"), ctx.const(node, 3, "sizes")
        if attr(node, "axes") is not None or int(attr(node, "antialias", 0)):
            raise NodeError("Resize with axes or antialias is not supported")
    if sizes is not None and np.size(sizes):
        out = [int(v) for v in np.asarray(sizes).reshape(-1)]
        if len(out) != 4:
            raise NodeError(f"sizes {out} must give all 4 dims")
        factors = [out[i] / shape[i] for i in range(4)]
    elif scales is not None and np.size(scales):
        factors = [float(v) for v in np.asarray(scales).reshape(-1)]
        if len(factors) != 4 or min(factors) <= 0:
            raise NodeError(f"scales {factors} must give 4 positive factors")
        out = [int(math.floor(shape[i] * factors[i] + 1e-9)) for i in range(4)]
    else:
        raise NodeError("neither scales nor sizes is given")
    if out[:2] != list(shape[:2]) or min(out[2:]) < 1:
        raise NodeError(f"only spatial resizing is supported (from {list(shape)} to {out})")
    return out, factors


def resize(ctx, node):
    x = ctx.value(node, 0)
    if x.rank != 4:
        raise NodeError(f"only 4-D (image) tensors can be resized, got rank {x.rank}")
    x = permute(x, CHANNELS_LAST, ctx)
    out, factors = _geometry(ctx, node, x)
    shape = x.onnx_shape(ctx.batch)
    mode = str(attr(node, "mode", "nearest")).lower()
    legacy = node.op_type == "Upsample" or ctx.opset < 11
    coord = "asymmetric" if legacy else attr(node, "coordinate_transformation_mode", "half_pixel")
    L = ctx.keras.layers
    ints = [out[i] // shape[i] for i in (2, 3)]
    integer = all(out[i] == shape[i] * ints[i - 2] for i in (2, 3))
    if mode == "nearest":
        nmode = "simple" if legacy else attr(node, "nearest_mode", "round_prefer_floor")
        want = [np.clip(_round(_source_coords(coord, out[i], shape[i], factors[i]), nmode), 0, shape[i] - 1)
                .astype(int) for i in (2, 3)]
        for flags in ((False, False), (False, True), (True, False)):
            if all(np.array_equal(want[k], _tf_nearest(out[k + 2], shape[k + 2])[flags]) for k in (0, 1)):
                if flags == (False, False) and integer:
                    layer = L.UpSampling2D(tuple(ints), interpolation="nearest", name=ctx.name("upsample"))
                else:
                    layer = custom("Resize")(out[2:], "nearest", *flags, name=ctx.name("resize"))
                return [Value(ctx.apply(layer, x.t), CHANNELS_LAST)]
        raise NodeError(f"nearest resize with '{coord}'/'{nmode}' from {list(shape[2:])} to {out[2:]} has no "
                        "TF equivalent")
    if mode not in ("linear", "bilinear"):
        raise NodeError(f"resize mode '{mode}' is not supported (nearest and linear are)")
    exact = all(abs(factors[i] - out[i] / shape[i]) < 1e-6 for i in (2, 3))
    if coord == "pytorch_half_pixel" and min(out[2:]) > 1:
        coord = "half_pixel"
    flags = {"half_pixel": (False, True), "align_corners": (True, False), "asymmetric": (False, False)}.get(coord)
    if flags is None or (coord != "align_corners" and not exact):
        raise NodeError(f"linear resize with '{coord}' and scales {factors[2:]} has no TF equivalent")
    if flags == (False, True) and integer:
        layer = L.UpSampling2D(tuple(ints), interpolation="bilinear", name=ctx.name("upsample"))
    else:
        layer = custom("Resize")(out[2:], "bilinear", *flags, name=ctx.name("resize"))
    return [Value(ctx.apply(layer, x.t), CHANNELS_LAST)]


HANDLERS = {"Resize": resize, "Upsample": resize}
