"""Keras frontend: tf_keras models saved as .h5, .keras and SavedModel load back with the same outputs."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt.errors import ModelFileError, UnsupportedModelError
from edgeopt.frontends import load_model


def _small_model():
    from edgeopt._tf import keras

    L = keras().layers
    inp = keras().Input((16, 16, 3), name="image")
    x = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = L.BatchNormalization()(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(5, name="logits")(x)
    return keras().Model(inp, out)


@pytest.fixture(scope="module")
def small():
    model = _small_model()
    x = np.random.default_rng(0).uniform(-1, 1, (3, 16, 16, 3)).astype(np.float32)
    return model, x, model.predict(x, verbose=0)


@pytest.mark.parametrize("fmt", ["model.h5", "model.keras", "saved_model"])
def test_roundtrip(fmt, small, tmp_path):
    model, x, want = small
    path = tmp_path / fmt
    model.save(str(path))
    imp = load_model(path)
    got = imp.model.predict(x, verbose=0)
    assert imp.source_format == "keras"
    assert imp.inputs[0].perm is None and imp.inputs[0].onnx_shape == (1, 16, 16, 3)
    assert imp.outputs[0].keras_shape == (1, 5)
    assert float(np.max(np.abs(got - want))) <= 1e-6


def test_imported_onnx_model_saves_and_reloads(tmp_path):
    """A model with edgeopt's custom layers (HardSwish, ConstantOp) survives .keras save/load."""
    import onnx_builders as b

    m = b.model([b.node("HardSwish", ["x"], ["h"]), b.node("Mul", ["h", "c"], ["y"])], [("x", [1, 2, 4, 4])],
                ["y"], {"c": b.rand(2, 1, 1)}, opset=14)
    imp = load_model(b.save(m, tmp_path))
    path = tmp_path / "imported.keras"
    imp.model.save(str(path))
    again = load_model(path)
    x = np.random.default_rng(1).uniform(-4, 4, (2, 4, 4, 2)).astype(np.float32)
    assert float(np.max(np.abs(again.model.predict(x, verbose=0) - imp.model.predict(x, verbose=0)))) == 0.0
    assert {"HardSwish", "ConstantOp"} <= {type(layer).__name__ for layer in again.model.layers}


def test_bad_keras_file(tmp_path):
    p = tmp_path / "broken.h5"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(ModelFileError, match="broken.h5"):
        load_model(p)


def test_dynamic_dims_need_input_shapes(tmp_path):
    from edgeopt._tf import keras

    inp = keras().Input((None, None, 3), name="img")
    model = keras().Model(inp, keras().layers.Conv2D(2, 3)(inp))
    path = tmp_path / "dyn.keras"
    model.save(str(path))
    with pytest.raises(UnsupportedModelError, match="--input-shape img"):
        load_model(path)
    imp = load_model(path, input_shapes={"img": [1, 12, 12, 3]})
    assert imp.inputs[0].onnx_shape == (1, 12, 12, 3)
