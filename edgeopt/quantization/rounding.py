"""Weight repairs on the Keras graph before INT8 conversion: rounding that compensates its own error, bias
correction and cross-layer equalization.

The converter quantizes each weight tensor to int8 with one scale per output channel, ``s = max|w| / 127``, by
rounding every weight to the nearest step. The repairs here change the float weights so that what the converter
then computes is better:

* **error-compensating rounding** (the column-by-column scheme of OBQ/GPTQ, Frantar et al. 2022): the weights of
  one output channel are rounded one input at a time, and the rounding error of each is spread over the inputs not
  yet rounded, weighted by the correlation of the layer's inputs on the calibration samples (``H = X Xᵀ``), so the
  layer's *output* error is minimised instead of each weight's. The result is written back as float weights that
  lie on the converter's own grid (each channel keeps its largest weight, hence its scale), so the converter's
  rounding reproduces it exactly;
* **bias correction** (Nagel et al. 2019, DFQ): the mean shift the quantized weights cause in each output channel,
  ``(Q(W) - W) · E[x]`` with ``E[x]`` the mean of the layer's input rows on the calibration samples (per kernel
  tap, the zeros of SAME padding included), is taken out of the bias;
* **cross-layer equalization** (DFQ): for a conv whose only reader is a ReLU, LeakyReLU or zero padding (or a
  ReLU6, which DFQ replaces by a ReLU; here only channels far from its clip on the calibration samples are scaled)
  feeding one other conv, output channel ``i`` of the first is
  divided by ``s_i`` and input channel ``i`` of the second multiplied by it, ``s_i = sqrt(r1_i / r2_i)`` from the
  per-channel weight ranges. The float model is unchanged (ReLU is positively homogeneous); the weight ranges per
  channel become equal, and so do the activation ranges the converter calibrates per tensor.

Each function returns a new model (a clone with the same layer names) and a record; the input model is left as it
is. Only plain (ungrouped) Conv2D, DepthwiseConv2D and Dense layers are touched: a layer the converter folds a
following BatchNormalization into is skipped, since its converted weights are not its Keras weights.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .._tf import keras, tf

DAMPING = 0.01  # of the mean diagonal of H, added to it (GPTQ's default)
BATCH = 8  # calibration samples per forward pass when collecting layer inputs
SAMPLES = 64  # at most this many calibration samples feed the input statistics
MAX_INPUTS = 4096  # layers with more inputs per output channel keep the converter's rounding (H would be d x d)


def _kinds():
    L = keras().layers
    return L.Conv2D, L.DepthwiseConv2D, L.Dense


def _is_target(layer) -> bool:
    conv, dw, dense = _kinds()
    if isinstance(layer, keras().layers.Conv2DTranspose) or getattr(layer, "data_format", "channels_last") != \
            "channels_last":
        return False
    if isinstance(layer, dw):
        return True
    if isinstance(layer, conv):
        return getattr(layer, "groups", 1) == 1
    return isinstance(layer, dense)


def _readers(model) -> dict[str, list]:
    """Layer name → the layers that read its output."""
    out: dict[str, list] = {}
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for inbound in node.inbound_layers if isinstance(node.inbound_layers, list) else [node.inbound_layers]:
                out.setdefault(inbound.name, []).append(layer)
    return out


def targets(model) -> list:
    """The layers the weight repairs apply to: plain convs and dense layers whose output no BatchNormalization
    reads (the converter would fold it into their weights)."""
    bn = keras().layers.BatchNormalization
    readers = _readers(model)
    return [layer for layer in model.layers if _is_target(layer) and len(layer._inbound_nodes) == 1
            and not any(isinstance(r, bn) for r in readers.get(layer.name, []))]


def clone(model):
    """A copy of ``model`` with its own weights and the same layer names."""
    k = keras()
    copy = k.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for attr in ("_edgeopt_origins",):
        if hasattr(model, attr):
            setattr(copy, attr, getattr(model, attr))
    return copy


# ---------------------------------------------------------------------------------------------- input statistics


def _patches(layer, x: np.ndarray) -> np.ndarray:
    """The rows the layer multiplies by its weights: (positions, k*k*cin) for a Conv2D (in the kernel's
    (kh, kw, cin) order), (positions, k*k, C) for a DepthwiseConv2D, (rows, features) for a Dense."""
    conv, dw, dense = _kinds()
    T = tf()
    if isinstance(layer, dense):
        return x.reshape(-1, x.shape[-1])
    kh, kw = layer.kernel_size
    sh, sw = layer.strides
    dh, dw_ = layer.dilation_rate
    if (kh, kw) == (1, 1) and (dh, dw_) == (1, 1):
        rows = x[:, ::sh, ::sw, :]
        rows = rows.reshape(-1, x.shape[-1])
        return rows[:, None, :] if isinstance(layer, dw) else rows
    p = T.image.extract_patches(T.constant(x), sizes=[1, kh, kw, 1], strides=[1, sh, sw, 1],
                                rates=[1, dh, dw_, 1], padding=layer.padding.upper()).numpy()
    c = x.shape[-1]
    p = p.reshape(-1, kh * kw, c)  # extract_patches orders each patch (kh, kw, c)
    return p if isinstance(layer, dw) else p.reshape(-1, kh * kw * c)


def _row_sums(layer, x: np.ndarray) -> tuple[np.ndarray, int]:
    """The sum of the rows :func:`_patches` gives (in the same layout: (k*k*cin,) for a Conv2D, (k*k, C) for a
    DepthwiseConv2D, (features,) for a Dense) and their count, from one strided slice of the padded input per
    kernel tap instead of the patches themselves."""
    conv, dw, dense = _kinds()
    if isinstance(layer, dense):
        return x.reshape(-1, x.shape[-1]).sum(0, dtype=np.float64), int(np.prod(x.shape[:-1]))
    kh, kw = layer.kernel_size
    sh, sw = layer.strides
    dh, dw_ = layer.dilation_rate
    n, h, w, c = x.shape
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw_ + 1  # the kernel's extent
    if layer.padding == "same":
        oh, ow = -(-h // sh), -(-w // sw)
        ph, pw = max((oh - 1) * sh + eh - h, 0), max((ow - 1) * sw + ew - w, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (h - eh) // sh + 1, (w - ew) // sw + 1
    taps = np.stack([x[:, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw_:j * dw_ + (ow - 1) * sw + 1:sw, :]
                     .sum((0, 1, 2), dtype=np.float64) for i in range(kh) for j in range(kw)])  # (k*k, C)
    return (taps if isinstance(layer, dw) else taps.reshape(-1)), n * oh * ow


def input_statistics(model, layers: Sequence, calib: Sequence[np.ndarray], *, hessians: bool = True) -> dict:
    """Per layer name: ``patch_mean``, the mean of the rows the layer multiplies (:func:`_patches`: each kernel
    tap's input over the output positions, the zeros of SAME padding included and strides accounted for), so that
    ``W · patch_mean`` is the mean of the layer's output before the bias; and, with ``hessians``, ``H`` (Σ xxᵀ
    over those rows, and ``n`` rows): (d, d) for Conv2D/Dense, (C, k*k, k*k) for DepthwiseConv2D."""
    from ..console import track

    k = keras()
    _, dw, _ = _kinds()
    probe = k.Model(model.inputs, [layer.input for layer in layers])
    n = min(len(calib[0]), SAMPLES)
    stats = {layer.name: {"rows": None, "H": None, "n": 0} for layer in layers}
    for start in track(range(0, n, BATCH), f"measuring the inputs of {len(layers)} layers", total=-(-n // BATCH)):
        batch = [np.asarray(a[start:min(n, start + BATCH)], np.float32) for a in calib]
        outs = probe(batch if len(batch) > 1 else batch[0], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for layer, out in zip(layers, outs):
            x = np.asarray(out, np.float32)
            s = stats[layer.name]
            total, count = _row_sums(layer, x)
            s["rows"] = total if s["rows"] is None else s["rows"] + total
            s["n"] += count
            if not hessians:
                continue
            rows = _patches(layer, x).astype(np.float64)
            h = np.einsum("nkc,nlc->ckl", rows, rows) if isinstance(layer, dw) else rows.T @ rows
            s["H"] = h if s["H"] is None else s["H"] + h
    return {name: {"patch_mean": s["rows"] / max(s["n"], 1), "H": s["H"], "n": s["n"]} for name, s in stats.items()}


# ------------------------------------------------------------------------------------------------ the int8 grid


def _grid(w: np.ndarray, per_channel: bool = True) -> np.ndarray:
    """Per-row step of the converter's symmetric int8 grid for ``w`` (rows = output channels): one per channel, or
    the whole tensor's for per-tensor weights."""
    m = np.max(np.abs(w), axis=1)
    if not per_channel:
        m = np.full_like(m, np.max(m) if m.size else 0.0)
    return np.where(m > 0, m / 127.0, 1.0)


