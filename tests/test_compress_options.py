"""compress options end to end on the shipped demo model: I/O types, FP16, dynamic range, no calibration data,
recipes, and Keras files going through the same stages."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgeopt
from edgeopt.analyze.tflite import read_tflite

ASSETS = Path(edgeopt.__file__).parent / "assets"
MODEL = ASSETS / "fashion_mnist_cnn.onnx"
IMAGES = ASSETS / "fashion_mnist_subset-images-idx3-ubyte.gz"
FAST = {"latency_runs": 5, "warmup_runs": 1, "delegates": False}


@pytest.mark.parametrize("io_type, dtype", [("int8", "int8"), ("uint8", "uint8"), ("float32", "float32")])
def test_int8_io_types(tmp_path, io_type, dtype):
    res = edgeopt.compress(MODEL, precision="int8", calib=IMAGES, output=tmp_path / "m.tflite",
                           ptq_params={"io_type": io_type}, report=FAST)
    s = read_tflite(res.output)
    assert s.inputs[0].dtype == dtype and s.outputs[0].dtype == dtype
    assert s.weight_bytes_by_dtype.get("float32", 0) == 0
    if io_type == "float32":  # float in and out: QUANTIZE at the entry, DEQUANTIZE at the exit, int8 between
        assert s.op_histogram["QUANTIZE"] == 1 and s.op_histogram["DEQUANTIZE"] == 1
    else:
        assert s.fully_integer
    assert res.report["fidelity"][0]["top1_agreement"] >= 0.98
    assert res.report["size_ratio"] <= 0.3


def test_fp16_and_dynamic_range(tmp_path):
    fp16 = edgeopt.compress(MODEL, precision="fp16", calib=IMAGES, output=tmp_path / "h.tflite", report=FAST)
    dyn = edgeopt.compress(MODEL, precision="dynamic-range", calib=IMAGES, output=tmp_path / "d.tflite",
                           report=FAST)
    sh, sd = read_tflite(fp16.output), read_tflite(dyn.output)
    # fp16: every weight stored as float16, 2 bytes per param (biases included)
    assert sh.weight_bytes_by_dtype.get("float16", 0) >= 2 * 60_000
    assert 0.45 <= fp16.report["size_ratio"] <= 0.55
    assert sd.weight_bytes_by_dtype.get("int8", 0) > 0 and sd.inputs[0].dtype == "float32"
    for r in (fp16.report, dyn.report):
        assert r["fidelity"][0]["top1_agreement"] >= 0.98 and r["fidelity"][0]["cosine_mean"] >= 0.999


def test_without_calibration_data_warns(tmp_path):
    res = edgeopt.compress(MODEL, precision="int8", output=tmp_path / "m.tflite", report=FAST)
    assert any("no calibration data" in w for w in res.report["warnings"])
    assert res.report["evaluation_data"]["source"] == "random"


def test_recipe_and_cli_write_the_same_pipeline(tmp_path):
    out = tmp_path / "r.tflite"
    cmd = [sys.executable, "-m", "edgeopt.cli", "run", "recipes/int8_ptq.toml", str(MODEL), "--calib", str(IMAGES),
           "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=600)
    assert res.returncode == 0, res.stderr
    rep = json.loads(out.with_name("r.report.json").read_text())
    assert [s["stage"] for s in rep["lineage"]] == ["import", "quantize.ptq"]
    assert rep["lineage"][1]["params"] == {"io_type": "int8", "per_channel": True, "min_agreement": None,
                                           "max_accuracy_drop": None, "auto_granularity": False,
                                           "ptq_repair": "auto"}
    assert rep["settings"]["data"]["calib_samples"] == 256 and rep["settings"]["data"]["calib"] == str(IMAGES)
    assert rep["models"]["int8"]["latency"]["runs"] >= 50 and rep["complete"] is True and rep["incomplete"] == []
    svg = out.with_name("r.report.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<circle") == 4  # 2 models x 2 panels (a classifier: agreement)
    assert rep["plot"] == "r.report.svg"
    assert "Fidelity of int8 vs FP32" in out.with_name("r.report.md").read_text()


def test_keras_file_goes_through_the_same_stages(tmp_path):
    from edgeopt._tf import keras

    K = keras()
    x = K.Input((16, 16, 3))
    y = K.layers.Conv2D(8, 3, activation="relu")(x)
    y = K.layers.DepthwiseConv2D(3, activation="relu")(y)
    y = K.layers.GlobalAveragePooling2D()(y)
    model = K.Model(x, K.layers.Dense(4)(y))
    model.save(tmp_path / "small.h5")
    calib = np.random.default_rng(0).uniform(0, 1, (40, 16, 16, 3)).astype(np.float32)
    np.save(tmp_path / "calib.npy", calib)
    res = edgeopt.compress(tmp_path / "small.h5", precision="int8", calib=tmp_path / "calib.npy",
                           output=tmp_path / "k.tflite", report=FAST)
    rep = res.report
    assert rep["import_parity"]["reference"] is None  # the Keras model is its own reference
    assert rep["inputs"][0]["layout"] == "as-is" and rep["inputs"][0]["keras_shape"] == [1, 16, 16, 3]
    assert rep["conversion_parity"][0]["max_rel_error"] <= 1e-5
    assert rep["fidelity"][0]["cosine_mean"] >= 0.99
