"""First-order Taylor importance (Molchanov et al., 2017): how much the loss would change if a channel were
removed, estimated as |activation × gradient| summed over each channel's positions, averaged over samples.

It needs data: a few training batches, and the same loss the fine-tuning uses (labels, or the original model's
outputs). Scores are summed over every tensor that holds a unit's channel (a residual group's convs and BatchNorms),
like the filter-norm criteria.
"""
from __future__ import annotations

import numpy as np

from .graph import ChannelGraph, _outbound, _tensor_name

BATCHES = 8  # batches of the training data that the estimate averages over


def taylor_importance(graph: ChannelGraph, data, objective, *, batch_size: int = 32, seed: int = 0) -> dict[int, float]:
    """Score per unit from ``BATCHES`` training batches of ``data`` (a :class:`edgeopt.train.data.TrainData`)."""
    from edgeopt._tf import keras, tf
    from edgeopt.train.trainer import _per_example

    tf_, k = tf(), keras()
    model = graph.model
    names, tensors = [], []
    for layer in model.layers:  # the tensors written by the layers that create or normalize channels
        if type(layer).__name__ in ("Conv2D", "Conv2DTranspose", "Dense", "BatchNormalization", "DepthwiseConv2D"):
            out = _outbound(layer, model)
            if out and _tensor_name(out[0]) in graph.widths:
                names.append(_tensor_name(out[0]))
                tensors.append(out[0])
    probe = k.Model(model.inputs, [*tensors, *model.outputs])
    totals = [np.zeros(graph.widths[n]) for n in names]
    order = np.random.default_rng([seed, 99]).permutation(data.indices)
    count = 0
    for b in range(min(BATCHES, max(1, len(order) // batch_size))):
        x, labels, *targets = data.reader.read(0, order[b * batch_size:(b + 1) * batch_size])
        with tf_.GradientTape() as tape:
            outs = probe(x, training=False)
            acts, preds = outs[:len(tensors)], list(outs[len(tensors):])
            loss = tf_.reduce_mean(_per_example(tf_, preds, tf_.constant(labels), [tf_.constant(t) for t in targets],
                                                objective))
        grads = tape.gradient(loss, acts)
        for i, (a, g) in enumerate(zip(acts, grads)):
            if g is None:
                continue
            prod = (a * g).numpy()
            axes = tuple(range(1, prod.ndim - 1))
            per_sample = np.abs(prod.sum(axis=axes)) if axes else np.abs(prod)
            totals[i] += per_sample.sum(axis=0)
        count += len(x)
    scores: dict[int, float] = {}
    for name, total in zip(names, totals):
        for unit, value in zip(graph.units_of(name), total / max(count, 1)):
            scores[int(unit)] = scores.get(int(unit), 0.0) + float(value)
    return scores