def _round(w: np.ndarray, step: np.ndarray) -> np.ndarray:
    return np.clip(np.round(w / step[:, None]), -127, 127) * step[:, None]


def _rows(layer, kernel: np.ndarray) -> np.ndarray:
    """The kernel as (output channels, inputs per output channel)."""
    _, dw, dense = _kinds()
    if isinstance(layer, dense):
        return kernel.T
    if isinstance(layer, dw):  # (kh, kw, C, m) → (C*m, kh*kw)
        kh, kw, c, m = kernel.shape
        return kernel.reshape(kh * kw, c * m).T
    return kernel.reshape(-1, kernel.shape[-1]).T  # (kh, kw, cin, cout) → (cout, kh*kw*cin)


def _kernel(layer, rows: np.ndarray, shape) -> np.ndarray:
    _, dw, dense = _kinds()
    if isinstance(layer, dense):
        return rows.T.reshape(shape)
    if isinstance(layer, dw):
        kh, kw, c, m = shape
        return rows.T.reshape(kh, kw, c, m)
    return rows.T.reshape(shape)


def _inverse_factor(h: np.ndarray) -> np.ndarray | None:
    """Upper Cholesky factor ``u`` of inv(H) (inv(H) = uᵀu) with GPTQ's damping, H one matrix or a stack; None
    when H is not positive definite even so."""
    h = h.astype(np.float64).copy()
    idx = np.arange(h.shape[-1])
    diag = h[..., idx, idx]
    diag[diag <= 0] = 1.0  # an input that is always zero: its weights cannot matter, any rounding will do
    h[..., idx, idx] = diag + DAMPING * np.mean(diag, axis=-1, keepdims=True)
    try:
        return np.swapaxes(np.linalg.cholesky(np.linalg.inv(h)), -1, -2)
    except np.linalg.LinAlgError:
        return None


