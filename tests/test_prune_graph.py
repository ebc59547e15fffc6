"""Structured pruning on small graphs, one per dependency kind: the groups found, the exact channel counts after
surgery, and the surgery's numerical equivalence with the original whose removed channels are zeroed."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt.pruning.graph import build_graph
from edgeopt.pruning.select import choose_ratio, importance, removed_units
from edgeopt.pruning.surgery import prune_model, zero_removed


def _k():
    from edgeopt._tf import keras

    k = keras()
    k.utils.set_random_seed(0)
    return k


def _randomize_bn(model):
    """Trained-looking BatchNorm statistics, so that zeroing and slicing are really exercised."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    return model


def _prune_half(model, *, seed=0):
    """Remove a random half of every prunable group; returns (pruned, graph, removed)."""
    graph = build_graph(model)
    rng = np.random.default_rng(seed)
    removed = set()
    for g in graph.groups:
        if g.fixed is None:
            removed.update(int(u) for u in rng.choice(g.units, size=g.width // 2, replace=False))
    return prune_model(model, graph, removed), graph, removed


def _assert_equivalent(model, shape, *, tol=1e-5):
    pruned, graph, removed = _prune_half(model)
    x = np.random.default_rng(2).normal(size=(3, *shape)).astype(np.float32)
    want = zero_removed(model, graph, removed).predict(x, verbose=0)
    got = pruned.predict(x, verbose=0)
    want, got = (want if isinstance(want, list) else [want]), (got if isinstance(got, list) else [got])
    scale = max(float(np.abs(w).max()) for w in want)
    assert scale > 1e-3  # the outputs are not trivially zero
    for w, g in zip(want, got):
        assert np.abs(w - g).max() <= tol * max(scale, 1.0)
    return pruned, graph


def _widths(model):
    return {l.name: (l.filters if hasattr(l, "filters") else l.units) for l in model.layers
            if type(l).__name__ in ("Conv2D", "Dense")}


def test_conv_batchnorm_relu_chain():
    k = _k()
    x = k.Input((12, 12, 3))
    y = k.layers.Conv2D(16, 3, padding="same", name="c1")(x)
    y = k.layers.BatchNormalization()(y)
    y = k.layers.ReLU()(y)
    y = k.layers.Conv2D(12, 3, padding="same", name="c2")(y)
    y = k.layers.Activation("relu")(y)
    y = k.layers.GlobalAveragePooling2D()(y)
    model = _randomize_bn(k.Model(x, k.layers.Dense(5, name="out")(y)))
    pruned, graph = _assert_equivalent(model, (12, 12, 3))
    assert [(g.name, g.width, g.fixed is None) for g in graph.groups] == [("c1", 16, True), ("c2", 12, True),
                                                                           ("out", 5, False)]
    assert _widths(pruned) == {"c1": 8, "c2": 6, "out": 5}
    assert pruned.layers[2].get_weights()[0].shape == (8,)  # BatchNorm sliced


def test_residual_add_ties_both_producers_into_one_group():
    k = _k()
    x = k.Input((8, 8, 3))
    a = k.layers.Conv2D(16, 3, padding="same", name="stem")(x)
    b = k.layers.Conv2D(16, 3, padding="same", name="branch")(k.layers.ReLU()(a))
    b = k.layers.BatchNormalization()(b)
    s = k.layers.Subtract()([k.layers.Add()([a, b]), a])
    y = k.layers.Conv2D(8, 1, name="head")(k.layers.Multiply()([s, b]))
    model = _randomize_bn(k.Model(x, k.layers.Flatten()(k.layers.GlobalAveragePooling2D()(y))))
    pruned, graph = _assert_equivalent(model, (8, 8, 3))
    groups = {g.name: g for g in graph.groups}
    assert set(groups["stem"].sources) == {"stem", "branch"} and groups["stem"].width == 16
    assert _widths(pruned)["stem"] == _widths(pruned)["branch"] == 8


def test_depthwise_and_prelu_follow_their_channels():
    k = _k()
    x = k.Input((8, 8, 3))
    y = k.layers.Conv2D(16, 1, name="expand")(x)
    y = k.layers.PReLU(shared_axes=[1, 2])(y)
    y = k.layers.DepthwiseConv2D(3, padding="same", name="dw")(y)
    y = k.layers.BatchNormalization()(y)
    y = k.layers.Conv2D(8, 1, name="project")(y)
    model = _randomize_bn(k.Model(x, k.layers.GlobalAveragePooling2D()(y)))
    pruned, graph = _assert_equivalent(model, (8, 8, 3))
    assert pruned.get_layer("dw").get_weights()[0].shape == (3, 3, 8, 1)
    assert pruned.layers[2].get_weights()[0].shape[-1] == 8  # PReLU alpha
    assert [g.fixed is None for g in graph.groups] == [True, False]  # project's channels are the output


def test_concatenate_maps_channel_offsets():
    k = _k()
    x = k.Input((8, 8, 3))
    a = k.layers.Conv2D(16, 3, padding="same", name="a")(x)
    b = k.layers.Conv2D(8, 3, padding="same", name="b")(x)
    c = k.layers.Concatenate()([k.layers.ReLU()(a), b])
    y = k.layers.Conv2D(4, 1, name="fuse")(c)
    model = k.Model(x, k.layers.GlobalMaxPooling2D()(y))
    pruned, _ = _assert_equivalent(model, (8, 8, 3))
    assert _widths(pruned) == {"a": 8, "b": 4, "fuse": 4}
    assert pruned.get_layer("fuse").get_weights()[0].shape == (1, 1, 12, 4)


def test_dense_after_flatten_slices_its_spatial_blocks():
    k = _k()
    x = k.Input((6, 6, 1))
    y = k.layers.Conv2D(16, 3, name="conv")(x)  # 4x4x16
    y = k.layers.MaxPooling2D(2)(y)  # 2x2x16
    y = k.layers.Dense(10, name="fc1")(k.layers.Flatten()(y))
    model = k.Model(x, k.layers.Dense(3, name="fc2")(k.layers.ReLU()(y)))
    pruned, _ = _assert_equivalent(model, (6, 6, 1))
    assert pruned.get_layer("fc1").get_weights()[0].shape == (2 * 2 * 8, 5)
    assert _widths(pruned) == {"conv": 8, "fc1": 5, "fc2": 3}


def test_squeeze_and_excitation_scale_follows_the_feature_channels():
    k = _k()
    x = k.Input((8, 8, 3))
    f = k.layers.Conv2D(16, 3, padding="same", name="feat")(x)
    s = k.layers.GlobalAveragePooling2D()(f)
    s = k.layers.Dense(8, activation="relu", name="squeeze")(s)
    s = k.layers.Dense(16, activation="sigmoid", name="excite")(s)
    s = k.layers.Reshape((1, 1, 16))(s)
    y = k.layers.Conv2D(4, 1, name="head")(k.layers.Multiply()([f, s]))
    model = k.Model(x, k.layers.GlobalAveragePooling2D()(y))
    pruned, graph = _assert_equivalent(model, (8, 8, 3))
    groups = {g.name: g for g in graph.groups}
    assert set(groups["feat"].sources) == {"feat", "excite"}
    assert _widths(pruned) == {"feat": 8, "squeeze": 4, "excite": 8, "head": 4}


@pytest.mark.parametrize("kind", ["grouped", "permute", "output"])
def test_groups_that_cannot_be_pruned_are_kept_whole_with_the_reason(kind):
    k = _k()
    x = k.Input((8, 8, 4))
    y = k.layers.Conv2D(16, 3, padding="same", name="first")(x)
    if kind == "grouped":
        y = k.layers.Conv2D(8, 3, padding="same", groups=4, name="grouped")(y)
    elif kind == "permute":
        y = k.layers.Permute((3, 1, 2))(y)
    model = k.Model(x, y)
    graph = build_graph(model)
    first = next(g for g in graph.groups if g.name == "first")
    expected = {"grouped": "grouped convolution", "permute": "Permute", "output": "a model output"}[kind]
    assert first.fixed is not None and expected in first.fixed
    assert removed_units(graph, choose_ratio(graph, importance(graph), ratio=0.5, round_to=1)) == frozenset()


def test_ratio_rounds_widths_to_multiples_and_l1_keeps_the_strongest_filters():
    k = _k()
    x = k.Input((8, 8, 3))
    conv = k.layers.Conv2D(40, 3, padding="same", name="c")
    y = conv(x)
    model = k.Model(x, k.layers.GlobalAveragePooling2D()(k.layers.Conv2D(4, 1, name="o")(y)))
    kernel, bias = conv.get_weights()
    signs = np.sign(np.random.default_rng(0).normal(size=kernel.shape))
    kernel = (signs * np.linspace(0.1, 4.0, 40)[None, None, None, :]).astype(np.float32)  # L1 norm grows with i
    conv.set_weights([kernel, bias])
    graph = build_graph(model)
    scores = importance(graph, criterion="l1")
    keep = choose_ratio(graph, scores, ratio=0.7, round_to=8)  # 40 * 0.3 = 12, rounded up to 16
    assert len(keep["c"]) == 16
    pruned = prune_model(model, graph, removed_units(graph, keep))
    kept = graph.kept([n for n in graph.widths if graph.widths[n] == 40][0], set(removed_units(graph, keep)))
    assert kept.tolist() == list(range(24, 40))  # the 16 largest-norm filters
    assert pruned.get_layer("c").filters == 16


@pytest.mark.parametrize("kind", ["grouped", "multiplier"])
def test_layers_kept_whole_survive_the_surgery_of_their_neighbours(kind):
    """A grouped conv or a depth multiplier is kept whole; pruning the rest of the model leaves it as it was."""
    k = _k()
    x = k.Input((8, 8, 4))
    y = k.layers.Conv2D(16, 3, padding="same", name="first")(x)
    if kind == "grouped":
        y = k.layers.Conv2D(16, 3, padding="same", groups=4, name="special")(y)
    else:
        y = k.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="special")(y)
    y = k.layers.Conv2D(16, 1, name="mid")(k.layers.ReLU()(y))
    y = k.layers.Conv2D(4, 1, name="last")(k.layers.ReLU()(y))
    model = k.Model(x, k.layers.GlobalAveragePooling2D()(y))
    pruned, graph = _assert_equivalent(model, (8, 8, 4))
    assert next(g for g in graph.groups if g.name == "first").fixed is not None
    assert pruned.get_layer("special").get_weights()[0].shape == model.get_layer("special").get_weights()[0].shape
    assert pruned.get_layer("mid").filters == 8  # the rest is pruned


def test_concatenate_joined_to_a_residual_conv_is_kept_whole():
    k = _k()
    x = k.Input((8, 8, 3))
    a = k.layers.Conv2D(8, 3, padding="same", name="a")(x)
    b = k.layers.Conv2D(8, 3, padding="same", name="b")(x)
    c = k.layers.Conv2D(16, 3, padding="same", name="c")(x)
    y = k.layers.Add()([k.layers.Concatenate()([a, b]), c])
    model = k.Model(x, k.layers.GlobalAveragePooling2D()(k.layers.Conv2D(4, 1, name="o")(y)))
    graph = build_graph(model)
    mixed = [g for g in graph.groups if set(g.sources) == {"a", "b", "c"}]
    assert len(mixed) == 1 and "mix these channels" in mixed[0].fixed
    _assert_equivalent(model, (8, 8, 3))  # nothing removed there, and nothing breaks


def test_skip_layers_must_name_a_layer_that_creates_channels():
    from edgeopt.errors import RecipeError

    k = _k()
    x = k.Input((8, 8, 3))
    y = k.layers.Conv2D(8, 3, name="conv")(x)
    model = k.Model(x, k.layers.GlobalAveragePooling2D()(k.layers.Conv2D(4, 1, name="o")(y)))
    graph = build_graph(model)
    with pytest.raises(RecipeError, match="cnov is no conv or Dense layer"):
        choose_ratio(graph, importance(graph), ratio=0.5, skip=("cnov",))
    assert choose_ratio(graph, importance(graph), ratio=0.5, skip=("conv",)) == {}
