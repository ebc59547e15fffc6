"""The channel dependency graph of a tf_keras functional model, in the manner of Torch-Pruning's groups.

Every channel of every 4-D (NHWC) or 2-D tensor is an element; rules per layer kind tie elements that must be
removed together (a conv's output channel *i*, the BatchNorm and ReLU after it, and the next conv's input *i*; both
inputs of an ``Add``; a ``Concatenate`` input's channel *i* and the output's channel *offset + i*). A **unit** is one
class of tied elements: removing it removes one filter from every layer that creates it and one input slice from
every layer that reads it. A **group** is the set of units created by the same layers (a conv, or the convs feeding
one residual ``Add``), the thing ratios and ``round_to`` apply to.

Units that cannot be removed safely are **fixed**, with the reason: the model's inputs and outputs, and channels
that reach a layer the rules do not cover (a Reshape other than a channel shuffle, a GroupNormalization over groups
of several channels, a layer of unknown kind).

Rules that tie channels of one tensor together: a grouped conv removes the same position in every group (its
input and output groups keep equal sizes); a depthwise conv with depth multiplier m removes an input channel with
its m outputs; a channel shuffle (Reshape to (g, C/g), swap, Reshape back) removes position k of every one of the g
groups at once. A unit may therefore stand for several channels of one tensor.

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
# tf ops a functional model records as TFOpLambda layers (``x + 3.``, ``x * (1. / 6.)`` in tf_keras'
# MobileNetV3) that act elementwise: channel i stays channel i
ELEMENTWISE_OPS = ("__operators__.add", "__operators__.sub", "math.add", "math.subtract", "math.multiply",
                   "math.truediv", "math.divide", "math.maximum", "math.minimum", "nn.relu", "nn.relu6",
                   "math.sigmoid", "math.tanh", "nn.swish", "nn.silu", "math.abs", "math.negative")


def _scalar_constants_only(layer, model) -> bool:
    """Every argument of each call of ``layer`` that is no tensor is a number (nothing per channel to slice)."""
    for node in _nodes(layer, model):
        values = list(getattr(node, "call_args", ())) + list(getattr(node, "call_kwargs", {}).values())
        for v in values:
            if v is None or isinstance(v, (str, bool)) or hasattr(v, "_keras_history"):
                continue
            if np.size(v) != 1:
                return False
    return True


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
    per_unit: int = 1  # channels per unit in the first source's output (a grouped conv: its groups)

    @property
    def width(self) -> int:
        return len(self.units)

    def step(self, round_to: int) -> int:
        """The unit count that makes ``round_to`` channels of the first source (at least 1)."""
        return max(1, -(-round_to // self.per_unit))


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
    shuffles: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # first Reshape -> (g, in, out)

    def unit(self, tensor: str, channel: int) -> int:
        return int(self.uf.find(self.offsets[tensor] + channel))

    def units_of(self, tensor: str) -> np.ndarray:
        cache = self.__dict__.setdefault("_units", {})
        if tensor not in cache:
            start = self.offsets[tensor]
            cache[tensor] = np.array([self.uf.find(start + c) for c in range(self.widths[tensor])])
        return cache[tensor]

    def keep_every_tensor(self, removed) -> frozenset:
        """``removed`` without the units that would leave a tensor with no channel at all (a slice of a shuffled
        tensor can hold only some of a group's units): such a tensor keeps the unit of its first channel."""
        gone = set(removed)
        if not gone:
            return frozenset()
        mask = self.removed_mask(gone)
        for name in self.widths:
            units = self.units_of(name)
            if len(units) and mask[units].all():
                gone.discard(int(units[0]))
                mask[units[0]] = False
        return frozenset(gone)

    def removed_mask(self, removed) -> np.ndarray:
        """A boolean array over unit ids: True for the units ``removed``."""
        mask = np.zeros(len(self.uf.parent), bool)
        if removed:
            mask[np.fromiter(removed, np.int64)] = True
        return mask

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


def _all_outputs(layer, model=None) -> list[list]:
    """Every output tensor of each call of ``layer`` (a Split has several)."""
    outs = []
    for node in _nodes(layer, model):
        t = node.output_tensors
        outs.append(list(t) if isinstance(t, (list, tuple)) else [t])
    return outs


def channel_slice(layer, rank: int) -> tuple[int, int] | None:
    """(begin, end) of an importer Slice that cuts only the channel axis (stride 1), None for other slices;
    end may exceed the width (to the end)."""
    begin, end, strides = list(layer.begin), list(layer.end), list(layer.strides)
    if len(begin) != rank or int(strides[-1]) != 1 or int(begin[-1]) < 0:
        return None  # other axes may be strided: channel c stays channel c
    return int(begin[-1]), int(end[-1])


def shuffle_of(layer, model, consumers_of) -> tuple[int, object, object] | None:
    """(groups, permute layer, last reshape) when ``layer`` is the first Reshape of a channel shuffle: (N, H, W, C)
    -> (N, H, W, g, C/g) -> Permute(1, 2, 4, 3) -> (N, H, W, C), or its 4-D form (N, H*W, g, C/g) ->
    Permute(1, 3, 2) -> (N, H, W, C)."""
    if type(layer).__name__ != "Reshape":
        return None
    ins, out = _inbound(layer, model), _outbound(layer, model)
    if len(ins) != 1 or len(ins[0]) != 1:
        return None
    src, mid = ins[0][0], out[0]
    if len(src.shape) != 4 or None in tuple(src.shape[1:]):
        return None
    h, w = int(src.shape[1]), int(src.shape[2])
    if len(mid.shape) == 5 and tuple(mid.shape[1:3]) == (h, w):
        swap = (1, 2, 4, 3)
    elif len(mid.shape) == 4 and mid.shape[1] == h * w:
        swap = (1, 3, 2)
    else:
        return None
    g, per = mid.shape[-2], mid.shape[-1]
    if g is None or per is None or g * per != src.shape[-1]:
        return None
    nxt = consumers_of(_tensor_name(mid))
    if len(nxt) != 1 or type(nxt[0]).__name__ != "Permute" or tuple(nxt[0].dims) != swap:
        return None
    perm = nxt[0]
    last = consumers_of(_tensor_name(_outbound(perm, model)[0]))
    if len(last) != 1 or type(last[0]).__name__ != "Reshape":
        return None
    final = _outbound(last[0], model)[0]
    if tuple(final.shape[1:]) != tuple(src.shape[1:]):
        return None
    return int(g), perm, last[0]


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
        for outs in _all_outputs(layer, model):
            for t in outs:
                tensors[_tensor_name(t)] = t
    consumers: dict[str, list[str]] = {}
    consumer_layers: dict[str, list] = {}
    producer_kind: dict[str, str] = {}
    flatten_source: dict[str, object] = {}
    for layer in model.layers:
        for ins, out in zip(_inbound(layer, model), _outbound(layer, model)):
            producer_kind[_tensor_name(out)] = type(layer).__name__
            if type(layer).__name__ == "Flatten":
                flatten_source[_tensor_name(out)] = ins[0]
            for t in ins:
                consumers.setdefault(_tensor_name(t), []).append(type(layer).__name__)
                consumer_layers.setdefault(_tensor_name(t), []).append(layer)
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
    shuffle_parts: set[str] = set()
    shuffles: dict[str, tuple[int, str, str]] = {}  # first Reshape -> (groups, input tensor, output tensor)
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
            if layer.name in shuffle_parts:
                continue  # the Permute and last Reshape of a channel shuffle: tied at its first Reshape
            shuffle = shuffle_of(layer, model, lambda t: consumer_layers.get(t, []))
            if shuffle is not None and names[0] in widths:
                g, perm, last = shuffle
                final = _tensor_name(_outbound(last, model)[0])
                per = widths[names[0]] // g
                for i in range(g):
                    for kk in range(per):
                        uf.union(offsets[names[0]] + i * per + kk, offsets[final] + kk * g + i)
                        uf.union(offsets[names[0]] + i * per + kk, offsets[names[0]] + kk)
                shuffle_parts.update({perm.name, last.name})
                shuffles[layer.name] = (g, names[0], final)
                continue
            if kind == "Split" and layer.axis in (-1, len(ins[0].shape) - 1) and names[0] in widths:
                pieces = [_tensor_name(t) for t in _all_outputs(layer, model)[0]]
                offset = 0
                for piece, size in zip(pieces, layer.sizes):
                    if piece in widths:
                        tie(piece, names[0], offset)
                    offset += size
                continue
            if kind == "Slice" and names[0] in widths and o in widths:
                cut = channel_slice(layer, len(ins[0].shape))
                if cut is not None and cut[0] + widths[o] <= widths[names[0]]:
                    tie(o, names[0], cut[0])
                    continue
            if kind in SOURCES and len(names) == 1 and o in widths:
                groups = getattr(layer, "groups", 1) if kind == "Conv2D" else 1
                if groups != 1 and names[0] in widths:
                    # per-group counts: the same position goes in every input group and every output group
                    per_in, per_out = widths[names[0]] // groups, widths[o] // groups
                    for j in range(1, groups):
                        for a in range(per_in):
                            uf.union(offsets[names[0]] + a, offsets[names[0]] + j * per_in + a)
                        for b in range(per_out):
                            uf.union(offsets[o] + b, offsets[o] + j * per_out + b)
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
            if kind == "DepthwiseConv2D" and layer.depth_multiplier != 1:
                m = layer.depth_multiplier
                if widths[o] == widths[names[0]] * m:
                    for c in range(widths[names[0]]):  # output c*m + j is input c's j-th filter
                        for j in range(m):
                            uf.union(offsets[names[0]] + c, offsets[o] + c * m + j)
                    continue
            if kind == "GroupNormalization":
                on_channels = layer.axis in (-1, len(out.shape) - 1)
                if on_channels and layer.groups == widths[o] == widths[names[0]]:  # instance norm
                    tie(names[0], o)
                    continue
                why = (f"normalizes over groups of {widths[o] // max(layer.groups, 1)} channels" if on_channels
                       else f"normalizes along axis {layer.axis}, not the channels")
                for n in names + [o]:
                    fix(n, f"{layer.name}: {why}")
                continue
            if kind in PASS_THROUGH or kind in PER_CHANNEL:
                if kind == "LayerNormalization" and list(layer.axis) not in ([-1], [len(out.shape) - 1]):
                    fix(names[0], f"{layer.name}: normalizes over more than the channels")
                    fix(o, f"{layer.name}: normalizes over more than the channels")
                    continue
                if widths[names[0]] == widths[o]:
                    tie(names[0], o)
                    continue
            elif (kind in ELEMENTWISE and getattr(layer, "op", None) != "matmul" or kind == "TFOpLambda"
                  and getattr(layer, "symbol", None) in ELEMENTWISE_OPS and _scalar_constants_only(layer, model)) \
                    and all(widths[n] == widths[o] for n in names):
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
    # share only some units (a Concatenate added to a conv) are merged: the group's units are their union.
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
        units, seen = [], set()
        for t in members:  # every unit of the group once, in the order of the first member's channels
            for c in range(widths[t]):
                u = int(uf.find(offsets[t] + c))
                if u not in seen:
                    seen.add(u)
                    units.append(u)
        reason = next((fixed_units[u] for u in units if u in fixed_units), None)
        if reason is not None:
            for t in members:
                for u in unit_sets[t]:
                    fixed_units.setdefault(u, reason)
        first_units = {int(uf.find(offsets[first] + c)) for c in range(widths[first])}
        groups.append(Group(name=sources[first][0], sources=layers, units=units, fixed=reason,
                            per_unit=max(1, widths[first] // max(1, len(first_units)))))
    return ChannelGraph(model, offsets, widths, uf, groups, fixed_units, flatten_inputs, shuffles)
