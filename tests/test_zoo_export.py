"""Every zoo model × exporter: the ONNX file runs in onnxruntime, matches its source framework, holds the source's
weights (after BatchNorm folding) and has the operator structure of its architecture."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from zoo import ZOO, ZooEntry, sample_input, source_model, zoo_model

CASES = [pytest.param(item, id=item.id, marks=[pytest.mark.slow] if item.slow else []) for item in ZOO]

# Inputs that hold weights; elementwise ops count only non-scalar constants (a scalar is an activation's 3 or 1/6,
# a Rescaling factor, a Clip bound; Resize scales and Reshape shapes feed other slots and are never counted).
WEIGHT_SLOTS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (0, 1),
                "BatchNormalization": (1, 2, 3, 4), "Add": (0, 1), "Mul": (0, 1), "Sub": (0, 1), "Div": (0, 1)}
ELEMENTWISE = {"Add", "Mul", "Sub", "Div"}

# Exact operator counts that follow from each architecture, e.g. ResNet-18: 17 convs in the stem and 8 blocks + 3
# projection shortcuts = 20 Conv, one Add per block = 8; MobileNetV2: 35 ReLU6 -> Clip, 10 residual Adds;
# ShuffleNetV2: 4 + 8 + 4 = 16 units, each ends with a shuffle = Reshape, Transpose, Reshape;
# EfficientNet-B0: 49 SiLU (x * sigmoid(x)) + 16 squeeze-excite gates = 65 Sigmoid.
# No exporter may leave a BatchNormalization after a conv without a bias: they all fold it.
STRUCTURE = {
    "resnet18": {"Conv": 20, "Add": 8, "MaxPool": 1, "Gemm": 1, "BatchNormalization": 0},
    "mobilenet_v2": {"Conv": 52, "Clip": 35, "Add": 10, "BatchNormalization": 0},
    "mobilenet_v3_small": {"Conv": 52, "HardSwish": 19, "HardSigmoid": 9, "Mul": 9, "Add": 6},
    "shufflenet_v2": {"Conv": 56, "Transpose": 16, "Reshape": 32, "Concat": 16, "BatchNormalization": 0},
    "efficientnet_b0": {"Conv": 81, "Sigmoid": 65, "Mul": 65, "Add": 9, "BatchNormalization": 0},
    "unet": {"Conv": 16, "ConvTranspose": 2, "Resize": 1, "Concat": 3, "MaxPool": 3},
    "keras_mobilenet_v2": {"Conv": 52, "Clip": 35, "Pad": 4, "BatchNormalization": 0},
    # tf2onnx spells hard-swish as x * relu6(x + 3) / 6, so there is no HardSwish op: 28 Clip (19 + 9 gates).
    "keras_mobilenet_v3_small": {"Conv": 54, "Clip": 28, "HardSwish": 0, "HardSigmoid": 0, "Pad": 4},
    "keras_efficientnet_b0": {"Conv": 81, "Sigmoid": 65, "Pad": 4, "BatchNormalization": 0},
    # The separable conv's BatchNorm follows a biased pointwise conv and stays a BatchNormalization node.
    "keras_small_cnn": {"Conv": 6, "BatchNormalization": 1, "LeakyRelu": 1, "Concat": 1, "Clip": 1},
}
# How each exporter spells ShuffleNet's channel split (torch.chunk): Split, or Slice pairs behind a shape subgraph.
SPLIT_FORM = {"dynamo": {"Split": 13, "Slice": 0}, "torchscript": {"Split": 0, "Slice": 26, "Shape": 13}}


def _reference(item: ZooEntry, x: np.ndarray) -> np.ndarray:
    model = source_model(item.name)
    if item.exporter == "tf2onnx":
        return model(x, training=False).numpy()
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _source_counts(item: ZooEntry) -> tuple[int, int, int]:
    """(framework's own count, float tensors needed at inference, BatchNorm channels) of the source model.

    Torch: parameters, plus BatchNorm running mean and variance (2C). Keras: count_params() already includes the
    moving statistics; the float count leaves out integer bookkeeping such as Normalization's sample count.
    """
    model = source_model(item.name)
    if item.exporter == "tf2onnx":
        from edgeopt._tf import keras

        norms = [layer for layer in model.layers if isinstance(layer, keras().layers.BatchNormalization)]
        floats = sum(int(np.prod(w.shape)) for w in model.weights if w.dtype == "float32")
        return model.count_params(), floats, sum(int(bn.gamma.shape[0]) for bn in norms)
    import torch

    params = sum(p.numel() for p in model.parameters())
    channels = sum(m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    return params, params + 2 * channels, channels


def _onnx_weights(proto: onnx.ModelProto) -> tuple[int, int]:
    """(weight elements, channels of BatchNormalization nodes) of an ONNX graph, each initializer counted once."""
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    counted: set[str] = set()
    bn_channels = 0
    for node in proto.graph.node:
        if node.op_type == "BatchNormalization":
            bn_channels += inits[node.input[1]].size
        for slot in WEIGHT_SLOTS.get(node.op_type, ()):
            name = node.input[slot] if slot < len(node.input) else ""
            value = inits.get(name)
            if value is None or value.dtype != np.float32 or (node.op_type in ELEMENTWISE and value.size <= 1):
                continue
            counted.add(name)
    return sum(inits[name].size for name in counted), bn_channels


def op_histogram(proto: onnx.ModelProto) -> Counter:
    return Counter(node.op_type for node in proto.graph.node)


@pytest.mark.parametrize("item", CASES)
def test_onnxruntime_matches_source(item, zoo_dir):
    path = zoo_model(item, out_dir=zoo_dir)
    x = sample_input(item)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    ref = _reference(item, x)
    assert got.shape == ref.shape == (x.shape[0], *item.output_shape[1:])
    scale = float(np.abs(ref).max())
    error = float(np.abs(got - ref).max())
    print(f"{item.id}: max |onnx - source| = {error:.2e}, output scale {scale:.3f}")
    assert scale > 1e-2, "outputs near zero would make the parity check meaningless"
    assert error <= 1e-4 * scale
    # The outputs depend on the input: another seed's sample moves them by far more than the parity error.
    other = _reference(item, sample_input(item, seed=1))
    assert float(np.abs(other - ref).max()) > 100 * error


@pytest.mark.parametrize("item", CASES)
def test_onnx_holds_the_source_weights(item, zoo_dir):
    proto = onnx.load(str(zoo_model(item, out_dir=zoo_dir)))
    own, floats, bn_channels = _source_counts(item)
    weights, kept_bn = _onnx_weights(proto)
    assert own == item.params
    assert own > 100_000 or item.name == "keras_small_cnn"
    # A BatchNorm folded into a bias-free conv turns scale, shift, mean, variance (4C) into the conv's bias (C).
    assert weights == floats - 3 * (bn_channels - kept_bn)


@pytest.mark.parametrize("item", CASES)
def test_operator_structure(item, zoo_dir, record_property):
    proto = onnx.load(str(zoo_model(item, out_dir=zoo_dir)))
    histogram = op_histogram(proto)
    record_property("op_histogram", dict(histogram))
    print(f"{item.id}: {dict(sorted(histogram.items()))}")
    opsets = {o.domain: o.version for o in proto.opset_import}
    assert opsets.get("", opsets.get("ai.onnx")) == item.resolved_opset
    expected = dict(STRUCTURE[item.name])
    if item.name == "shufflenet_v2":
        expected.update(SPLIT_FORM[item.exporter])
    assert {op: histogram[op] for op in expected} == expected
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert (not batch.HasField("dim_value")) == item.dynamic_batch
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[1:]] == list(item.input_shape[1:])


# At 1000 classes the definitions hold exactly the parameters of the published models (as torchvision counts them).
PAPER_PARAMS = {"resnet18": 11_689_512, "mobilenet_v2": 3_504_872, "mobilenet_v3_small": 2_542_856,
                "shufflenet_v2": 2_278_604, "efficientnet_b0": 5_288_548}


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_torch_definitions_have_the_published_size(name):
    from zoo.torch_models import BUILDERS

    model = BUILDERS[name](num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == PAPER_PARAMS[name]


def test_zoo_ids_are_unique_and_cover_every_exporter():
    ids = [item.id for item in ZOO]
    assert len(ids) == len(set(ids)) == 18
    assert Counter(item.exporter for item in ZOO) == {"torchscript": 8, "dynamo": 6, "tf2onnx": 4}