def _gptq(w: np.ndarray, h: np.ndarray, step: np.ndarray, *, block: int = 128) -> np.ndarray:
    """Rows of ``w`` rounded onto ``step``'s grid column by column, each column's rounding error compensated in the
    columns after it through the inverse of ``h`` (OBQ/GPTQ, with GPTQ's lazy block updates). Returns the
    quantized values (on the grid)."""
    u = _inverse_factor(h)
    if u is None:
        return _round(w, step)
    w = w.astype(np.float64).copy()
    d = w.shape[1]
    q = np.empty_like(w)
    for i1 in range(0, d, block):
        i2 = min(i1 + block, d)
        part, err = w[:, i1:i2].copy(), np.empty((w.shape[0], i2 - i1))
        for i in range(i2 - i1):
            col = part[:, i]
            qi = np.clip(np.round(col / step), -127, 127) * step
            q[:, i1 + i] = qi
            err[:, i] = (col - qi) / u[i1 + i, i1 + i]
            part[:, i:] -= np.outer(err[:, i], u[i1 + i, i1 + i:i2])
        w[:, i2:] -= err @ u[i1:i2, i2:]
    return q


def _gptq_depthwise(w: np.ndarray, h: np.ndarray, step: np.ndarray) -> np.ndarray:
    """:func:`_gptq` for a depthwise kernel, all channels at once: row ``c`` of ``w`` (C*m, k*k) reads input
    channel ``c // m``, whose (k*k, k*k) correlation is ``h[c // m]``."""
    mult = w.shape[0] // h.shape[0]
    u = _inverse_factor(np.repeat(h, mult, axis=0))
    if u is None:
        return _round(w, step)
    w = w.astype(np.float64).copy()
    q = np.empty_like(w)
    for i in range(w.shape[1]):
        qi = np.clip(np.round(w[:, i] / step), -127, 127) * step
        q[:, i] = qi
        err = (w[:, i] - qi) / u[:, i, i]
        w[:, i + 1:] -= err[:, None] * u[:, i, i + 1:]
    return q


def _on_grid(q: np.ndarray, w: np.ndarray, per_channel: bool = True) -> np.ndarray:
    """Keep each row's (per-tensor: the tensor's) largest original weight, at ±127 steps, so the converter finds
    the same scale."""
    q = q.copy()
    if per_channel:
        arg = np.argmax(np.abs(w), axis=1)
        rows = np.arange(w.shape[0])
        q[rows, arg] = w[rows, arg]
    else:
        at = np.unravel_index(np.argmax(np.abs(w)), w.shape)
        q[at] = w[at]
    return q


