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
    removed = set(graph.keep_every_tensor(removed))
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


@pytest.mark.parametrize("kind", ["permute", "groupnorm", "output"])
def test_groups_that_cannot_be_pruned_are_kept_whole_with_the_reason(kind):
    k = _k()
    x = k.Input((8, 8, 4))
    y = k.layers.Conv2D(16, 3, padding="same", name="first")(x)
    if kind == "permute":
        y = k.layers.Permute((3, 1, 2))(y)
    elif kind == "groupnorm":  # 4 groups of 4 channels: removing one changes its group's statistics
        y = k.layers.Conv2D(4, 1, name="after")(k.layers.GroupNormalization(groups=4)(y))
    model = k.Model(x, y)
    graph = build_graph(model)
    first = next(g for g in graph.groups if g.name == "first")
    expected = {"permute": "Permute", "groupnorm": "groups of 4 channels", "output": "a model output"}[kind]
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


def test_grouped_conv_keeps_equal_group_sizes():
    """groups=4: the same position goes in each of the 4 input groups and each of the 4 output groups."""
    k = _k()
    x = k.Input((8, 8, 4))
    y = k.layers.ReLU()(k.layers.Conv2D(16, 3, padding="same", name="first")(x))
    y = k.layers.Conv2D(32, 3, padding="same", groups=4, name="grouped")(y)
    y = k.layers.Conv2D(4, 1, name="last")(k.layers.ReLU()(y))
    model = k.Model(x, k.layers.GlobalAveragePooling2D()(y))
    pruned, graph = _assert_equivalent(model, (8, 8, 4))
    groups = {g.name: g for g in graph.groups}
    assert groups["first"].width == 4 and groups["grouped"].width == 8  # positions per group
    assert pruned.get_layer("first").filters == 8 and pruned.get_layer("grouped").filters == 16
    assert pruned.get_layer("grouped").get_weights()[0].shape == (3, 3, 2, 16)  # 2 inputs per group, 4 groups
    # round_to counts channels: 8 channels of `first` are 2 units (one position in each of the 4 groups)
    keep = choose_ratio(graph, importance(graph), ratio=0.5, round_to=8)
    assert len(keep["first"]) == 2 and len(keep["grouped"]) == 4
    assert prune_model(model, graph, removed_units(graph, keep)).get_layer("first").filters == 8


def test_depth_multiplier_removes_an_input_with_its_filters():
    k = _k()
    x = k.Input((8, 8, 4))
    y = k.layers.ReLU()(k.layers.Conv2D(16, 3, padding="same", name="first")(x))
    y = k.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=3, name="dw")(y)
    y = k.layers.BatchNormalization()(y)
    y = k.layers.Conv2D(4, 1, name="last")(k.layers.ReLU()(y))
    model = _randomize_bn(k.Model(x, k.layers.GlobalAveragePooling2D()(y)))
    pruned, graph = _assert_equivalent(model, (8, 8, 4))
    assert next(g for g in graph.groups if g.name == "first").width == 16
    assert pruned.get_layer("first").filters == 8
    assert pruned.get_layer("dw").get_weights()[0].shape == (3, 3, 8, 3)  # 8 inputs x multiplier 3
    assert pruned.get_layer("last").get_weights()[0].shape == (1, 1, 24, 4)


