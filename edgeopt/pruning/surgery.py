"""Surgery: rebuild a functional model without the removed units, with sliced weights (not masks).

The new model has the same layers, names and topology; a conv or Dense creating removed units has fewer filters,
and every layer reading them has the matching input slices removed. It is an ordinary tf_keras model: trainable,
saveable, convertible to INT8 TFLite.

>>> small = prune_model(model, graph, removed={3, 7})  # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np

from .graph import ChannelGraph, _all_outputs, _inbound, _outbound, _tensor_name


def _io(layer, model) -> tuple[list[str], str]:
    ins, out = _inbound(layer, model)[0], _outbound(layer, model)[0]
    return [_tensor_name(t) for t in ins], _tensor_name(out)


def kept_indices(graph: ChannelGraph, removed: set[int]) -> dict[str, np.ndarray]:
    """Channel indices kept in every channel tensor."""
    return {name: graph.kept(name, removed) for name in graph.widths}


def _dense_rows(graph: ChannelGraph, flat: str, keep: dict[str, np.ndarray]) -> np.ndarray:
    """Rows of a Dense kernel after Flatten: an NHWC flatten puts channel c of position (h, w) at (h*W + w)*C + c."""
    src, shape = graph.flatten_inputs[flat]
    channels = shape[-1]
    positions = int(np.prod(shape[:-1]))
    kept = keep[src]
    return (np.arange(positions)[:, None] * channels + kept[None, :]).reshape(-1)


def slice_weights(layer, weights: list[np.ndarray], *, rows: np.ndarray | None, cols: np.ndarray | None,
                  width: int = 0):
    """``layer``'s weights with only input channels ``rows`` and output channels ``cols`` (None: all); ``width``:
    the channels of a per-channel layer before slicing."""
    kind = type(layer).__name__
    if kind == "Conv2DTranspose":  # kernel (kh, kw, out, in)
        kernel = weights[0]
        if rows is not None:
            kernel = kernel[..., rows]
        if cols is not None:
            kernel = kernel[:, :, cols, :]
        return [kernel] + [b if cols is None else b[cols] for b in weights[1:]]
    if kind == "Conv2D":
        kernel = weights[0]
        if rows is not None:
            kernel = kernel[:, :, rows, :]
        if cols is not None:
            kernel = kernel[..., cols]
        return [kernel] + [b if cols is None else b[cols] for b in weights[1:]]
    if kind == "Dense":
        kernel = weights[0]
        if rows is not None:
            kernel = kernel[rows, :]
        if cols is not None:
            kernel = kernel[:, cols]
        return [kernel] + [b if cols is None else b[cols] for b in weights[1:]]
    if kind == "DepthwiseConv2D":  # kernel (kh, kw, C, multiplier), bias (C * multiplier)
        kernel = weights[0]
        channels = rows if rows is not None else (cols if kernel.shape[-1] == 1 else None)
        if channels is not None:
            kernel = kernel[:, :, channels, :]
        return [kernel] + [b if cols is None else b[cols] for b in weights[1:]]
    if cols is None:
        return weights
    # per-channel weights (BatchNormalization, PReLU, LayerNormalization): channels on the last axis
    return [w[..., cols] if w.ndim and w.shape[-1] == width and width > 1 else w for w in weights]


def _if_narrower(kept: np.ndarray | None, width: int) -> np.ndarray | None:
    """``kept`` when it drops channels, else None (an axis that loses nothing is left as it is)."""
    return None if kept is None or len(kept) == width else kept


def prune_model(model, graph: ChannelGraph, removed: set[int]):
    """The model without the units ``removed`` (unit ids of ``graph``); ``model`` is left as it was."""
    from edgeopt._tf import keras

    k = keras()
    keep = kept_indices(graph, removed)

    def clone_layer(layer):
        config = layer.get_config()
        kind = type(layer).__name__
        if layer.name in graph.shuffles:  # (H, W, C) -> (H, W, g, C/g) of a channel shuffle
            g, src, _ = graph.shuffles[layer.name]
            config["target_shape"] = (*tuple(config["target_shape"])[:-2], g, int(len(keep[src])) // g)
        elif kind == "Slice":
            names, out = _io(layer, model)
            src = names[0]
            if src in keep and out in keep:
                begin = int(config["begin"][-1])
                new_begin = int(np.sum(keep[src] < begin))
                config["begin"] = [*list(config["begin"])[:-1], new_begin]
                config["end"] = [*list(config["end"])[:-1], new_begin + int(len(keep[out]))]
        elif kind == "Split":
            pieces = [_tensor_name(t) for t in _all_outputs(layer, model)[0]]
            if all(p in keep for p in pieces):
                config["sizes"] = [int(len(keep[p])) for p in pieces]
        elif kind == "GroupNormalization":
            _, out = _io(layer, model)
            if out in keep and config["groups"] == graph.widths[out]:
                config["groups"] = int(len(keep[out]))
        if kind in ("Conv2D", "Conv2DTranspose", "Dense", "Reshape", "ConstantOp") and layer.name not in graph.shuffles:
            _, out = _io(layer, model)
            if out in keep and kind == "Reshape":  # (N, C) -> (N, 1, 1, C), or the last Reshape of a shuffle
                config["target_shape"] = (*tuple(config["target_shape"])[:-1], int(len(keep[out])))
            elif out in keep and kind == "ConstantOp":
                if config["shape"] and config["shape"][-1] == graph.widths[out] and graph.widths[out] > 1:
                    config["shape"] = [*config["shape"][:-1], int(len(keep[out]))]  # one constant per channel
            elif out in keep:
                config["units" if kind == "Dense" else "filters"] = int(len(keep[out]))
        return layer.__class__.from_config(config)

    small = k.models.clone_model(model, clone_function=clone_layer)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        names, out = _io(layer, model)
        kind = type(layer).__name__
        rows = cols = None
        if kind == "DepthwiseConv2D":
            src = names[0]
            rows = _if_narrower(keep.get(src), graph.widths.get(src, 0))
            cols = _if_narrower(keep.get(out), graph.widths.get(out, 0))
        elif kind in ("Conv2D", "Conv2DTranspose", "Dense"):
            src = names[0]
            if src in keep:
                rows = _if_narrower(keep[src], graph.widths[src])
                groups = getattr(layer, "groups", 1) if kind == "Conv2D" else 1
                if rows is not None and groups > 1:  # the kernel holds one group's inputs: the kept positions
                    per_in = graph.widths[src] // groups
                    rows = rows[rows < per_in]
            elif src in graph.flatten_inputs and _if_narrower(keep[graph.flatten_inputs[src][0]],
                                                                graph.widths[graph.flatten_inputs[src][0]]) is not None:
                rows = _dense_rows(graph, src, keep)
            cols = _if_narrower(keep.get(out), graph.widths.get(out, 0))
        elif out in keep:
            cols = _if_narrower(keep[out], graph.widths[out])
        if rows is None and cols is None:
            small.get_layer(layer.name).set_weights(weights)  # nothing removed here
            continue
        sliced = slice_weights(layer, weights, rows=rows, cols=cols, width=graph.widths.get(out, 0))
        small.get_layer(layer.name).set_weights(sliced)
    return small


def zero_removed(model, graph: ChannelGraph, removed: set[int]):
    """A copy of ``model`` in which every removed unit's activations are 0: each layer that writes a removed
    channel gets that channel's weights, bias, BatchNorm scale, shift and mean, and per-channel constant set to 0.
    Where every function on the way keeps 0 at 0 (or is multiplied by such a channel: a sigmoid gate), its outputs
    equal the pruned model's, which is how the surgery is tested; after a function with f(0) != 0 (a HardSigmoid
    alone, a clip above 0) they differ by that channel's constant contribution."""
    from edgeopt._tf import keras

    k = keras()
    copy = k.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        _, out = _io(layer, model)
        if out not in graph.widths:
            continue
        units = graph.units_of(out)
        gone = np.array([int(u) in removed for u in units])
        if not gone.any():
            continue
        new = [np.array(w) for w in weights]
        kind = type(layer).__name__
        if kind == "Conv2DTranspose":
            new[0][:, :, gone, :] = 0.0
            for b in new[1:]:
                b[gone] = 0.0
        elif kind in ("Conv2D", "Dense"):
            new[0][..., gone] = 0.0
            for b in new[1:]:
                b[gone] = 0.0
        elif kind == "DepthwiseConv2D":  # output c*m + j is kernel[..., c, j]
            new[0][:, :, gone.reshape(new[0].shape[2], new[0].shape[3])] = 0.0
            for b in new[1:]:
                b[gone] = 0.0
        elif kind == "GroupNormalization":  # one channel per group: gamma = beta = 0 gives 0
            for w in new:
                if w.ndim and w.shape[-1] == len(gone):
                    w[..., gone] = 0.0
        elif kind == "ConstantOp" and new[0].ndim and new[0].shape[-1] == len(gone) and len(gone) > 1:
            new[0][..., gone] = 0.0  # x + c with c per channel: the channel's constant goes too
        elif kind == "BatchNormalization":
            # output = gamma * (x - mean) / sqrt(var + eps) + beta: gamma = beta = 0 gives 0
            # without a scale (gamma), zeroing the moving mean and beta gives 0 as well
            names = [w.name.split("/")[-1].split(":")[0] for w in layer.weights]
            for name, w in zip(names, new):
                if name in ("gamma", "beta", "moving_mean"):
                    w[gone] = 0.0
        copy.get_layer(layer.name).set_weights(new)
    return copy
