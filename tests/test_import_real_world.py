"""What trained models bring besides plain ops: erf-form GELU, already-quantized (QDQ) graphs, external weight
files, huge folded constants, NHWC inputs from any exporter, PP-OCR's unequal depthwise strides, near-constant
outputs, and converter refusals that must name their ONNX node."""
from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import edgeopt
from edgeopt.frontends import load_model
from onnx_builders import layer_types, model, node, parity, rand, save, worst

TOL = 1e-4
REPORT = {"latency_runs": 2, "warmup_runs": 1, "delegates": False}


def _gelu_nodes(form: str) -> list:
    s2, h = "sqrt2", "half"
    first = node("Div", ["x", s2], ["d"]) if form != "mul-inv" else node("Mul", ["inv", "x"], ["d"])
    rest = [node("Erf", ["d"], ["e"]), node("Add", ["e", "one"], ["a"])]
    if form in ("div", "mul-inv"):  # torch: x * (1 + erf) * 0.5
        rest += [node("Mul", ["x", "a"], ["m"]), node("Mul", ["m", h], ["y"])]
    elif form == "half-first":  # (x * 0.5) * (1 + erf)
        rest += [node("Mul", ["x", h], ["xh"]), node("Mul", ["xh", "a"], ["y"])]
    else:  # (1 + erf) * 0.5 * x
        rest += [node("Mul", ["a", h], ["m"]), node("Mul", ["m", "x"], ["y"])]
    return [first] + rest


@pytest.mark.parametrize("form", ["div", "mul-inv", "half-first", "half-then-x"])
def test_erf_gelu_becomes_one_gelu(form, tmp_path):
    inits = {"sqrt2": np.float32(math.sqrt(2)), "inv": np.float32(1 / math.sqrt(2)), "one": np.float32(1.0),
             "half": np.float32(0.5)}
    m = model(_gelu_nodes(form), [("x", [1, 8, 6])], ["y"], inits, opset=17)
    report, imp = parity(m, tmp_path, low=-4, high=4)
    assert worst(report) <= TOL, report
    assert layer_types(imp).count("UnaryOp") == 1 and imp.model.layers[-1].fn == "gelu"
    assert any("1 erf-form GELU" in n for n in imp.notes)


def test_gelu_op20_and_converter_maps_it(tmp_path):
    from edgeopt.analyze.tflite import read_tflite

    m = model([node("Gelu", ["x"], ["g"]), node("Gelu", ["g"], ["y"], approximate="tanh")], [("x", [1, 16])], ["y"],
              opset=20)
    m.ir_version = 9
    report, _ = parity(m, tmp_path, low=-3, high=3)
    assert worst(report) <= TOL, report
    res = edgeopt.compress(save(m, tmp_path), precision="fp32", output=tmp_path / "g.tflite", report=None)
    hist = read_tflite(res.output).op_histogram
    assert hist.get("GELU") == 2 and "CUSTOM" not in hist and "ERF" not in hist, hist


def test_converter_refusal_names_the_onnx_node(tmp_path):
    from edgeopt.errors import ConversionError

    m = model([node("Erf", ["x"], ["e"], name="lonely_erf"), node("Relu", ["e"], ["y"])], [("x", [1, 8])], ["y"])
    with pytest.raises(ConversionError) as info:
        edgeopt.compress(save(m, tmp_path), precision="fp16", output=tmp_path / "e.tflite", report=None)
    text = str(info.value)
    assert "no builtin kernel for Erf" in text and "node lonely_erf (Erf)" in text, text
    assert "tf_saved_model" not in text and len(text) < 600


def _small_cnn():
    w1, w2 = rand(8, 3, 3, 3, seed=1), rand(4, 8, 1, 1, seed=2)
    nodes = [node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), node("Relu", ["c1"], ["r1"]),
             node("Conv", ["r1", "w2"], ["c2"]), node("GlobalAveragePool", ["c2"], ["g"]),
             node("Flatten", ["g"], ["y"])]
    return model(nodes, [("x", [1, 3, 16, 16])], ["y"], {"w1": w1, "b1": rand(8, seed=3), "w2": w2}, opset=13)


