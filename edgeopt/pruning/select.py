"""Which units to remove: importance per unit, and widths that meet a channel-ratio or a MACs target.

Importance (summed over every layer of a unit's group): ``l1``/``l2``, the norm of each filter that creates the
unit plus the norm of the weights that read it (the input-channel slices of the convs and Dense layers after it,
as Torch-Pruning's magnitude importance sums over a whole dependency group); ``bn``, the absolute BatchNorm scale
of the unit's channels (network slimming; L1 where a group has no BatchNorm). Scores are divided by their group's
mean, so one global threshold can rank units of different groups.

Widths are rounded up to multiples of ``round_to`` (channel counts that XNNPACK and GPU kernels handle best) and
never below it.

>>> round_up(13, 8, 64)
16
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .graph import ChannelGraph, Group, _inbound, _outbound, _tensor_name


def round_up(count: int, multiple: int, width: int) -> int:
    """``count`` rounded up to a multiple of ``multiple``, at least ``multiple``, at most ``width``."""
    if multiple <= 1:
        return max(1, min(count, width))
    return min(width, max(multiple, int(math.ceil(count / multiple)) * multiple))


def importance(graph: ChannelGraph, *, criterion: str = "l1") -> dict[int, float]:
    """Score per unit (unnormalized): higher is more important."""
    model = graph.model
    scores: dict[int, float] = {}
    bn: dict[int, float] = {}
    for layer in model.layers:
        kind = type(layer).__name__
        if criterion in ("l1", "l2") and kind in ("Conv2D", "DepthwiseConv2D", "Dense"):
            _add_reader_norms(graph, layer, criterion, scores)
        outs = _outbound(layer, model)
        if not outs:
            continue
        out = _tensor_name(outs[0])
        if out not in graph.widths:
            continue
        units = graph.units_of(out)
        if kind in ("Conv2D", "Conv2DTranspose", "Dense"):
            kernel = layer.get_weights()[0]
            if kind == "Conv2DTranspose":
                kernel = np.moveaxis(kernel, 2, -1)  # (kh, kw, out, in) -> out last
            flat = kernel.reshape(-1, kernel.shape[-1])
            norms = np.abs(flat).sum(0) if criterion in ("l1", "bn") else np.sqrt((flat ** 2).sum(0))
            for u, v in zip(units, norms):
                scores[int(u)] = scores.get(int(u), 0.0) + float(v)
        elif kind == "BatchNormalization" and layer.scale:
            gamma = layer.get_weights()[0]
            for u, v in zip(units, np.abs(gamma)):
                bn[int(u)] = bn.get(int(u), 0.0) + float(v)
    if criterion == "bn":
        return {u: bn.get(u, s) for u, s in scores.items()}
    return scores


def _add_reader_norms(graph: ChannelGraph, layer, criterion: str, scores: dict[int, float]) -> None:
    """Add to each unit the norm of the weights that read it: the input-channel slice of a conv or Dense layer
    (a Dense after a Flatten reads each channel at every position), a depthwise conv's filters of that channel.
    A channel that the next layers hardly read matters little, whatever the size of the filter that makes it."""
    model = graph.model
    ins = _inbound(layer, model)
    if len(ins) != 1 or len(ins[0]) != 1:
        return
    src = _tensor_name(ins[0][0])
    kernel = layer.get_weights()[0]
    if src in graph.widths and type(layer).__name__ != "Dense":
        per_channel = np.moveaxis(kernel, 2, 0).reshape(kernel.shape[2], -1)  # (kh, kw, cin, ...) -> cin rows
        units = graph.units_of(src)
    elif type(layer).__name__ == "Dense" and src in graph.flatten_inputs:
        four_d, shape = graph.flatten_inputs[src]
        if four_d not in graph.widths or kernel.shape[0] != int(np.prod(shape)):
            return
        channels = shape[-1]
        per_channel = np.moveaxis(kernel.reshape(-1, channels, kernel.shape[-1]), 1, 0).reshape(channels, -1)
        units = graph.units_of(four_d)
    elif type(layer).__name__ == "Dense" and src in graph.widths:
        per_channel, units = kernel, graph.units_of(src)
    else:
        return
    if len(per_channel) != len(units):  # a grouped conv reads C/groups channels per filter: left out
        return
    norms = np.abs(per_channel).sum(1) if criterion == "l1" else np.sqrt((per_channel ** 2).sum(1))
    for u, v in zip(units, norms):
        scores[int(u)] = scores.get(int(u), 0.0) + float(v)


def normalized(graph: ChannelGraph, scores: dict[int, float]) -> dict[int, float]:
    out = {}
    for g in graph.groups:
        values = np.array([scores.get(u, 0.0) for u in g.units])
        mean = float(values.mean()) if len(values) and values.mean() > 0 else 1.0
        for u, v in zip(g.units, values):
            out[u] = float(v) / mean
    return out


@dataclass(frozen=True)
class Choice:
    """The widths chosen: per group, the units kept; the removed units; the MACs estimate."""

    keep: dict[str, list[int]]  # group name -> kept units (most important first)
    removed: frozenset
    macs: int


def prunable(graph: ChannelGraph, *, skip: tuple[str, ...] = ()) -> list[Group]:
    """The groups that may lose channels; a name in ``skip`` that is no conv or Dense of the model is an error."""
    sources = {s for g in graph.groups for s in g.sources}
    unknown = [name for name in skip if name not in sources]
    if unknown:
        from edgeopt.errors import RecipeError

        raise RecipeError(f"--skip-layers: {', '.join(unknown)} is no conv or Dense layer of the model",
                          hint=f"layers that create channels: {', '.join(sorted(sources)[:12])}"
                               f"{', ...' if len(sources) > 12 else ''} (`edgeopt inspect MODEL.keras` lists all)")
    return [g for g in graph.groups if g.fixed is None and not any(s in skip for s in g.sources) and g.width > 1]


def _ranked(group: Group, scores: dict[int, float]) -> list[int]:
    return sorted(group.units, key=lambda u: -scores.get(u, 0.0))


def choose_ratio(graph: ChannelGraph, scores: dict[int, float], *, ratio: float, round_to: int = 8,
                 skip: tuple[str, ...] = ()) -> dict[str, list[int]]:
    """Each prunable group keeps its ``1 - ratio`` most important units (rounded up to ``round_to``)."""
    keep = {}
    for g in prunable(graph, skip=skip):
        n = round_up(int(math.ceil(g.width * (1.0 - ratio))), g.step(round_to), g.width)
        keep[g.name] = _ranked(g, scores)[:n]
    return keep


def choose_macs(graph: ChannelGraph, scores: dict[int, float], macs_of, *, target: float, max_ratio: float = 0.9,
                round_to: int = 8, skip: tuple[str, ...] = (),
                floors: dict[str, int] | None = None) -> dict[str, list[int]]:
    """The widths with the highest threshold on normalized importance whose model has at most ``target`` MACs:
    a group keeps the units at or above the threshold, rounded up to ``round_to``, and at least ``1 - max_ratio``
    of its width (of ``floors[group]`` channels, when given: the floor of the unpruned model, so that pruning in
    steps does not compound it). ``macs_of(removed)`` estimates the MACs without the units ``removed``."""
    norm = normalized(graph, scores)
    groups = prunable(graph, skip=skip)
    ranked = {g.name: _ranked(g, scores) for g in groups}

    def widths_at(threshold: float) -> dict[str, list[int]]:
        keep = {}
        for g in groups:
            n = sum(1 for u in g.units if norm[u] >= threshold)
            floor = int(math.ceil(g.width * (1.0 - max_ratio)))
            if floors is not None and g.name in floors:
                floor = min(g.width, floors[g.name])
            keep[g.name] = ranked[g.name][:round_up(max(n, floor), g.step(round_to), g.width)]
        return keep

    lo, hi = 0.0, max(norm.values(), default=1.0) + 1.0
    best = widths_at(hi)  # as small as the floors allow
    for _ in range(40):
        mid = (lo + hi) / 2
        keep = widths_at(mid)
        if macs_of(removed_units(graph, keep)) <= target:
            best, hi = keep, mid
        else:
            lo = mid
    return best


def removed_units(graph: ChannelGraph, keep: dict[str, list[int]]) -> frozenset:
    """The units the widths ``keep`` remove (never every channel of one tensor)."""
    gone = set()
    for g in graph.groups:
        if g.name in keep:
            kept = set(keep[g.name])
            gone.update(u for u in g.units if u not in kept)
    return graph.keep_every_tensor(gone)


def macs_estimator(graph: ChannelGraph, macs_by_layer: dict[str, int]):
    """``macs_of(removed)``: the model's MACs without the units ``removed``, scaling each layer's MACs by its kept
    input and output channels (convs and Dense: both; depthwise: its channels; others unchanged)."""
    model = graph.model
    entries = []  # (macs, input tensor or None, output tensor or None)
    for layer in model.layers:
        macs = int(macs_by_layer.get(layer.name, 0))
        if not macs or not _inbound(layer, model):
            continue
        kind = type(layer).__name__
        src = _tensor_name(_inbound(layer, model)[0][0])
        out = _tensor_name(_outbound(layer, model)[0])
        if kind in ("Conv2D", "Conv2DTranspose", "Dense"):
            if src in graph.flatten_inputs:
                src = graph.flatten_inputs[src][0]
            entries.append((macs, src if src in graph.widths else None, out if out in graph.widths else None))
        elif kind == "DepthwiseConv2D":
            entries.append((macs, None, out if out in graph.widths else None))
        else:
            entries.append((macs, None, None))
    unit_arrays = {name: graph.units_of(name) for name in graph.widths}

    def fraction(tensor, removed) -> float:
        if tensor is None or not removed:
            return 1.0
        units = unit_arrays[tensor]
        return float(np.mean([int(u) not in removed for u in units]))

    def macs_of(removed) -> int:
        return int(sum(m * fraction(i, removed) * fraction(o, removed) for m, i, o in entries))

    return macs_of
