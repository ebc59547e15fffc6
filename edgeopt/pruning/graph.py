"""The channel dependency graph of a tf_keras functional model, in the manner of Torch-Pruning's groups.

Every channel of every 4-D (NHWC) or 2-D tensor is an element; rules per layer kind tie elements that must be
removed together (a conv's output channel *i*, the BatchNorm and ReLU after it, and the next conv's input *i*; both
inputs of an ``Add``; a ``Concatenate`` input's channel *i* and the output's channel *offset + i*). A **unit** is one
class of tied elements: removing it removes one filter from every layer that creates it and one input slice from
every layer that reads it. A **group** is the set of units created by the same layers (a conv, or the convs feeding
one residual ``Add``), the thing ratios and ``round_to`` apply to.

Units that cannot be removed safely are **fixed**, with the reason: the model's inputs and outputs, and channels
that reach a layer the rules do not cover (a Reshape, a grouped conv, a layer of unknown kind).

>>> g = build_graph(model)  # doctest: +SKIP
>>> [(grp.name, grp.width) for grp in g.groups][:2]  # doctest: +SKIP
[('conv1', 32), ('block1_add', 64)]
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# layers that map channel i of their (only) input to channel i of their output, with no weights to slice
PASS_THROUGH = ("ReLU", "Activation", "MaxPooling2D", "AveragePooling2D", "ZeroPadding2D", "Dropout",
                "SpatialDropout2D", "GaussianNoise", "UpSampling2D", "Cropping2D", "LeakyReLU", "ELU", "Softmax",
                "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Identity", "ActivityRegularization",
                # the importer's own elementwise layers
                "UnaryOp", "Clip", "HardSigmoid", "HardSwish", "Resize")
ELEMENTWISE = ("Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average", "BinaryOp")
# layers whose weights are per channel of their input (= output): sliced, never a source of channels
PER_CHANNEL = ("BatchNormalization", "PReLU", "DepthwiseConv2D", "LayerNormalization")
SOURCES = ("Conv2D", "Conv2DTranspose", "Dense")


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class Group:
    """Units created by the same layers: pruned together, ``width`` of them."""

    name: str
    sources: tuple[str, ...]  # the layers whose filters are these units
    units: list[int]  # unit ids (roots), in the first source's channel order
    fixed: str | None = None  # why the group must stay whole, or None

    @property
    def width(self) -> int:
        return len(self.units)


@dataclass
class ChannelGraph:
    """Elements of every channel tensor, their units, the groups, and how each layer reads and writes them."""

    model: object
    offsets: dict[str, int]  # tensor name -> first element id
    widths: dict[str, int]  # tensor name -> channels
    uf: _UnionFind
    groups: list[Group]
    fixed: dict[int, str] = field(default_factory=dict)  # unit -> reason
    flatten_inputs: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)  # flat -> (4-D, shape)

    def unit(self, tensor: str, channel: int) -> int:
        return int(self.uf.find(self.offsets[tensor] + channel))

    def units_of(self, tensor: str) -> np.ndarray:
        start = self.offsets[tensor]
        return np.array([self.uf.find(start + c) for c in range(self.widths[tensor])])

    def kept(self, tensor: str, removed: set[int]) -> np.ndarray:
        """The channel indices of ``tensor`` that stay when the units ``removed`` go."""
        units = self.units_of(tensor)
        return np.array([c for c, u in enumerate(units) if int(u) not in removed], np.int64)


def _tensor_name(t) -> str:
    return t.name if hasattr(t, "name") else str(id(t))


def _nodes(layer, model=None) -> list:
    """The calls of ``layer`` that belong to ``model`` (a layer may also be called in other models)."""
    nodes = layer._inbound_nodes
    if model is None:
        return list(nodes)
    network = getattr(model, "_network_nodes", None)
    if not network:
        return list(nodes)
    return [n for i, n in enumerate(nodes) if f"{layer.name}_ib-{i}" in network]


def _inbound(layer, model=None) -> list[list]:
    """The input tensors of each call of ``layer`` (functional graph nodes)."""
    calls = []
    for node in _nodes(layer, model):
        tensors = node.input_tensors
        calls.append(list(tensors) if isinstance(tensors, (list, tuple)) else [tensors])
    return calls


def _outbound(layer, model=None) -> list:
    outs = []
    for node in _nodes(layer, model):
        t = node.output_tensors
        outs.append(t[0] if isinstance(t, (list, tuple)) else t)
    return outs


def channel_width(t) -> int | None:
    """Channels of a tensor: the last axis of a 2-D or 4-D tensor, None for the others."""
    shape = t.shape
    if len(shape) not in (2, 4) or shape[-1] is None:
        return None
    return int(shape[-1])


def _only_channels(t) -> bool:
    """A tensor whose every axis but the batch and the channels has size 1."""
    return all(d == 1 for d in t.shape[1:-1])


def build_graph(model) -> ChannelGraph:
    """The dependency graph of ``model`` (a tf_keras functional model in NHWC layout)."""
    tensors: dict[str, object] = {}
    for layer in model.layers:
        for t in _outbound(layer, model):
            tensors[_tensor_name(t)] = t
    consumers: dict[str, list[str]] = {}
    producer_kind: dict[str, str] = {}
    flatten_source: dict[str, object] = {}
    for layer in model.layers:
        for ins, out in zip(_inbound(layer, model), _outbound(layer, model)):
            producer_kind[_tensor_name(out)] = type(layer).__name__
            if type(layer).__name__ == "Flatten":
                flatten_source[_tensor_name(out)] = ins[0]
            for t in ins:
                consumers.setdefault(_tensor_name(t), []).append(type(layer).__name__)
    widths, offsets, total = {}, {}, 0
    for name, t in tensors.items():
        if producer_kind.get(name) == "Flatten" and not _only_channels(flatten_source[name]):
            continue  # its last axis mixes space and channels: not a channel axis
        w = channel_width(t)
        if w is not None:
            widths[name], offsets[name] = w, total
            total += w
    uf = _UnionFind(total)
    fixed_elements: dict[int, str] = {}
    flatten_inputs: dict[str, tuple[str, tuple[int, ...]]] = {}

    def fix(tensor_name: str, reason: str) -> None:
        if tensor_name in offsets:
            for c in range(widths[tensor_name]):
                fixed_elements.setdefault(offsets[tensor_name] + c, reason)

    def tie(a: str, b: str, offset: int = 0) -> None:
        for c in range(widths[a]):
            uf.union(offsets[a] + c, offsets[b] + offset + c)

    for t in model.inputs:
        fix(_tensor_name(t), "a model input")
    for t in model.outputs:
        fix(_tensor_name(t), f"a model output ({t.name})")
    sources: dict[str, list[str]] = {}  # output tensor -> source layer names
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        calls = list(zip(_inbound(layer, model), _outbound(layer, model)))
        if len(calls) > 1:  # a shared layer: one set of weights for several tensors
            for ins, out in calls:
                for t in [*ins, out]:
                    fix(_tensor_name(t), f"{layer.name} is called {len(calls)} times (shared weights)")
            continue
        for ins, out in calls:
            o = _tensor_name(out)
            names = [_tensor_name(t) for t in ins]
            known = all(n in widths for n in names) and o in widths
            if kind == "Flatten" and o in widths:  # (N, 1, 1, C) -> (N, C): channels unchanged
                if names[0] in widths:
                    tie(names[0], o)
                else:
                    fix(o, f"{layer.name}: a Flatten of a tensor whose channels cannot be followed")
                continue
            if kind == "Flatten":
                if any(c != "Dense" for c in consumers.get(o, [])) or o in {_tensor_name(t) for t in model.outputs}:
                    fix(names[0], f"{layer.name}: a Flatten whose output is not read by Dense layers only")
                continue  # the Dense layers after it slice their rows (handled at the Dense)
            if kind in SOURCES and len(names) == 1 and o in widths:
                if kind == "Conv2D" and getattr(layer, "groups", 1) != 1:
                    fix(o, f"{layer.name}: a grouped convolution")
                    fix(names[0], f"{layer.name}: a grouped convolution")
                sources.setdefault(o, []).append(layer.name)
                if names[0] not in widths:
                    producer = tensors.get(names[0])
                    flat = getattr(producer, "_keras_history", None)
                    flat_layer = flat.layer if flat is not None else None
                    if kind == "Dense" and flat_layer is not None and type(flat_layer).__name__ == "Flatten":
                        src = _tensor_name(_inbound(flat_layer, model)[0][0])
                        if src in widths:
                            flatten_inputs[names[0]] = (src, tuple(int(d) for d in tensors[src].shape[1:]))
                            continue
                    fix(o, f"{layer.name}: reads a tensor whose channels cannot be followed")
                continue
            if not known:
                for n in names + [o]:
                    fix(n, f"{layer.name} ({kind}) changes the shape in a way the channel rules do not follow")
                continue
            if kind == "Pad" and list(layer.pads[-1]) != [0, 0]:
                pass  # pads the channels: not covered
            elif kind == "Reduce" and not layer.keepdims:
                pass
            elif kind == "Reduce" and len(out.shape) - 1 not in [a % len(out.shape) for a in layer.axes]:
                tie(names[0], o)  # a mean/max over space: channel i stays channel i
                continue
            elif kind == "Pad" and widths[names[0]] == widths[o]:
                tie(names[0], o)
                continue
            elif kind == "ConstantOp" and widths[names[0]] == widths[o] and (
                    not layer.shape or layer.shape[-1] in (1, widths[o])):
                tie(names[0], o)  # a scalar, or one constant per channel (sliced with the channels)
                continue
            if kind in PASS_THROUGH or kind in PER_CHANNEL:
                if kind == "DepthwiseConv2D" and layer.depth_multiplier != 1:
                    fix(names[0], f"{layer.name}: depth multiplier {layer.depth_multiplier}")
                    fix(o, f"{layer.name}: depth multiplier {layer.depth_multiplier}")
                    continue
                if kind == "LayerNormalization" and list(layer.axis) not in ([-1], [len(out.shape) - 1]):
                    fix(names[0], f"{layer.name}: normalizes over more than the channels")
                    fix(o, f"{layer.name}: normalizes over more than the channels")
                    continue
                if widths[names[0]] == widths[o]:
                    tie(names[0], o)
                    continue
            elif kind in ELEMENTWISE and getattr(layer, "op", None) != "matmul" and all(
                    widths[n] == widths[o] for n in names):
                for n in names:
                    tie(n, o)
                continue
            elif kind == "Reshape" and widths[names[0]] == widths[o] and _only_channels(ins[0]) and _only_channels(out):
                tie(names[0], o)  # (N, C) <-> (N, 1, 1, C): a squeeze-and-excitation scale, channels unchanged
                continue
            elif kind == "Concatenate" and layer.axis in (-1, len(out.shape) - 1):
                offset = 0
                for n in names:
                    tie(n, o, offset)
                    offset += widths[n]
                continue
            for n in names + [o]:
                fix(n, f"{layer.name} ({kind}) is not covered by the channel rules")
    # units, and which are fixed
    fixed_units: dict[int, str] = {}
    for element, reason in fixed_elements.items():
        fixed_units.setdefault(int(uf.find(element)), reason)
    # a group: the source tensors that create the same units (the convs around one residual Add). Tensors that
    # share only some units (a Concatenate added to a conv) are merged and kept whole: no width fits them all.
    unit_sets = {t: frozenset(int(uf.find(offsets[t] + c)) for c in range(widths[t])) for t in sources if t in widths}
    owner: dict[int, int] = {}
    components: list[list[str]] = []
    for t, units in unit_sets.items():
        hits = sorted({owner[u] for u in units if u in owner})
        if not hits:
            components.append([t])
            index = len(components) - 1
        else:
            index = hits[0]
            for other in hits[1:]:
                components[index] += components[other]
                for u in set().union(*(unit_sets[x] for x in components[other])):
                    owner[u] = index
                components[other] = []
            components[index].append(t)
        for u in units:
            owner[u] = index
    groups = []
    for members in components:
        if not members:
            continue
        layers = tuple(sorted({name for t in members for name in sources[t]}))
        first = members[0]
        units = [int(uf.find(offsets[first] + c)) for c in range(widths[first])]
        reason = next((fixed_units[u] for u in units if u in fixed_units), None)
        if reason is None and len({unit_sets[t] for t in members}) > 1:
            reason = f"{', '.join(layers)}: a Concatenate and a residual join mix these channels"
        if reason is not None:
            for t in members:
                for u in unit_sets[t]:
                    fixed_units.setdefault(u, reason)
        groups.append(Group(name=sources[first][0], sources=layers, units=units, fixed=reason))
    return ChannelGraph(model, offsets, widths, uf, groups, fixed_units, flatten_inputs)
