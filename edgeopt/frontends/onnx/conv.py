"""Conv and ConvTranspose → Conv2D / DepthwiseConv2D / Conv2DTranspose (NHWC), with weights transposed once."""
from __future__ import annotations

import numpy as np

from edgeopt.frontends.onnx.context import NodeError, attr
from edgeopt.frontends.onnx.layers import custom
from edgeopt.frontends.onnx.layout import CHANNELS_LAST, Value, permute
from edgeopt.frontends.onnx.padding import keras_padding, spatial_pads


def _geometry(ctx, node, x: Value, w: np.ndarray):
    if x.rank != 4 or w.ndim != 4:
        raise NodeError(f"only 2-D convolutions on 4-D tensors are supported (input rank {x.rank}, "
                        f"weight rank {w.ndim})")
    sizes = list(x.onnx_shape(ctx.batch)[2:])
    kernel = list(attr(node, "kernel_shape", w.shape[2:]))
    strides = list(attr(node, "strides", [1, 1]))
    dil = list(attr(node, "dilations", [1, 1]))
    if len(kernel) != 2 or len(strides) != 2 or len(dil) != 2 or min(strides + dil + kernel) < 1:
        raise NodeError(f"bad kernel_shape {kernel} / strides {strides} / dilations {dil}")
    if list(kernel) != list(w.shape[2:]):
        raise NodeError(f"kernel_shape {kernel} does not match weight shape {list(w.shape)}")
    return sizes, kernel, strides, dil


def _pad_input(ctx, x: Value, pads) -> Value:
    layer = ctx.keras.layers.ZeroPadding2D(padding=tuple(tuple(p) for p in pads), name=ctx.name("pad"))
    return Value(ctx.apply(layer, x.t), x.perm)


def conv(ctx, node):
    x = permute(ctx.value(node, 0), CHANNELS_LAST, ctx) if ctx.value(node, 0).rank == 4 else ctx.value(node, 0)
    w = ctx.const(node, 1, "Conv weight")
    b = ctx.const(node, 2, "Conv bias")
    if w is None:
        raise NodeError("weight input is missing")
    sizes, kernel, strides, dil = _geometry(ctx, node, x, w)
    group = int(attr(node, "group", 1))
    c_in = x.onnx_shape(ctx.batch)[1]
    c_out = w.shape[0]
    if group < 1 or c_in % group or c_out % group or w.shape[1] * group != c_in:
        raise NodeError(f"group={group} does not fit input channels {c_in} and weight shape {list(w.shape)}")
    if max(strides) > 1 and max(dil) > 1:
        raise NodeError(f"strides {strides} together with dilations {dil} have no Keras equivalent")
    pads = spatial_pads(node, sizes, kernel, strides, dil)
    padding = keras_padding(sizes, kernel, strides, dil, pads)
    if padding is None:
        x, padding = _pad_input(ctx, x, pads), "valid"
    use_bias = b is not None
    L = ctx.keras.layers
    common = dict(strides=strides, padding=padding, dilation_rate=dil, use_bias=use_bias)
    subsample = None
    if group == c_in and group > 1:
        # Depthwise: output channel o = c * m + j reads input channel c, in Keras and ONNX alike.
        m = c_out // c_in
        kernel_w = w.reshape(c_in, m, *kernel).transpose(2, 3, 0, 1)
        if strides[0] != strides[1]:
            # TF's depthwise kernel takes equal strides only (PP-OCR's (2, 1) strides): convolve with stride 1 over
            # the explicitly padded input, then keep every s-th row/column, which is the strided result.
            if padding != "valid":
                x, padding = _pad_input(ctx, x, pads), "valid"
            subsample, strides = strides, [1, 1]
            common.update(strides=strides, padding=padding)
        layer = L.DepthwiseConv2D(kernel, depth_multiplier=m, name=ctx.name("dwconv"), **common)
    else:
        kernel_w = w.transpose(2, 3, 1, 0)
        layer = L.Conv2D(c_out, kernel, groups=group, name=ctx.name("conv"), **common)
    y = ctx.apply(layer, x.t)
    layer.set_weights([kernel_w.astype(np.float32)] + ([np.broadcast_to(b, (c_out,)).astype(np.float32)]
                                                       if use_bias else []))
    if subsample is not None:
        full = [int(d) for d in y.shape[1:3]]
        y = ctx.apply(custom("Slice")([0, 0, 0, 0], [1, *full, c_out], [1, *subsample, 1], name=ctx.name("stride")), y)
    return [Value(y, CHANNELS_LAST)]