@pytest.mark.parametrize("four_d", [False, True], ids=["5d-shuffle", "4d-shuffle"])
def test_channel_split_slice_and_shuffle_of_a_shufflenet_unit(four_d):
    """Split (the importer's layer), Slice on the channel axis, and Reshape -> Permute -> Reshape channel shuffle
    (the 5-D form torch exports, and the 4-D form of the ShuffleNetV2 student): the shuffle ties position k of both
    halves, the halves' consumers slice the kept channels."""
    from edgeopt.frontends.onnx.layers import custom

    k = _k()
    x = k.Input((8, 8, 3))
    stem = k.layers.ReLU()(k.layers.Conv2D(16, 3, padding="same", name="stem")(x))
    keep, work = custom("Split")(3, [8, 8], name="split")(stem)
    right = k.layers.ReLU()(k.layers.Conv2D(8, 1, name="right")(work))
    cat = k.layers.Concatenate()([keep, right])
    y = k.layers.Reshape((64, 2, 8) if four_d else (8, 8, 2, 8), name="shuffle_a")(cat)
    y = k.layers.Permute((1, 3, 2) if four_d else (1, 2, 4, 3), name="shuffle_b")(y)
    y = k.layers.Reshape((8, 8, 16), name="shuffle_c")(y)
    first = custom("Slice")([0, 0, 0, 0], [1, 8, 8, 8], [1, 1, 1, 1], name="first_half")(y)
    second = custom("Slice")([0, 0, 0, 8], [1, 8, 8, 16], [1, 1, 1, 1], name="second_half")(y)
    out = k.layers.Concatenate()([k.layers.Conv2D(4, 1, name="h1")(first), k.layers.Conv2D(4, 1, name="h2")(second)])
    model = k.Model(x, k.layers.GlobalAveragePooling2D()(out))
    pruned, graph = _assert_equivalent(model, (8, 8, 3))
    groups = {g.name: g for g in graph.groups}
    assert groups["stem"].fixed is None and set(groups["stem"].sources) == {"stem", "right"}
    stem_out = pruned.get_layer("stem").filters
    sizes = list(pruned.get_layer("split").sizes)
    assert stem_out < 16 and sum(sizes) == stem_out  # the halves keep what their channels keep
    half = sizes[0]  # the split's first half is shuffled with `right`: position k of both goes together
    assert pruned.get_layer("right").filters == half
    assert tuple(pruned.get_layer("shuffle_a").target_shape) == ((64,) if four_d else (8, 8)) + (2, half)
    assert tuple(pruned.get_layer("shuffle_c").target_shape) == (8, 8, 2 * half)
    h1 = pruned.get_layer("h1").get_weights()[0].shape[2]
    assert h1 + pruned.get_layer("h2").get_weights()[0].shape[2] == 2 * half
    assert pruned.get_layer("first_half").end[-1] == h1 == pruned.get_layer("second_half").begin[-1]


def test_instance_norm_follows_its_channels():
    k = _k()
    x = k.Input((8, 8, 3))
    y = k.layers.Conv2D(16, 3, padding="same", name="c")(x)
    norm = k.layers.GroupNormalization(groups=16, name="inorm")
    y = k.layers.ReLU()(norm(y))
    y = k.layers.Conv2D(4, 1, name="o")(y)
    model = k.Model(x, k.layers.GlobalAveragePooling2D()(y))
    rng = np.random.default_rng(3)
    norm.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in norm.get_weights()])
    pruned, _ = _assert_equivalent(model, (8, 8, 3))
    assert pruned.get_layer("inorm").groups == 8 and pruned.get_layer("inorm").get_weights()[0].shape == (8,)


def test_concatenate_joined_to_a_residual_conv_is_one_group():
    """concat(a, b) + c: a's channels are c's first 8, b's its last 8; one group of 16 units."""
    from train_helpers import concat_residual_model

    model = concat_residual_model()
    pruned, graph = _assert_equivalent(model, (8, 8, 3))
    mixed = [g for g in graph.groups if set(g.sources) == {"a", "b", "c"}]
    assert len(mixed) == 1 and mixed[0].fixed is None and mixed[0].width == 16
    widths = _widths(pruned)
    assert widths["c"] == 8 and widths["a"] + widths["b"] == 8


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