def compensated_rounding(model, calib: Sequence[np.ndarray], *, per_channel: bool = True,
                         stats: dict | None = None):
    """A clone of ``model`` whose target layers' weights are rounded onto the converter's int8 grid (per-channel,
    or per-tensor) with error compensation (module docstring); (model, record)."""
    from ..console import track

    _, dw, _ = _kinds()
    out = clone(model)
    layers = [layer for layer in targets(out) if _rows(layer, layer.get_weights()[0]).shape[1] <= MAX_INPUTS]
    if not layers:
        return out, {"layers": 0}
    stats = stats or input_statistics(out, layers, calib)
    changed = 0
    for layer in track(layers, f"rounding the weights of {len(layers)} layers", total=len(layers)):
        weights = layer.get_weights()
        kernel = weights[0]
        w = _rows(layer, kernel).astype(np.float64)
        step = _grid(w, per_channel)
        h = stats[layer.name]["H"]
        if isinstance(layer, dw):
            q = _gptq_depthwise(w, h, step)
        else:
            q = _gptq(w, h, step)
        q = _on_grid(q, w, per_channel)
        changed += int(np.count_nonzero(np.abs(q - _round(w, step)) > 1e-12 * step[:, None]))
        layer.set_weights([_kernel(layer, q, kernel.shape).astype(kernel.dtype)] + weights[1:])
    return out, {"layers": len(layers), "weights_rounded_otherwise": changed}


