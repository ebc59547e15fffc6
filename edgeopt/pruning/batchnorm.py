"""BatchNormalization back in for fine-tuning: an ONNX export in eval mode folds every BatchNorm into its conv, and
a pruned network without BatchNorm recovers far less in the same epochs (on the Fashion-MNIST ResNet of the pruning
benchmark, one epoch of Torch-Pruning's own fine-tuning reaches 92.5 % with BatchNorm and 90.5 % with it folded).

``with_batchnorm`` rebuilds the model with a BatchNormalization after every conv whose output no BatchNorm reads,
initialized on the conv's measured per-channel mean and variance so that it is the identity at inference
(gamma = sqrt(var + eps), beta = mean, moving mean = mean, moving variance = var) and close to it in training mode.
The TFLite converter folds them into the convs again, so the deployed file has the same ops.

>>> tuned, inserted = with_batchnorm(pruned, batches)  # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np

from .graph import _nodes, _outbound, _tensor_name

CONVS = ("Conv2D", "DepthwiseConv2D", "Conv2DTranspose")
EPSILON = 1e-3


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


def with_batchnorm(model, batches: list[np.ndarray]):
    """(model with BatchNorms inserted, how many) from sample batches of the model's input; (model, 0) when every
    conv already has one."""
    from edgeopt._tf import keras, tf

    k, tf_ = keras(), tf()
    convs = _candidates(model)
    if not convs or not batches:
        return model, 0
    probe = k.Model(model.inputs, [_outbound(layer, model)[0] for layer in convs])
    sums = [None] * len(convs)
    squares = [None] * len(convs)
    for x in batches:
        outs = probe(x, training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for i, o in enumerate(outs):
            a = o.numpy().astype(np.float64).reshape(-1, o.shape[-1])
            sums[i] = a.sum(0) if sums[i] is None else sums[i] + a.sum(0)
            squares[i] = (a * a).sum(0) if squares[i] is None else squares[i] + (a * a).sum(0)
    stats = {}
    for i, layer in enumerate(convs):
        positions = int(np.prod([int(d) for d in probe.outputs[i].shape[1:-1]]))
        total = positions * sum(len(x) for x in batches)
        mean = sums[i] / total
        var = np.maximum(squares[i] / total - mean * mean, 0.0)
        stats[layer.name] = (mean.astype(np.float32), var.astype(np.float32))

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
                bn = k.layers.BatchNormalization(epsilon=EPSILON, name=f"{node.layer.name}_bn")
                flat = [bn(flat[0])]
                bn.set_weights([np.sqrt(var + EPSILON), mean, mean, var])
            olds = node.outputs if isinstance(node.outputs, (list, tuple)) else [node.outputs]
            for old, new in zip(olds, flat):
                mapping[id(old)] = new
    rebuilt = k.Model(new_inputs, [mapping[id(t)] for t in model.outputs], name=model.name)
    return rebuilt, len(convs)
