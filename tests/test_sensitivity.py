"""Per-op INT8 sensitivity: the local error of every quantized op, the fidelity with one op kept in float, the
ranking, `edgeopt inspect --sensitivity`, the report's section, and SqueezeNet from the real material."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgeopt
from edgeopt.quantization.sensitivity import analyse, requantize

from images import photo_crops, write_image_folder
from train_helpers import CNN, IMAGES, run_edgeopt


def _outlier_model():
    """conv → conv → conv; the middle one has weights of 1000 on an input channel that is always 0 (a dead ReLU
    channel of the first conv). In float they change nothing; in INT8 they set every filter's weight scale, so the
    real weights round to 0. Keeping that one op in float repairs the model."""
    from edgeopt._tf import keras

    k = keras()
    k.utils.set_random_seed(0)
    x = k.Input((12, 12, 3))
    a = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="first")(x)
    b = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="outlier")(a)
    c = k.layers.Conv2D(4, 1, name="last")(b)
    model = k.Model(x, k.layers.Flatten()(k.layers.GlobalAveragePooling2D()(c)))
    w, bias = model.get_layer("first").get_weights()
    w[..., 7], bias[7] = 0.0, -1.0  # channel 7: relu(-1) = 0 for every input
    model.get_layer("first").set_weights([w, bias])
    w, bias = model.get_layer("outlier").get_weights()
    w[:, :, 7, :] = 1000.0
    model.get_layer("outlier").set_weights([w, bias])
    return model


def test_the_op_with_an_outlier_channel_ranks_first(tmp_path):
    from edgeopt.analyze.tflite import read_tflite
    from edgeopt.frontends.spec import TensorSpec

    model = _outlier_model()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (96, 12, 12, 3)).astype(np.float32)
    specs = [TensorSpec("y", (1, 4), (1, 4), "float32", None)]
    res = analyse(model, [x[:64]], [x[64:]], input_names=["x"], output_names=["y"], output_specs=specs,
                  workdir=tmp_path)
    rows = res["layers"]
    assert res["samples"] == 32 and len(rows) >= 3
    top = rows[0]
    assert top["layers"][0] == "outlier", [r["layers"] for r in rows]
    assert top["relative_rmse"] == max(r["relative_rmse"] for r in rows) and top["rmse_steps"] > 10
    assert res["all_int8"]["cosine"] < 0.5  # the float model's output is lost...
    assert top["float_alone"]["cosine"] > 0.999  # ...and this one op in float brings it back
    gains = [r["gain_cosine"] for r in rows]
    assert gains == sorted(gains, reverse=True)
    for r in rows:  # every quantized op has its local figures
        assert r["rmse"] >= 0 and r["scale"] > 0 and r["op"]
    # keeping the op in float really leaves a float conv in the file (between DEQUANTIZE and QUANTIZE)
    path = tmp_path / "one_float.tflite"
    from edgeopt.quantization.sensitivity import debugger

    dbg = debugger(model, [x[:64]], [x[64:66]], input_names=["x"], output_names=["y"])
    path.write_bytes(requantize(dbg.calibrated_model, float_ops=[top["tensor"]]))
    hist = read_tflite(path).to_dict()["op_histogram"]
    assert hist.get("DEQUANTIZE", 0) >= 1 and hist.get("QUANTIZE", 0) >= 1
    plain = tmp_path / "all_int8.tflite"
    plain.write_bytes(requantize(dbg.calibrated_model))
    assert read_tflite(plain).to_dict()["op_histogram"].get("DEQUANTIZE", 0) == \
        hist.get("DEQUANTIZE", 0) - 1


def test_inspect_sensitivity_and_the_report_section(tmp_path):
    out = tmp_path / "s.json"
    res = run_edgeopt(["inspect", "--sensitivity", CNN, "--calib", IMAGES, "--json", out], COLUMNS="220")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "most damaging first" in res.stdout and "/features/features.0/features.0.0/Conv" in res.stdout
    doc = json.loads(out.read_text())
    rows = doc["sensitivity"]["layers"]
    assert {r["op"] for r in rows} >= {"CONV_2D", "FULLY_CONNECTED"}
    assert sum(r["op"] == "CONV_2D" for r in rows) == 4  # every conv of the demo CNN
    assert doc["sensitivity"]["samples"] == 51 and doc["sensitivity"]["all_int8"]["top1_agreement"] >= 0.95
    refused = run_edgeopt(["inspect", "--sensitivity", CNN])
    assert refused.returncode == 2 and "--calib" in refused.stderr
    # compress --sensitivity puts the table in the report
    rep_out = tmp_path / "c_int8.tflite"
    comp = run_edgeopt(["compress", CNN, "--int8", "--calib", IMAGES, "--sensitivity", "--latency-runs", "5",
                        "-o", rep_out])
    assert comp.returncode == 0, comp.stderr[-3000:]
    rep = json.loads(rep_out.with_name("c_int8.report.json").read_text())
    assert len(rep["sensitivity"]["layers"]) == len(rows)
    md = rep_out.with_name("c_int8.report.md").read_text()
    assert "## INT8 sensitivity per op" in md and "| 1 | " in md


@pytest.mark.slow
def test_squeezenet_sensitivity_lists_every_layer(tmp_path, material):
    """SqueezeNet 1.0 (fp16 weights): every quantized op of its INT8 model is listed with its error."""
    from edgeopt.analyze.tflite import read_tflite

    model = material("models", "squeezenet1.0_fp16_opset7.onnx")
    folder = write_image_folder(tmp_path / "photos", photo_crops(96, (224, 224), seed=2))
    out = tmp_path / "sq_int8.tflite"
    res = edgeopt.compress(model, precision="int8", calib=folder, output=out,
                           data={"value_range": (0.0, 255.0), "channel_order": "bgr",
                                 "mean": (104.0, 117.0, 123.0), "calib_samples": 96, "holdout": 0.5},
                           report={"latency_runs": 5, "sensitivity": True, "delegates": False})
    sens = res.report["sensitivity"]
    rows = sens["layers"]
    ops = read_tflite(out).to_dict()["op_histogram"]
    convs = sum(r["op"] == "CONV_2D" for r in rows)
    print("squeezenet sensitivity", sens["all_int8"], [(r["layers"][0], r["gain_cosine"]) for r in rows[:5]])
    assert convs == ops["CONV_2D"] == 26  # 2 + 8 fire modules x 3
    assert len(rows) >= convs + 8  # and the pools, concatenations and the softmax
    assert all(r["rmse_steps"] is not None and "float_alone" in r for r in rows if r["op"] == "CONV_2D")
    assert sens["samples"] == 48


def _outlier_files(tmp_path):
    """The outlier model as a .keras file and 128 inputs whose float top-1 varies (.npy, Keras layout)."""
    model = _outlier_model()
    path = tmp_path / "outlier.keras"
    model.save(path)
    rng = np.random.default_rng(0)
    x = (rng.uniform(0, 1, (128, 1, 1, 3)) ** 3 * rng.uniform(0, 1, (128, 12, 12, 3)) * 3).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return path, tmp_path / "x.npy"


def test_min_agreement_keeps_the_damaging_op_in_float(tmp_path):
    from edgeopt.analyze.tflite import read_tflite

    model, data = _outlier_files(tmp_path)
    out = tmp_path / "b_int8.tflite"
    res = edgeopt.compress(model, precision="int8", calib=data, output=out,
                           ptq_params={"min_agreement": 0.99, "ptq_repair": "none"}, report={"latency_runs": 5})
    rep = res.report
    assert "ptq_repair" not in rep
    b = rep["budget"]
    assert b["metric"] == "agreement" and b["met"] and b["value"] >= 0.99
    assert b["all_int8"] < 0.9  # every op in INT8 misses the budget...
    assert b["float_ops"][0]["layers"][0] == "outlier"  # ...and the most damaging op is the first kept in float
    assert b["float_fraction"] == len(b["float_ops"]) / b["ops_total"]
    assert [s["float_ops"] for s in b["steps"]] == list(range(len(b["float_ops"]) + 1))
    assert rep["fidelity"][0]["top1_agreement"] >= 0.99  # the written file is the chosen one
    assert set(rep["models"]) == {"fp32", "int8", "int8 every op"}
    assert rep["models"]["int8"]["size_bytes"] > rep["models"]["int8 every op"]["size_bytes"]
    hist = read_tflite(out).to_dict()["op_histogram"]
    assert hist.get("DEQUANTIZE", 0) >= 1  # an int8 file with float islands, int8 at its inputs and outputs
    from edgeopt.runtime import TFLiteModel

    m = TFLiteModel(out)
    assert [str(np.dtype(d["dtype"])) for d in m.input_details.values()] == ["int8"]
    md = out.with_name("b_int8.report.md").read_text()
    assert "## Accuracy budget" in md and "kept in float: `outlier` (CONV_2D)" in md


def test_the_budget_starts_from_the_repaired_model(tmp_path):
    """By default the PTQ repair runs first and the budget keeps ops in float from its result: the budget's
    every-op-INT8 figure is the repaired model's top-1 agreement on the same held-back samples, against the
    original model; the report has both sections."""
    model, data = _outlier_files(tmp_path)
    out = tmp_path / "r_int8.tflite"
    res = edgeopt.compress(model, precision="int8", calib=data, output=out, ptq_params={"min_agreement": 0.99},
                           report={"latency_runs": 5})
    rep = res.report
    repair, b = rep["ptq_repair"], rep["budget"]
    print("repair", repair["plain"], repair["final"], repair["kept"], "budget", b["all_int8"], b["value"],
          len(b["float_ops"]))
    assert b["metric"] == "agreement" and b["met"] and b["value"] >= 0.99
    assert b["all_int8"] == repair["final"]["top1_agreement"]
    # rounding the outlier conv's real weights to 0 leaves it an output range of 0, which LiteRT refuses to run:
    # the step is recorded as not applicable, with the reason, and the run goes on
    rounding = next(st for st in repair["steps"] if st["step"] == "rounding")
    assert not rounding["applicable"] and "does not run in LiteRT" in rounding["why"], rounding
    assert rep["fidelity"][0]["top1_agreement"] == b["value"]  # the written file is the budget's choice
    md = out.with_name("r_int8.report.md").read_text()
    assert "## Accuracy budget" in md and "## PTQ repair" in md


def test_budget_errors(tmp_path):
    from edgeopt.errors import RecipeError

    model, data = _outlier_files(tmp_path)
    with pytest.raises(RecipeError, match="against labels"):
        edgeopt.compress(model, precision="int8", calib=data, output=tmp_path / "x.tflite",
                         ptq_params={"max_accuracy_drop": 0.5})
    with pytest.raises(RecipeError, match="give one budget"):
        edgeopt.compress(model, precision="int8", calib=data, output=tmp_path / "x.tflite",
                         ptq_params={"max_accuracy_drop": 0.5, "min_agreement": 0.9})
    res = run_edgeopt(["compress", model, "--fp16", "--min-agreement", "0.99", "-o", tmp_path / "x.tflite"])
    assert res.returncode == 2 and "give --int8" in res.stderr


def test_max_accuracy_drop_with_labels(tmp_path):
    """The demo CNN on its labeled Fashion-MNIST subset: the budget is measured in points of top-1 below the Keras
    model, on the labeled held-back samples."""
    from train_helpers import LABELS

    out = tmp_path / "a_int8.tflite"
    res = edgeopt.compress(CNN, precision="int8", calib=IMAGES, output=out, data={"labels": str(LABELS)},
                           ptq_params={"max_accuracy_drop": 0.0}, report={"latency_runs": 5})
    b = res.report["budget"]
    assert b["metric"] == "accuracy_drop" and b["met"] and b["value"] <= 0.0
    assert "labeled" in b["measured_on"] or "held back" in b["measured_on"]
    acc = res.report["accuracy"]["models"]
    assert acc["int8"]["top1"]["accuracy"] >= acc["original"]["top1"]["accuracy"] - 1e-9