def bias_correction(model, calib: Sequence[np.ndarray], *, reference=None, per_channel: bool = True,
                    stats: dict | None = None):
    """A clone of ``model`` whose target layers' biases absorb the mean output shift of their INT8 weights,
    ``(Q(W) - W_ref) · E[x]``: ``Q(W)`` the converter's rounding of the layer's weights, ``W_ref`` the same layer's
    weights in ``reference`` (default: ``model``; pass the model before :func:`compensated_rounding` to correct what
    that rounding leaves), ``E[x]`` the mean of the rows the kernel multiplies on the calibration samples (per
    kernel tap, so the zeros SAME padding adds at the borders count); (model, record). A layer without a bias is
    skipped."""
    _, dw, dense = _kinds()
    out = clone(model)
    layers = [layer for layer in targets(out) if getattr(layer, "use_bias", False)]
    if not layers:
        return out, {"layers": 0}
    stats = stats or input_statistics(out, layers, calib, hessians=False)
    shift = []
    for layer in layers:
        weights = layer.get_weights()
        w = _rows(layer, weights[0]).astype(np.float64)
        ref = w if reference is None else _rows(layer, reference.get_layer(layer.name).get_weights()[0])
        err = _round(w, _grid(w, per_channel)) - ref  # (out, inputs per output)
        mean = stats[layer.name]["patch_mean"]  # (inputs per output) in the kernel's order; (k*k, C) depthwise
        if isinstance(layer, dw):  # output channel c*m + j reads input channel c
            delta = np.sum(err * np.repeat(mean.T, w.shape[0] // mean.shape[1], axis=0), axis=1)
        else:
            delta = err @ mean
        weights[1] = (weights[1] - delta).astype(weights[1].dtype)
        shift.append(float(np.max(np.abs(delta))))
        layer.set_weights(weights)
    return out, {"layers": len(layers), "largest_shift": max(shift)}


# ------------------------------------------------------------------------------------ cross-layer equalization

RELU6_HEADROOM = 2.0  # a ReLU6 channel is scaled only if twice its largest calibration input stays below 6


def _inbound(layer):
    nodes = layer._inbound_nodes
    if len(nodes) != 1:
        return []
    inbound = nodes[0].inbound_layers
    return inbound if isinstance(inbound, list) else [inbound]


def _positive_homogeneous(layer) -> str | None:
    """'relu', 'relu6' or 'linear' when ``layer`` (between two convs) commutes with a positive per-channel scale
    (ReLU6 only where it does not clip, checked on data), else None."""
    L = keras().layers
    if isinstance(layer, L.ZeroPadding2D):
        return "linear"
    if isinstance(layer, L.LeakyReLU):
        return "linear"
    if isinstance(layer, L.ReLU):
        if float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
            return None
        return "relu" if layer.max_value is None else ("relu6" if float(layer.max_value) == 6.0 else None)
    if isinstance(layer, L.Activation):
        name = getattr(layer.activation, "__name__", "")
        return {"relu": "relu", "linear": "linear", "relu6": "relu6"}.get(name)
    return None


def equalization_pairs(model) -> list[tuple]:
    """(first conv, [layers between], second conv) chains: the first conv's output reaches only the second through
    layers that commute with a positive per-channel scale, each with one reader."""
    conv, dw, _ = _kinds()
    readers = _readers(model)
    ok = {layer.name for layer in targets(model)}
    # a layer whose output is also a model output would change that output when scaled
    outputs = {id(t) for t in model.outputs}
    exposed = {layer.name for layer in model.layers
               for node in layer._inbound_nodes for t in tf().nest.flatten(node.outputs) if id(t) in outputs}
    pairs = []
    for first in model.layers:
        if first.name not in ok or not isinstance(first, (conv, dw)) or first.name in exposed:
            continue
        act = getattr(getattr(first, "activation", None), "__name__", "linear")
        if act not in ("linear", "relu"):
            continue
        between, node = [], first
        while True:
            nxt = readers.get(node.name, [])
            if len(nxt) != 1 or len(_inbound(nxt[0])) != 1:
                break
            node = nxt[0]
            if node.name in ok and isinstance(node, (conv, dw)) and \
                    getattr(getattr(node, "activation", None), "__name__", "linear") in ("linear", "relu", "relu6"):
                pairs.append((first, between, node))
                break
            if _positive_homogeneous(node) is None or node.name in exposed:
                break
            between.append(node)
    return pairs


def _out_ranges(layer) -> np.ndarray:
    """Largest |weight| per output channel."""
    return np.max(np.abs(_rows(layer, layer.get_weights()[0])), axis=1)


def _in_ranges(layer) -> np.ndarray:
    """Largest |weight| per input channel."""
    # (kh, kw, cin, cout) for a Conv2D, (kh, kw, C, multiplier) for a DepthwiseConv2D
    return np.max(np.abs(layer.get_weights()[0]), axis=(0, 1, 3))


def _scale_out(layer, s: np.ndarray) -> None:
    """Divide output channel i of ``layer`` (weights and bias) by s[i]."""
    _, dw, _ = _kinds()
    weights = layer.get_weights()
    if isinstance(layer, dw):
        kh, kw, c, m = weights[0].shape
        weights[0] = weights[0] / s.reshape(c, m)[None, None]
    else:
        weights[0] = weights[0] / s[None, None, None, :]
    if len(weights) > 1:
        weights[1] = weights[1] / s
    layer.set_weights([w.astype(np.float32) for w in weights])


def _scale_in(layer, s: np.ndarray) -> None:
    """Multiply the weights reading input channel i of ``layer`` by s[i]."""
    weights = layer.get_weights()
    weights[0] = weights[0] * s[None, None, :, None]
    layer.set_weights([w.astype(np.float32) for w in weights])


def equalize(model, calib: Sequence[np.ndarray], *, sweeps: int = 2):
    """A clone of ``model`` with cross-layer equalization over every :func:`equalization_pairs` chain (module
    docstring); (model, record). A ReLU6 channel whose input reaches 3 on the calibration samples keeps s = 1, and
    the others keep ``6 s`` at least twice their largest input, so a ReLU6 clips where it did not before only on
    inputs twice as large as any calibration one (the measured fidelity against FP32 shows what that costs)."""
    out = clone(model)
    pairs = equalization_pairs(out)
    if not pairs:
        return out, {"pairs": 0}
    limits: dict[str, np.ndarray] = {}
    relu6 = [(first, between) for first, between, _ in pairs
             if any(_positive_homogeneous(b) == "relu6" for b in between)]
    if relu6:  # the largest pre-activation per channel, for each first conv feeding a ReLU6
        k = keras()
        probe = k.Model(out.inputs, [first.output for first, _ in relu6])
        n = min(len(calib[0]), SAMPLES)
        peak = [None] * len(relu6)
        for start in range(0, n, BATCH):
            batch = [np.asarray(a[start:min(n, start + BATCH)], np.float32) for a in calib]
            outs = probe(batch if len(batch) > 1 else batch[0], training=False)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            for j, o in enumerate(outs):
                m = np.max(np.asarray(o), axis=tuple(range(len(o.shape) - 1)))
                peak[j] = m if peak[j] is None else np.maximum(peak[j], m)
        limits = {first.name: p for (first, _), p in zip(relu6, peak)}
    scaled = 0
    for _ in range(sweeps):
        for first, between, second in pairs:
            r1, r2 = _out_ranges(first), _in_ranges(second)
            if r1.shape != r2.shape:
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                s = np.sqrt(r1 / r2)
            s = np.where(np.isfinite(s) & (s > 0), s, 1.0)
            if first.name in limits:
                peak = limits[first.name]
                room = 6.0 / RELU6_HEADROOM
                s = np.where(peak >= room, 1.0, np.maximum(s, peak / room))
                limits[first.name] = peak / s
            s = np.clip(s, 1e-3, 1e3)
            _scale_out(first, s)
            _scale_in(second, s)
            scaled += int(np.count_nonzero(np.abs(s - 1.0) > 1e-6))
    return out, {"pairs": len(pairs), "channels_scaled": scaled}
