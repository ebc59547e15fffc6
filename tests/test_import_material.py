"""Real ONNX models from ../shared/material: import parity against onnxruntime, native layers, trainability."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import material_path
from edgeopt.frontends import load_model
from edgeopt.frontends.parity import check_parity

TOL = 1e-4

# file, input value range (each model's own preprocessing), batch
CASES = {
    "mnist_cntk_opset8": ((0.0, 255.0), 1),
    "mnist_cntk_opset7": ((0.0, 255.0), 1),
    "cifar10_cnn_opset10": ((-1.0, 1.0), 3),  # dynamic batch: 3 samples in one run
    "squeezenet1.0_fp16_opset7": ((-123.0, 151.0), 1),  # BGR 0-255 minus (104, 117, 123)
    "ultraface_rfb320_opset9": ((-1.0, 1.0), 1),  # (pixel - 127) / 128
}


def _samples(imported, low, high, batch, n=2, seed=0):
    rng = np.random.default_rng(seed)
    return [[rng.uniform(low, high, (batch, *s.onnx_shape[1:])).astype(np.float32) for s in imported.inputs]
            for _ in range(n)]


@pytest.fixture(scope="module")
def imported():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_model(material_path("models", f"{name}.onnx"))
        return cache[name]
    return get


@pytest.mark.parametrize("name", sorted(CASES))
def test_material_parity(name, imported):
    (low, high), batch = CASES[name]
    imp = imported(name)
    for samples in _samples(imp, low, high, batch):
        report = check_parity(imp, samples=samples, tolerance=TOL)
        assert report["passed"] and report["samples"] == batch
        for out in report["outputs"]:
            assert out["max_rel_error"] <= TOL, out
    if name.startswith("squeezenet"):
        assert any("float16" in n for n in imp.notes)
        assert report["float16_vs_float32_max_abs"][0] < 1e-2  # fp16 rounding of the original, for information


def test_material_specs(imported):
    mnist = imported("mnist_cntk_opset8")
    assert mnist.inputs[0].onnx_shape == (1, 1, 28, 28) and mnist.inputs[0].keras_shape == (1, 28, 28, 1)
    assert mnist.inputs[0].is_image
    # CNTK writes conv and dense biases as separate Adds: all three are fused, leaving one layer per op.
    types = [type(layer).__name__ for layer in mnist.model.layers]
    assert types.count("Conv2D") == 2 and types.count("Dense") == 1 and "ConstantOp" not in types
    face = imported("ultraface_rfb320_opset9")
    assert [o.name for o in face.outputs] == ["scores", "boxes"]
    assert [o.onnx_shape for o in face.outputs] == [(1, 4420, 2), (1, 4420, 4)]
    assert all(o.perm is None for o in face.outputs)
    squeeze = imported("squeezenet1.0_fp16_opset7")
    assert squeeze.outputs[0].onnx_shape == (1, 1000, 1, 1) and squeeze.outputs[0].perm == (0, 2, 3, 1)
    assert squeeze.inputs[0].name == "data_0" and len(squeeze.inputs) == 1  # initializers listed as inputs


def test_cifar_is_native_and_trains(imported):
    imp = imported("cifar10_cnn_opset10")
    from edgeopt._tf import keras

    types = {type(layer).__name__ for layer in imp.model.layers}
    assert {"Conv2D", "Dense", "MaxPooling2D", "ReLU"} <= types
    assert types <= {"InputLayer", "Conv2D", "Dense", "MaxPooling2D", "ReLU", "ZeroPadding2D", "Flatten"}
    assert imp.inputs[0].onnx_shape == (1, 3, 32, 32)  # dynamic batch reported as 1
    model = keras().models.clone_model(imp.model)
    model.set_weights(imp.model.get_weights())
    before = [w.copy() for w in model.get_weights()]
    model.compile(optimizer=keras().optimizers.SGD(0.01),
                  loss=keras().losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    hist = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    loss = hist.history["loss"][0]
    changed = sum(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert np.isfinite(loss) and changed == len(before)
