"""INT8 of a model with several inputs: every calibration feeds each input its own samples.

The converter orders a signature's inputs by name, so a representative sample given as a list would go to the
inputs in that order rather than the Keras model's. The model here has two inputs of one shape, about 1 and about
100 in size, named "z_small" and "a_large" (not in alphabetical order), each through its own Dense + ReLU.
"""
from __future__ import annotations

import numpy as np
import pytest

NAMES, OUTS = ["z_small", "a_large"], ["a", "b"]


def two_input_model():
    """The two-branch model: "z_small" → Dense + ReLU "from_small", "a_large" → Dense + ReLU "from_large"."""
    from edgeopt._tf import keras

    k = keras()
    k.utils.set_random_seed(0)
    small, large = k.Input((8,)), k.Input((8,))
    a = k.layers.Dense(8, activation="relu", name="from_small")(small)
    b = k.layers.Dense(8, activation="relu", name="from_large")(large)
    return k.Model([small, large], [a, b])


def two_input_samples(rng, n: int) -> list[np.ndarray]:
    """``n`` samples per input: about 1 for "z_small", about 100 for "a_large"."""
    return [rng.uniform(0, 1, (n, 8)).astype(np.float32), rng.uniform(90, 110, (n, 8)).astype(np.float32)]


@pytest.fixture(scope="module")
def two_inputs():
    rng = np.random.default_rng(0)
    return two_input_model(), two_input_samples(rng, 64), two_input_samples(rng, 32)


def test_ptq_of_two_inputs_keeps_each_branch(two_inputs, tmp_path):
    """Plain PTQ (float I/O): each output within 5 % of the Keras output's largest value (calibrated on the other
    input's samples, the small branch's outputs, at most 2, would be quantized in steps of about 1.2)."""
    from edgeopt.evaluate import run_keras, run_tflite
    from edgeopt.quantization.ptq import quantize_int8

    model, calib, held = two_inputs
    path = tmp_path / "two.tflite"
    path.write_bytes(quantize_int8(model, calib, input_names=NAMES, output_names=OUTS, io_type="float32"))
    got = run_tflite(path, held, input_names=NAMES, output_names=OUTS)
    for want, out in zip(run_keras(model, held), got):
        err = np.max(np.abs(out - want)) / np.max(want)
        assert err < 0.05, err


def test_sensitivity_debugger_feeds_each_input_its_own_samples(two_inputs, tmp_path):
    """The quantization debugger's per-op error of both Dense ops is small: fed the other input's samples, the
    small branch's op would see values far outside its calibrated range."""
    from edgeopt.quantization.sensitivity import analyse

    model, calib, held = two_inputs
    result = analyse(model, calib, held, input_names=NAMES, output_names=OUTS, output_specs=None,
                     workdir=tmp_path, end_to_end=False)
    rows = result["layers"]
    assert [r["op"] for r in rows] == ["FULLY_CONNECTED", "FULLY_CONNECTED"]
    for row in rows:
        assert row["rmse_steps"] < 1.0, row


def test_calibration_samples_name_each_input():
    from edgeopt.quantization.ptq import calibration_samples

    first = next(calibration_samples([np.zeros((2, 3)), np.ones((2, 5))], ["z", "a"]))
    assert sorted(first) == ["a", "z"] and first["a"].shape == (1, 5) and first["z"].shape == (1, 3)
    single = next(calibration_samples([np.zeros((2, 3))], ["x"]))
    assert isinstance(single, list) and single[0].shape == (1, 3)
    with pytest.raises(ValueError, match="2 calibration arrays for 1 input names"):
        next(calibration_samples([np.zeros((2, 3)), np.ones((2, 5))], ["z"]))