def test_qdq_model_from_quantize_static(tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    src = save(_small_cnn(), tmp_path, "fp32.onnx")
    rng = np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"x": rng.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(8)])

        def get_next(self):
            return next(self.items, None)

    qdq = tmp_path / "qdq.onnx"
    quantize_static(str(src), str(qdq), Reader(), quant_format=QuantFormat.QDQ)
    ops = {n.op_type for n in onnx.load(str(qdq)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    imp = load_model(qdq)
    assert any("already-quantized (QDQ) model: 3 integer weight tensor(s)" in n for n in imp.notes), imp.notes
    calib = tmp_path / "calib.npy"
    np.save(calib, rng.uniform(0, 1, (30, 3, 16, 16)).astype(np.float32))
    res = edgeopt.compress(qdq, precision="int8", calib=calib, output=tmp_path / "q_int8.tflite", report=REPORT)
    par = res.report["import_parity"]
    assert par["passed"] and max(o["max_rel_error"] for o in par["outputs"]) <= TOL
    assert "QDQ model" in par["note"] and par["qdq_vs_float32_max_abs"][0] > 0  # the original's own INT8 noise
    assert res.report["fidelity"][0]["cosine_mean"] >= 0.99


def test_external_data_from_another_directory(tmp_path, monkeypatch):
    m = _small_cnn()
    folder = tmp_path / "model"
    folder.mkdir()
    onnx.save(m, str(folder / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.data", size_threshold=0)
    assert (folder / "ext.data").stat().st_size > 1000
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = edgeopt.compress(folder / "ext.onnx", precision="int8", output=tmp_path / "ext_int8.tflite", report=REPORT)
    par = res.report["import_parity"]
    assert par["passed"] and max(o["max_rel_error"] for o in par["outputs"]) <= TOL and res.output.exists()


def test_vgg_class_constant_of_shape_folds():
    from edgeopt.frontends.onnx.fold import evaluate

    # 25088 x 4096 = 102.8M elements, the size of VGG-16's first classifier weight
    n = node("ConstantOfShape", ["s"], ["w"], value=numpy_helper.from_array(np.array([0.5], np.float32)))
    (w,) = evaluate(n, [np.array([25088, 4096], np.int64)], 13)
    assert w.shape == (25088, 4096) and float(w[-1, -1]) == 0.5


def test_unequal_depthwise_strides(tmp_path):
    # PP-OCR's recognizer backbones stride (2, 1): TF's depthwise kernel takes equal strides only
    m = model([node("Conv", ["x", "w", "b"], ["y"], group=6, strides=[2, 1], pads=[1, 1, 1, 1])],
              [("x", [1, 6, 9, 12])], ["y"], {"w": rand(6, 1, 3, 3), "b": rand(6)})
    report, imp = parity(m, tmp_path)
    assert worst(report) <= TOL, report
    assert imp.outputs[0].onnx_shape == (1, 6, 5, 12) and "DepthwiseConv2D" in layer_types(imp)


def test_near_constant_output_on_random_inputs_asks_for_data(tmp_path):
    # a detector's sigmoid map that random inputs leave at ~1e-5 everywhere
    nodes = [node("Conv", ["x", "w", "b"], ["c"]), node("Sigmoid", ["c"], ["y"])]
    m = model(nodes, [("x", [1, 3, 8, 8])], ["y"], {"w": rand(1, 3, 1, 1, scale=1e-3), "b": np.array([-11.5], np.float32)})
    report, _ = parity(m, tmp_path)
    out = report["outputs"][0]
    assert out["scale"] < 2e-5 and out["max_rel_error"] <= TOL  # judged against the absolute floor
    from edgeopt.frontends.parity import _compare

    flat = _compare("p", np.full((4, 6), 1.02e-5), np.full((4, 6), 1e-5))
    assert flat["max_rel_error"] == pytest.approx(2e-7 / 1e-2)


def _keras_like_nhwc(producer: str):
    """A Keras-export-style graph: NHWC input, ZeroPadding2D (Pad) and a Rescaling before the transpose."""
    nodes = [node("Sub", ["x", "mean"], ["s"]), node("Pad", ["s", "pads"], ["p"]),
             node("Transpose", ["p"], ["t"], perm=[0, 3, 1, 2]), node("Conv", ["t", "w"], ["c"]),
             node("Relu", ["c"], ["r"]), node("GlobalAveragePool", ["r"], ["g"]), node("Flatten", ["g"], ["y"])]
    m = model(nodes, [("x", [1, 24, 24, 3])], ["y"],
              {"mean": np.array([0.4, 0.5, 0.6], np.float32), "pads": np.array([0, 1, 1, 0, 0, 1, 1, 0], np.int64),
               "w": rand(5, 3, 3, 3)})
    m.producer_name = producer
    return m


@pytest.mark.parametrize("producer", ["keras2onnx", "onnxmltools", "pytorch"])
def test_nhwc_input_read_from_the_graph(producer, tmp_path):
    m = _keras_like_nhwc(producer)
    report, imp = parity(m, tmp_path, low=0, high=1)
    assert worst(report) <= TOL and imp.inputs[0].keras_shape == (1, 24, 24, 3) and imp.inputs[0].perm is None
    # images and mean/std go to its 3 channels, calibration included
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    for data in ({}, {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}):
        res = edgeopt.compress(save(m, tmp_path), precision="int8", calib=folder, output=tmp_path / "n.tflite",
                               data=data, report=REPORT)
        par = res.report["import_parity"]
        assert par["passed"] and max(o["max_rel_error"] for o in par["outputs"]) <= TOL


def _export_nhwc(exporter: str, path):
    """A small NHWC image model exported by a real exporter: Keras through tf2onnx or onnxmltools, or torch with
    the permute to NCHW inside its forward."""
    if exporter == "torch":
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv, self.fc = torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.Linear(8, 4)

            def forward(self, x):  # x: [N, H, W, 3]
                x = torch.relu(self.conv(x.permute(0, 3, 1, 2) / 127.5 - 1.0))
                return self.fc(x.mean((2, 3)))

        torch.manual_seed(0)
        torch.onnx.export(Net().eval(), torch.zeros(1, 32, 32, 3), str(path), dynamo=False, opset_version=17,
                          input_names=["image"])
        return path
    from edgeopt._tf import keras, tf

    K = keras()
    i = K.Input((32, 32, 3), name="image")
    x = K.layers.ZeroPadding2D(1)(K.layers.Rescaling(1 / 127.5, -1)(i))
    x = K.layers.Conv2D(8, 3, strides=2)(x)
    m = K.Model(i, K.layers.Dense(4)(K.layers.GlobalAveragePooling2D()(K.layers.ReLU()(x))))
    if exporter == "tf2onnx":
        import tf2onnx

        tf2onnx.convert.from_keras(m, input_signature=(tf().TensorSpec((None, 32, 32, 3), name="image"),),
                                   opset=13, output_path=str(path))
    else:
        import onnxmltools

        onnx.save(onnxmltools.convert_keras(m, target_opset=13), str(path))
    return path


@pytest.mark.parametrize("exporter", ["tf2onnx", "onnxmltools", "torch"])
def test_nhwc_models_from_real_exporters(exporter, tmp_path):
    path = _export_nhwc(exporter, tmp_path / "k.onnx")
    imp = load_model(path)
    assert imp.inputs[0].perm is None and imp.inputs[0].keras_shape == (1, 32, 32, 3)
    from edgeopt.frontends.parity import check_parity

    rep = check_parity(imp, samples=[np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)])
    assert rep["passed"] and rep["outputs"][0]["max_rel_error"] <= TOL


def test_ceil_mode_max_pool_keeps_int8_ranges(tmp_path):
    # MTCNN pools with ceil_mode after a PReLU (values of both signs): the overhang must not widen the int8 range
    from ai_edge_litert.interpreter import Interpreter

    nodes = [node("Conv", ["x", "w"], ["c"]), node("PRelu", ["c", "a"], ["p"]),
             node("MaxPool", ["p"], ["m"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
             node("Flatten", ["m"], ["y"])]
    m = model(nodes, [("x", [1, 3, 24, 24])], ["y"], {"w": rand(8, 3, 3, 3), "a": np.full((8, 1, 1), 0.25, np.float32)})
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).uniform(-1, 1, (40, 3, 24, 24)).astype(np.float32))
    res = edgeopt.compress(save(m, tmp_path), precision="int8", calib=calib, output=tmp_path / "p.tflite", report=REPORT)
    interp = Interpreter(model_path=str(res.output))  # with XNNPACK, as an app would load it
    interp.allocate_tensors()
    scales = [float(s) for t in interp.get_tensor_details() for s in t["quantization_parameters"]["scales"]]
    assert max(scales) < 1.0, max(scales)
    assert res.report["fidelity"][0]["cosine_mean"] >= 0.999
