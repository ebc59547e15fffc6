"""Structured pruning of the zoo's torch models, exported to ONNX and imported, and of the tf_keras mobile networks
students are built from (MobileNetV2-0.35, MobileNetV3-Small and -Large, whose hard-swish and squeeze-and-excite
gates are TFOpLambda ops): each prunes to 50 % of its MACs (data-free, L1), the surgery equals the original with the
removed channels zeroed, and the result converts to a full-integer INT8 .tflite that runs."""
from __future__ import annotations

import numpy as np
import pytest

import edgeopt
from edgeopt.analyze.keras_summary import keras_summary
from edgeopt.pruning.graph import build_graph
from edgeopt.pruning.select import choose_macs, importance, macs_estimator, removed_units
from edgeopt.pruning.surgery import prune_model, zero_removed
from zoo import ZOO, zoo_model

NAMES = ("resnet18", "mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2", "efficientnet_b0", "unet")
ENTRIES = [e for e in ZOO if e.id in {f"{n}-torchscript" for n in NAMES}]


def test_every_torch_model_is_covered():
    assert sorted(e.id.split("-")[0] for e in ENTRIES) == sorted(NAMES)


@pytest.mark.parametrize("item", ENTRIES, ids=lambda e: e.id)
def test_prunes_to_half_the_macs_exactly_and_converts_to_int8(item, zoo_dir):
    _prune_half_and_convert(edgeopt.load(zoo_model(item, out_dir=zoo_dir)).model, item.id, zoo_dir)


KERAS_MOBILE = {
    "mobilenet_v2_035": lambda k: k.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None,
                                                             classes=10, classifier_activation=None),
    "mobilenet_v3_small": lambda k: k.applications.MobileNetV3Small(input_shape=(96, 96, 3), weights=None, classes=10,
                                                                    include_preprocessing=False,
                                                                    classifier_activation=None),
    "mobilenet_v3_large": lambda k: k.applications.MobileNetV3Large(input_shape=(96, 96, 3), weights=None, classes=10,
                                                                    include_preprocessing=False,
                                                                    classifier_activation=None),
}


@pytest.mark.parametrize("name", sorted(KERAS_MOBILE))
def test_keras_mobile_networks_prune_to_half_the_macs_and_convert_to_int8(name, tmp_path):
    from edgeopt._tf import keras

    k = keras()
    k.utils.set_random_seed(0)
    model = KERAS_MOBILE[name](k)
    graph = build_graph(model)
    assert [g.fixed is not None for g in graph.groups].count(True) == 1  # only the classifier's outputs
    _prune_half_and_convert(model, name, tmp_path)


def _prune_half_and_convert(model, name, folder):
    from edgeopt.quantization.ptq import quantize_int8
    from edgeopt.runtime import TFLiteModel

    before = keras_summary(model)
    graph = build_graph(model)
    keep = choose_macs(graph, importance(graph), macs_estimator(graph, before["macs_by_layer"]),
                       target=0.5 * before["macs"])
    removed = removed_units(graph, keep)
    pruned = prune_model(model, graph, removed)
    after = keras_summary(pruned)
    assert after["macs"] <= 0.5 * before["macs"] and after["macs"] >= 0.3 * before["macs"]
    assert after["params"] < before["params"]
    shape = tuple(model.inputs[0].shape[1:])
    x = np.random.default_rng(0).uniform(0, 1, (2, *shape)).astype(np.float32)
    want = zero_removed(model, graph, removed).predict(x, verbose=0)
    got = pruned.predict(x, verbose=0)
    scale = float(np.abs(want).max())
    assert float(np.abs(got - want).max()) <= 1e-5 * max(scale, 1.0)
    data = quantize_int8(pruned, [np.random.default_rng(1).uniform(0, 1, (8, *shape)).astype(np.float32)],
                         input_names=["x"], output_names=["y"], io_type="int8", per_channel=True)
    path = folder / f"{name}_pruned_int8.tflite"
    path.write_bytes(data)
    tfl = TFLiteModel(path)
    out = tfl.run_one({tfl.input_names[0]: x[:1]})[tfl.output_names[0]]
    assert np.isfinite(out).all() and out.shape[1:] == got.shape[1:]


@pytest.mark.parametrize("name", ["mobilenet_v2_035", "mobilenet_v2_140", "mobilenet_v3_small", "mobilenet_v3_large",
                                  "shufflenet_v2_x0_5", "shufflenet_v2_x2_0"])
def test_distillation_students_prune_to_half_the_macs_and_convert_to_int8(name, tmp_path):
    """The students of the distillation zoo (their hard-swish/hard-sigmoid layers, squeeze-and-excite gates, 4-D
    channel shuffles and channel splits), at the narrowest and widest width of each family: every group but the
    classifier's is prunable, and the result converts to INT8."""
    from edgeopt._tf import keras
    from edgeopt.distillation.students import build_student

    keras().utils.set_random_seed(0)
    model = build_student(name, (32, 32, 3), 10)
    graph = build_graph(model)
    assert [g.fixed is not None for g in graph.groups].count(True) == 1  # only the classifier's outputs
    _prune_half_and_convert(model, name, tmp_path)