def conv_transpose(ctx, node):
    x = ctx.value(node, 0)
    if x.rank == 4:
        x = permute(x, CHANNELS_LAST, ctx)
    w = ctx.const(node, 1, "ConvTranspose weight")
    b = ctx.const(node, 2, "ConvTranspose bias")
    if w is None or w.ndim != 4 or x.rank != 4:
        raise NodeError("only 2-D transposed convolutions with a constant 4-D weight are supported")
    if int(attr(node, "group", 1)) != 1:
        raise NodeError("grouped ConvTranspose has no Keras equivalent")
    sizes = x.onnx_shape(ctx.batch)[2:]
    if w.shape[0] != x.onnx_shape(ctx.batch)[1]:
        raise NodeError(f"weight shape {list(w.shape)} does not fit {x.onnx_shape(ctx.batch)[1]} input channels")
    kernel = list(w.shape[2:])
    strides = list(attr(node, "strides", [1, 1]))
    dil = list(attr(node, "dilations", [1, 1]))
    out_pad = list(attr(node, "output_padding", [0, 0]))
    if min(strides + dil) < 1 or len(strides) != 2 or len(dil) != 2 or len(out_pad) != 2:
        raise NodeError(f"bad strides {strides} / dilations {dil} / output_padding {out_pad}")
    if max(strides) > 1 and max(dil) > 1:
        raise NodeError(f"strides {strides} together with dilations {dil} have no Keras equivalent")
    k_eff = [(kernel[i] - 1) * dil[i] + 1 for i in range(2)]
    full = [(sizes[i] - 1) * strides[i] + k_eff[i] + out_pad[i] for i in range(2)]
    pads = _transpose_pads(node, sizes, strides, full)
    c_out = w.shape[1]
    L = ctx.keras.layers
    # 'same' when the crop equals TF's: out = in * s, crop k_eff - s split with the extra at the end.
    same = all(out_pad[i] == 0 and k_eff[i] >= strides[i]
               and pads[i] == ((k_eff[i] - strides[i]) // 2, k_eff[i] - strides[i] - (k_eff[i] - strides[i]) // 2)
               for i in range(2))
    kw = dict(strides=strides, dilation_rate=dil, use_bias=b is not None, name=ctx.name("deconv"))
    if same:
        layer = L.Conv2DTranspose(c_out, kernel, padding="same", **kw)
    else:
        if any(out_pad[i] >= max(strides[i], dil[i]) for i in range(2)):
            raise NodeError(f"output_padding {out_pad} must be smaller than strides {strides}")
        layer = L.Conv2DTranspose(c_out, kernel, padding="valid",
                                  output_padding=out_pad if any(out_pad) else None, **kw)
    y = ctx.apply(layer, x.t)
    layer.set_weights([w.transpose(2, 3, 1, 0).astype(np.float32)]
                      + ([np.broadcast_to(b, (c_out,)).astype(np.float32)] if b is not None else []))
    if not same and any(p != (0, 0) for p in pads):
        crop = L.Cropping2D(cropping=tuple(tuple(p) for p in pads), name=ctx.name("crop"))
        y = ctx.apply(crop, y)
    return [Value(y, CHANNELS_LAST)]


def _transpose_pads(node, sizes, strides, full):
    """(before, after) crops of the full transposed-conv output, from pads, auto_pad or output_shape."""
    out_shape = attr(node, "output_shape")
    auto = attr(node, "auto_pad", "NOTSET")
    if out_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        target = list(out_shape)[-2:] if out_shape is not None else [sizes[i] * strides[i] for i in range(2)]
        pads = []
        for i in range(2):
            total = full[i] - int(target[i])
            if total < 0:
                raise NodeError(f"output_shape {target} is larger than the full output {full}")
            # SAME_UPPER puts the odd crop at the end; SAME_LOWER and a bare output_shape at the start
            # (as onnxruntime's ConvTranspose computes it).
            small, big = total // 2, total - total // 2
            pads.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return pads
    p = list(attr(node, "pads", [0, 0, 0, 0]))
    if len(p) != 4 or min(p) < 0:
        raise NodeError(f"bad pads {p}")
    pads = [(int(p[0]), int(p[2])), (int(p[1]), int(p[3]))]
    if any(pads[i][0] + pads[i][1] >= full[i] for i in range(2)):
        raise NodeError(f"pads {p} crop the whole output")
    return pads


HANDLERS = {"Conv": conv, "ConvTranspose": conv_transpose}
