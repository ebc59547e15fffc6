"""Files that cannot be imported fail with the right EdgeoptError, naming the file, node and op."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from conftest import material_path
from edgeopt.errors import ModelFileError, UnsupportedModelError
from edgeopt.frontends import load_model
from onnx_builders import model, node, rand, save, single


def _raises(exc, path, *needles, **kw):
    with pytest.raises(exc) as info:
        load_model(path, **kw)
    text = str(info.value)
    for needle in needles:
        assert needle in text, text
    return text


def test_missing_file(tmp_path):
    _raises(ModelFileError, tmp_path / "nope.onnx", "not found", "nope.onnx")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    _raises(ModelFileError, p, "empty", "empty.onnx")


@pytest.mark.parametrize("content", [b"hello, I am a text file\n" * 20, bytes(range(256)) * 8,
                                     b"\x89PNG\r\n\x1a\n" + bytes(200), b"\x08\x07" + b"\xff" * 100])
def test_not_onnx(content, tmp_path):
    p = tmp_path / "thing.onnx"
    p.write_bytes(content)
    _raises(ModelFileError, p, "thing.onnx")


def test_unknown_format(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("not a model")
    _raises(ModelFileError, p, "notes.txt", ".onnx", ".keras")


def test_truncated(tmp_path):
    m = single("Conv", (1, 3, 8, 8), {"w": rand(4, 3, 3, 3)}, ["w"])
    data = m.SerializeToString()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: len(data) // 2])
    _raises(ModelFileError, p, "cut.onnx")


def test_ir_v1_without_opset():
    text = _raises(ModelFileError, material_path("models", "bad", "super_resolution_ir_v1.onnx"), "IR version 1",
                   "super_resolution_ir_v1.onnx")
    assert "3.." in text


def test_custom_domain():
    text = _raises(UnsupportedModelError, material_path("models", "bad", "superres_custom_domain_op18.onnx"),
                   "com.microsoft.extensions", "DecodeImage", "EncodeImage", "superres_custom_domain_op18.onnx")
    assert "node '" in text


@pytest.mark.parametrize("opset", [6, 22])
def test_opset_out_of_range(opset, tmp_path):
    m = single("Relu", (1, 3, 4, 4))
    m.opset_import[0].version = opset
    _raises(UnsupportedModelError, save(m, tmp_path), f"opset {opset}", "7..21")


def test_unsupported_ops_listed_at_once(tmp_path):
    # an LSTM variant, integer-only ops, an onnxruntime fusion and plain unsupported ops: one error names them all
    nodes = [node("Relu", ["x"], ["r"], name="relu"),
             node("LSTM", ["r", "w", "rw"], ["l"], name="lstm_1", hidden_size=4, clip=3.0),
             node("DynamicQuantizeLinear", ["l"], ["q", "qs", "qz"], name="dq"),
             node("ConvInteger", ["q", "wi"], ["ci"], name="conv_int"),
             node("Gelu", ["ci"], ["g"], name="ms_gelu", domain="com.microsoft"),
             node("NonMaxSuppression", ["g", "g"], ["n"], name="nms"), node("Einsum", ["n"], ["y"], name="ein",
                                                                              equation="i->i")]
    m = model(nodes, [("x", [3, 1, 4])], ["y"], {"w": rand(1, 16, 4), "rw": rand(1, 16, 4),
                                                 "wi": np.ones((2, 1, 1), np.int8)})
    m.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    text = _raises(UnsupportedModelError, save(m, tmp_path), "unsupported ONNX ops",
                   "LSTM with cell clipping (clip) (node 'lstm_1')", "DynamicQuantizeLinear (node 'dq')",
                   "ConvInteger (node 'conv_int')", "com.microsoft::Gelu (node 'ms_gelu')",
                   "NonMaxSuppression (node 'nms')", "Einsum (node 'ein')")
    assert "hint" in text


def test_unused_domains_are_fine(tmp_path):
    m = single("Relu", (1, 3, 4, 4))
    m.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    assert load_model(save(m, tmp_path)).outputs[0].onnx_shape == (1, 3, 4, 4)


def test_dynamic_spatial_dims_need_input_shapes(tmp_path):
    m = single("Conv", ("N", 3, "H", "W"), {"w": rand(2, 3, 3, 3)}, ["w"])
    p = save(m, tmp_path)
    text = _raises(UnsupportedModelError, p, "--input-shape x:", "dynamic dimensions at axes [2, 3]")
    assert "input_shapes" not in text  # the hint names the flag, not the Python argument
    imp = load_model(p, input_shapes={"x": [1, 3, 12, 10]})
    assert imp.inputs[0].onnx_shape == (1, 3, 12, 10) and imp.outputs[0].onnx_shape == (1, 2, 10, 8)
    _raises(ModelFileError, p, "--input-shape gives [1, 4, 12, 10]", input_shapes={"x": [1, 4, 12, 10]})
    _raises(ModelFileError, p, "--input-shape names ['y']", input_shapes={"y": [1, 3, 12, 10]})


def test_runtime_weight_is_named(tmp_path):
    """A Conv whose weight is computed at run time is reported with its node name."""
    nodes = [node("Relu", ["w_in"], ["w"]), node("Conv", ["x", "w"], ["y"], name="conv_dyn")]
    m = model(nodes, [("x", [1, 3, 8, 8]), ("w_in", [2, 3, 3, 3])], ["y"])
    _raises(UnsupportedModelError, save(m, tmp_path), "conv_dyn", "Conv", "constant")


def test_integer_input(tmp_path):
    m = model([node("Cast", ["x"], ["y"], to=1)], [("x", [1, 4])], ["y"], dtype=onnx.TensorProto.INT64)
    m.graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    _raises(UnsupportedModelError, save(m, tmp_path), "INT64", "'x'")


def test_batch_mixing_reshape_is_reported(tmp_path):
    m = single("Reshape", (1, 4, 2, 2), {"s": np.array([4, 4], np.int64)}, ["s"])
    _raises(UnsupportedModelError, save(m, tmp_path), "reshape_node", "batch")


