"""BatchNormalization back in for fine-tuning: an ONNX export in eval mode folds every BatchNorm into its conv, and
a pruned network without BatchNorm recovers far less in the same epochs (on the Fashion-MNIST ResNet of the pruning
benchmark, one epoch of Torch-Pruning's own fine-tuning reaches 92.5 % with BatchNorm and 90.5 % with it folded).

``with_batchnorm`` rebuilds the model with a BatchNormalization after every conv whose output no BatchNorm reads,
with moving statistics measured on the conv's output. Given the unpruned model, gamma and beta are the per-channel
std and mean the same channels had before pruning, so the BatchNorm maps the pruned network's activations back onto
the distribution the following layers were trained on (what a BatchNorm kept through pruning does in training mode:
it normalizes by the batch and re-applies its trained scale). Without it, each one starts as the identity.
The TFLite converter folds them into the convs again, so the deployed file has the same ops.

>>> tuned, inserted = with_batchnorm(pruned, batches)  # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np

from .graph import _nodes, _outbound, _tensor_name

CONVS = ("Conv2D", "DepthwiseConv2D", "Conv2DTranspose")
EPSILON = 1e-3
# torch's default (its 0.1 is the weight of the new batch): the moving statistics follow the fine-tuned convs within
# tens of steps, where Keras' 0.99 leaves them near their start after a short fine-tuning on a small dataset
MOMENTUM = 0.9


def _candidates(model) -> list:
    """The convs whose (only) output is read by no BatchNormalization and is no model output."""
    readers: dict[str, list[str]] = {}
    for layer in model.layers:
        for node in _nodes(layer, model):
            tensors = node.input_tensors if isinstance(node.input_tensors, (list, tuple)) else [node.input_tensors]
            for t in tensors:
                readers.setdefault(_tensor_name(t), []).append(type(layer).__name__)
    outputs = {_tensor_name(t) for t in model.outputs}
    found = []
    for layer in model.layers:
        if type(layer).__name__ not in CONVS or len(_nodes(layer, model)) != 1:
            continue
        out = _tensor_name(_outbound(layer, model)[0])
        if out in outputs or "BatchNormalization" in readers.get(out, []):
            continue
        found.append(layer)
    return found


def _conv_stats(model, names: list[str], batches: list[np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-channel (mean, variance) of the outputs of the layers ``names`` of ``model`` over ``batches``."""
    from edgeopt._tf import keras

    probe = keras().Model(model.inputs, [_outbound(model.get_layer(n), model)[0] for n in names])
    sums: list = [None] * len(names)
    squares: list = [None] * len(names)
    for x in batches:
        outs = probe(x, training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for i, o in enumerate(outs):
            a = o.numpy().astype(np.float64).reshape(-1, o.shape[-1])
            sums[i] = a.sum(0) if sums[i] is None else sums[i] + a.sum(0)
            squares[i] = (a * a).sum(0) if squares[i] is None else squares[i] + (a * a).sum(0)
    stats = {}
    totals = [int(np.prod([int(d) for d in t.shape[1:-1]])) * sum(len(x) for x in batches) for t in probe.outputs]
    for i, name in enumerate(names):
        mean = sums[i] / totals[i]
        var = np.maximum(squares[i] / totals[i] - mean * mean, 0.0)
        stats[name] = (mean.astype(np.float32), var.astype(np.float32))
    return stats


def with_batchnorm(model, batches: list[np.ndarray], *, reference=None, kept: dict[str, list[int]] | None = None):
    """(model with BatchNorms inserted, how many) from sample batches of the model's input; (model, 0) when every
    conv already has one.

    Without ``reference`` each BatchNorm starts as the identity. With ``reference`` (the unpruned model the convs
    were cut from, and ``kept``: per conv, the indices of its output channels that remain; a conv not listed kept
    them all), each one also maps its conv's channels back onto the distribution they had before pruning
    (gamma = the reference's std, beta = its mean; the moving statistics are the pruned model's): the per-channel
    re-normalization that a BatchNorm kept through pruning gives in training mode."""
    from edgeopt._tf import keras, tf

    k, tf_ = keras(), tf()
    convs = _candidates(model)
    if not convs or not batches:
        return model, 0
    stats = _conv_stats(model, [layer.name for layer in convs], batches)
    targets = dict(stats)
    if reference is not None:
        known = [layer.name for layer in convs if _has_layer(reference, layer.name)]
        for name, (mean, var) in _conv_stats(reference, known, batches).items():
            index = np.asarray((kept or {}).get(name, range(len(mean))), np.int64)
            if len(index) == len(stats[name][0]):
                targets[name] = (mean[index], var[index])

    mapping: dict[int, object] = {}
    new_inputs = []
    for t in model.inputs:
        layer = t._keras_history.layer
        new = k.Input(batch_shape=t.shape, dtype=t.dtype, name=layer.name)
        mapping[id(t)] = new
        new_inputs.append(new)
    inserted = {layer.name: layer for layer in convs}
    depths = sorted(model._nodes_by_depth, reverse=True)

    def mapped(value):
        return mapping[id(value)] if hasattr(value, "_keras_history") else value

    for depth in depths:
        for node in model._nodes_by_depth[depth]:
            if node.is_input:
                continue
            args = tf_.nest.map_structure(mapped, node.call_args)
            kwargs = tf_.nest.map_structure(mapped, node.call_kwargs)
            outputs = node.layer(*args, **kwargs)
            flat = tf_.nest.flatten(outputs)
            if node.layer.name in inserted:
                mean, var = stats[node.layer.name]
                goal_mean, goal_var = targets[node.layer.name]
                bn = k.layers.BatchNormalization(epsilon=EPSILON, momentum=MOMENTUM, name=f"{node.layer.name}_bn")
                flat = [bn(flat[0])]
                bn.set_weights([np.sqrt(goal_var + EPSILON), goal_mean, mean, var])
            olds = node.outputs if isinstance(node.outputs, (list, tuple)) else [node.outputs]
            for old, new in zip(olds, flat):
                mapping[id(old)] = new
    rebuilt = k.Model(new_inputs, [mapping[id(t)] for t in model.outputs], name=model.name)
    return rebuilt, len(convs)


def _has_layer(model, name: str) -> bool:
    try:
        model.get_layer(name)
    except ValueError:
        return False
    return True
