"""ONNX summaries: op histogram, params and MACs of built and real models; the same MACs in Keras, TFLite and ONNX."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeopt.analyze.keras_summary import keras_summary
from edgeopt.analyze.onnx_summary import summarize_onnx
from edgeopt.analyze.tflite import read_tflite
from edgeopt.errors import ModelFileError
from test_analyze_tflite import MACS, PARAMS, build_cnn, convert


def cnn_onnx(path):
    """The ONNX twin of test_analyze_tflite.build_cnn (NCHW): same layers, same weight counts."""
    rng = np.random.default_rng(0)

    def init(name, *shape):
        return numpy_helper.from_array(rng.normal(0, 0.1, shape).astype(np.float32), name)

    inits = [init("w1", 8, 3, 3, 3), init("b1", 8), init("w2", 8, 1, 3, 3), init("b2", 8),
             init("w3", 16, 8, 1, 1), init("b3", 16), init("w4", 32, 4096), init("b4", 32),
             init("w5", 10, 32), init("b5", 10)]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], kernel_shape=[1, 1]),
        helper.make_node("MaxPool", ["c3"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w4", "b4"], ["g1"], transB=1),
        helper.make_node("Relu", ["g1"], ["r4"]),
        helper.make_node("Gemm", ["r4", "w5", "b5"], ["y"], transB=1),
    ]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path.write_bytes(model.SerializeToString())
    return path


def test_built_model_histogram_params_macs(tmp_path):
    s = summarize_onnx(cnn_onnx(tmp_path / "cnn.onnx"))
    assert dict(s.op_histogram) == {"Conv": 3, "Relu": 3, "MaxPool": 1, "Flatten": 1, "Gemm": 2}
    assert s.params == PARAMS == 131_882
    # the grouped (depthwise) Conv reads kh*kw*Cin/groups = 9 inputs per output: 32*32*8*9 = 73,728
    assert list(s.macs_by_node.values()) == [221_184, 73_728, 131_072, 131_072, 320]
    assert s.macs == MACS
    assert (s.opset, s.checker_error, s.macs_unknown) == (13, None, ())
    assert s.inputs[0].shape == (1, 3, 32, 32) and s.inputs[0].dtype == "float32"


def test_keras_tflite_and_onnx_agree_on_macs(tmp_path):
    """One network, three views: Keras layer shapes, the FP32 .tflite, and the ONNX twin give the same MACs."""
    model = build_cnn()
    tfl = tmp_path / "cnn.tflite"
    tfl.write_bytes(convert(model, "fp32"))
    views = (keras_summary(model)["macs"], read_tflite(tfl).macs, summarize_onnx(cnn_onnx(tmp_path / "c.onnx")).macs)
    assert views == (557_376, 557_376, 557_376)


def test_real_mnist_matches_the_published_numbers(material):
    s = summarize_onnx(material("models", "mnist_cntk_opset8.onnx"))
    assert dict(s.op_histogram) == {"Reshape": 2, "Conv": 2, "Add": 3, "Relu": 2, "MaxPool": 2, "MatMul": 1}
    assert s.params == 5_998 and s.opset == 8
    # conv 5x5 1->8 at 28x28: 28*28*8*25 = 156,800; conv 5x5 8->16 at 14x14: 14*14*16*200 = 627,200;
    # MatMul 256->10: 2,560
    assert s.macs == 156_800 + 627_200 + 2_560
    assert (s.inputs[0].name, s.inputs[0].shape) == ("Input3", (1, 1, 28, 28))


def test_dynamic_batch_is_reported_by_name(material):
    s = summarize_onnx(material("models", "cifar10_cnn_opset10.onnx"))
    assert s.inputs[0].shape == ("batch_size", 3, 32, 32)
    assert s.op_histogram["Conv"] == 4 and s.op_histogram["Gemm"] == 1
    # 50,182 weights (README) + the 2-element shape of the Constant node feeding Reshape
    assert s.params == 50_182 + 2


def test_ir_v1_file_is_summarised_with_the_checker_error(material):
    s = summarize_onnx(material("models", "bad", "super_resolution_ir_v1.onnx"))
    assert s.ir_version == 1 and s.opsets == {}
    assert s.checker_error and "kernel_shape" in s.checker_error


@pytest.mark.parametrize("content, message", [
    (b"this is not a model\n", "not a readable ONNX model"),
    (b"", "holds no ONNX graph"),
])
def test_bad_onnx_files_raise_model_file_error(tmp_path, content, message):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        summarize_onnx(p)


def test_truncated_and_missing_onnx_raise_model_file_error(tmp_path):
    data = cnn_onnx(tmp_path / "cnn.onnx").read_bytes()
    p = tmp_path / "truncated.onnx"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="not a readable ONNX model"):
        summarize_onnx(p)
    with pytest.raises(ModelFileError, match="does not exist"):
        summarize_onnx(tmp_path / "missing.onnx")