def test_batchnorm_goes_back_in_as_the_identity_and_prunes_with_its_conv():
    """A BN-folded network (what an ONNX export gives): a BatchNorm after every conv without one, equal at
    inference, trained in training mode; the pruning graph then slices it with its conv."""
    from edgeopt.pruning.batchnorm import with_batchnorm

    k = _k()
    x = k.Input((8, 8, 3))
    y = k.layers.ReLU()(k.layers.Conv2D(16, 3, padding="same", name="a")(x))
    z = k.layers.BatchNormalization(name="has_bn")(k.layers.Conv2D(16, 3, padding="same", name="b")(y))
    y = k.layers.Add()([y, k.layers.ReLU()(z)])
    y = k.layers.DepthwiseConv2D(3, padding="same", name="dw")(y)
    model = k.Model(x, k.layers.GlobalAveragePooling2D()(k.layers.Conv2D(4, 1, name="out")(y)))
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(16, 8, 8, 3)).astype(np.float32) for _ in range(2)]
    new, inserted = with_batchnorm(model, batches)
    assert inserted == 3  # a, dw and out; b has one
    assert {l.name for l in new.layers} - {l.name for l in model.layers} == {"a_bn", "dw_bn", "out_bn"}
    probe = rng.normal(size=(4, 8, 8, 3)).astype(np.float32)
    assert np.abs(new.predict(probe, verbose=0) - model.predict(probe, verbose=0)).max() <= 1e-4
    # on the batches it was measured on, training mode (batch statistics) gives the same activations too
    both = np.concatenate(batches)
    from edgeopt.pruning.graph import _outbound

    conv = k.Model(new.inputs, _outbound(new.get_layer("a"), new)[0])(both).numpy()
    normed = k.Model(new.inputs, new.get_layer("a_bn").output)(both, training=True).numpy()
    assert np.abs(normed - conv).max() <= 1e-2 * np.abs(conv).max()
    pruned, graph = _assert_equivalent(new, (8, 8, 3))
    assert pruned.get_layer("a_bn").get_weights()[0].shape == (pruned.get_layer("a").filters,)
    assert with_batchnorm(pruned, batches)[1] == 0  # every conv has one now


def test_batchnorm_given_the_unpruned_model_restores_each_kept_channels_distribution():
    """With the unpruned model as reference, each inserted BatchNorm maps its pruned conv's channels onto the mean
    and std the same channels had before pruning (on the measured batches, in inference mode)."""
    from edgeopt.pruning.batchnorm import with_batchnorm
    from edgeopt.pruning.graph import _outbound
    from edgeopt.pruning.run import _kept_outputs

    k = _k()
    x = k.Input((8, 8, 3))
    y = k.layers.ReLU()(k.layers.Conv2D(16, 3, padding="same", name="a")(x))
    y = k.layers.ReLU()(k.layers.Conv2D(16, 3, padding="same", name="b")(y))
    model = k.Model(x, k.layers.GlobalAveragePooling2D()(k.layers.Conv2D(4, 1, name="out")(y)))
    rng = np.random.default_rng(1)
    batches = [rng.normal(size=(16, 8, 8, 3)).astype(np.float32) for _ in range(2)]
    graph = build_graph(model)
    keep = choose_ratio(graph, importance(graph), ratio=0.5, round_to=1)
    removed = removed_units(graph, keep)
    pruned = prune_model(model, graph, removed)
    kept = _kept_outputs(model, graph, removed)
    assert len(kept["a"]) == 8 and len(kept["b"]) == 8 and len(kept["out"]) == 4
    new, inserted = with_batchnorm(pruned, batches, reference=model, kept=kept)
    assert inserted == 3
    both = np.concatenate(batches)
    before = k.Model(model.inputs, _outbound(model.get_layer("b"), model)[0])(both).numpy()[..., kept["b"]]
    after = k.Model(new.inputs, new.get_layer("b_bn").output)(both, training=False).numpy()
    flat_b, flat_a = before.reshape(-1, 8), after.reshape(-1, 8)
    assert np.abs(flat_a.mean(0) - flat_b.mean(0)).max() <= 1e-3 * (1 + np.abs(flat_b).max())
    assert np.abs(flat_a.std(0) / flat_b.std(0) - 1).max() <= 1e-2
    # the first conv lost nothing upstream: its channels were not shifted, so it stays the identity there
    a_new = k.Model(new.inputs, new.get_layer("a_bn").output)(both).numpy()
    a_old = k.Model(model.inputs, _outbound(model.get_layer("a"), model)[0])(both).numpy()[..., kept["a"]]
    assert np.abs(a_new - a_old).max() <= 1e-3 * np.abs(a_old).max()
