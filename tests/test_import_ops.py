"""Per-op import parity: tiny ONNX models (8x8..16x16) built in-process, imported, compared with onnxruntime.

Every case asserts max_rel_error (max |keras - onnxruntime| / max |onnxruntime|) <= 1e-4 on random inputs in
[-1, 1] (batch 2), plus the Keras layer types where the mapping matters.
"""
from __future__ import annotations

import numpy as np
import pytest

from onnx_builders import layer_types, model, node, parity, rand, single, worst

TOL = 1e-4
X = (1, 4, 8, 8)


def _conv(opset=13, k=3, c_out=6, group=1, c_in=4, bias=True, size=8, **attrs):
    w = rand(c_out, c_in // group, k, k)
    inits = {"w": w, "b": rand(c_out)} if bias else {"w": w}
    return single("Conv", (1, c_in, size, size), inits, ["w", "b"] if bias else ["w"], opset=opset, group=group,
                  **attrs)


CONV = {
    "pad1-op7": lambda: _conv(7, pads=[1, 1, 1, 1]),
    "pad1-op11": lambda: _conv(11, pads=[1, 1, 1, 1]),
    "pad1-op17": lambda: _conv(17, pads=[1, 1, 1, 1]),
    "pad1-op21": lambda: _conv(21, pads=[1, 1, 1, 1]),
    "valid-nobias": lambda: _conv(bias=False),
    "stride2-pad1": lambda: _conv(strides=[2, 2], pads=[1, 1, 1, 1]),
    "stride2-odd": lambda: _conv(strides=[2, 2], pads=[1, 1, 1, 1], size=9),
    "asym-pads": lambda: _conv(pads=[0, 1, 2, 0]),
    "same-upper-s2": lambda: _conv(strides=[2, 2], auto_pad="SAME_UPPER"),
    "same-lower-s2": lambda: _conv(strides=[2, 2], auto_pad="SAME_LOWER", k=4),
    "auto-valid": lambda: _conv(auto_pad="VALID", k=2),
    "dilated": lambda: _conv(dilations=[2, 2], pads=[2, 2, 2, 2]),
    "grouped": lambda: _conv(group=2, pads=[1, 1, 1, 1]),
    "depthwise": lambda: _conv(group=4, c_out=4, pads=[1, 1, 1, 1]),
    "depthwise-mult2-s2": lambda: _conv(group=4, c_out=8, strides=[2, 2], pads=[1, 1, 1, 1]),
    "pointwise": lambda: _conv(k=1),
    "rect-kernel": lambda: single("Conv", X, {"w": rand(3, 4, 1, 3)}, ["w"], pads=[0, 1, 0, 1]),
}


@pytest.mark.parametrize("case", sorted(CONV))
def test_conv(case, tmp_path):
    report, imp = parity(CONV[case](), tmp_path)
    assert worst(report) <= TOL, report
    types = layer_types(imp)
    assert ("DepthwiseConv2D" if "depthwise" in case else "Conv2D") in types
    assert "Permute" not in types


def _deconv(k=4, s=2, p=1, c_in=4, c_out=3, bias=True, **attrs):
    inits = {"w": rand(c_in, c_out, k, k), "b": rand(c_out)}
    return single("ConvTranspose", (1, c_in, 6, 6), inits, ["w", "b"] if bias else ["w"], strides=[s, s],
                  pads=[p, p, p, p], **attrs)


DECONV = {
    "k4s2p1": lambda: _deconv(),
    "k2s2p0": lambda: _deconv(k=2, p=0),
    "k3s2p1-outpad1": lambda: _deconv(k=3, output_padding=[1, 1]),
    "k3s1p0-nobias": lambda: _deconv(k=3, s=1, p=0, bias=False),
    "k3s1-dilated": lambda: _deconv(k=3, s=1, p=0, dilations=[2, 2]),
    "same-upper": lambda: single("ConvTranspose", (1, 4, 6, 6), {"w": rand(4, 3, 3, 3)}, ["w"], strides=[2, 2],
                                 auto_pad="SAME_UPPER"),
    "output-shape": lambda: single("ConvTranspose", (1, 4, 6, 6), {"w": rand(4, 3, 3, 3)}, ["w"], strides=[2, 2],
                                   output_shape=[12, 12]),
}


@pytest.mark.parametrize("case", sorted(DECONV))
def test_conv_transpose(case, tmp_path):
    report, imp = parity(DECONV[case](), tmp_path)
    assert worst(report) <= TOL, report
    assert "Conv2DTranspose" in layer_types(imp)


def _bn(opset):
    inits = {"s": rand(4) + 1, "b": rand(4), "m": rand(4), "v": np.abs(rand(4)) + 0.5}
    return single("BatchNormalization", X, inits, ["s", "b", "m", "v"], opset=opset, epsilon=1e-5)


NORM = {
    "bn-op7": lambda: _bn(7),
    "bn-op9": lambda: _bn(9),
    "bn-op15": lambda: _bn(15),
    "instancenorm": lambda: single("InstanceNormalization", X, {"s": rand(4) + 1, "b": rand(4)}, ["s", "b"],
                                   epsilon=1e-5),
}


@pytest.mark.parametrize("case", sorted(NORM))
def test_norm(case, tmp_path):
    report, imp = parity(NORM[case](), tmp_path)
    assert worst(report) <= TOL, report
    assert ("BatchNormalization" if case.startswith("bn") else "GroupNormalization") in layer_types(imp)


def _clip_inputs(opset, lo, hi):
    inits = {k: np.array(v, np.float32) for k, v in (("lo", lo), ("hi", hi)) if v is not None}
    return single("Clip", X, inits, ["lo" if lo is not None else "", "hi" if hi is not None else ""], opset=opset)


def _x_hardsigmoid():
    nodes = [node("HardSigmoid", ["x"], ["h"], alpha=1 / 6, beta=0.5), node("Mul", ["x", "h"], ["y"])]
    return model(nodes, [("x", list(X))], ["y"])


def _silu():
    return model([node("Sigmoid", ["x"], ["s"]), node("Mul", ["x", "s"], ["y"])], [("x", list(X))], ["y"])


ACT = {
    "relu-op7": lambda: single("Relu", X, opset=7),
    "leakyrelu": lambda: single("LeakyRelu", X, alpha=0.1),
    "prelu-channel": lambda: single("PRelu", X, {"a": rand(4, 1, 1)}, ["a"]),
    "prelu-scalar": lambda: single("PRelu", X, {"a": np.array([0.25], np.float32)}, ["a"], opset=9),
    "clip06-attr-op7": lambda: single("Clip", X, opset=7, min=0.0, max=6.0),
    "clip06-inputs-op11": lambda: _clip_inputs(11, 0.0, 6.0),
    "clip06-inputs-op13": lambda: _clip_inputs(13, 0.0, 6.0),
    "clip-general": lambda: _clip_inputs(13, -0.5, 0.5),
    "clip-min-only": lambda: _clip_inputs(13, -0.2, None),
    "clip-max-only-attr": lambda: single("Clip", X, opset=9, max=0.3),
    "sigmoid": lambda: single("Sigmoid", X),
    "silu": _silu,
    "hardsigmoid-torch": lambda: single("HardSigmoid", X, alpha=1 / 6, beta=0.5),
    "hardsigmoid-default": lambda: single("HardSigmoid", X),
    "hardswish-op14": lambda: single("HardSwish", X, opset=14),
    "x-times-hardsigmoid": _x_hardsigmoid,
    "tanh": lambda: single("Tanh", X),
    "elu": lambda: single("Elu", X, alpha=0.5),
    "exp": lambda: single("Exp", X),
    "softmax-op11-axis1-flattens": lambda: single("Softmax", X, opset=11, axis=1),
    "softmax-op13-axis1-channels": lambda: single("Softmax", X, opset=13, axis=1),
    "softmax-op13-last": lambda: single("Softmax", X, opset=13),
    "softmax-2d-op9": lambda: single("Softmax", (1, 10), opset=9),
    "logsoftmax": lambda: single("LogSoftmax", (1, 10)),
    "identity-dropout": lambda: model([node("Identity", ["x"], ["i"]), node("Dropout", ["i"], ["d"]),
                                       node("Relu", ["d"], ["y"])], [("x", list(X))], ["y"], opset=12),
}


@pytest.mark.parametrize("case", sorted(ACT))
def test_activation(case, tmp_path):
    report, imp = parity(ACT[case](), tmp_path, low=-8 if "clip06" in case or "hard" in case else -1,
                         high=8 if "clip06" in case or "hard" in case else 1)
    assert worst(report) <= TOL, report
    types = layer_types(imp)
    if "clip06" in case:
        assert "ReLU" in types and imp.model.get_layer("clip_node").get_config()["max_value"] == 6.0
    if case == "prelu-channel":
        assert "PReLU" in types


def _bin(op, a_shape, b_const=None, b_shape=None, const_first=False, opset=13):
    if b_const is not None:
        ins = ["c", "x"] if const_first else ["x", "c"]
        return model([node(op, ins, ["y"])], [("x", list(a_shape))], ["y"], {"c": b_const}, opset=opset)
    return model([node(op, ["x", "z"], ["y"])], [("x", list(a_shape)), ("z", list(b_shape))], ["y"], opset=opset)


ELEM = {
    "add-tensors": lambda: _bin("Add", X, b_shape=X),
    "sub-tensors-op7": lambda: _bin("Sub", X, b_shape=X, opset=7),
    "mul-broadcast-se": lambda: _bin("Mul", X, b_shape=(1, 4, 1, 1)),
    "div-tensors": lambda: _bin("Div", X, b_shape=(1, 4, 8, 8)),
    "add-channel-const": lambda: _bin("Add", X, rand(4, 1, 1)),
    "mul-4d-const": lambda: _bin("Mul", X, rand(1, 4, 1, 1)),
    "add-width-const": lambda: _bin("Add", X, rand(8)),
    "add-full-const": lambda: _bin("Add", X, rand(4, 8, 8)),
    "sub-scalar-first": lambda: _bin("Sub", X, np.array(0.5, np.float32), const_first=True),
    "div-const-first": lambda: _bin("Div", X, np.full((4, 1, 1), 2.0, np.float32), const_first=True),
    "div-by-const": lambda: _bin("Div", X, np.array([3.0], np.float32)),
    "pow-const": lambda: _bin("Pow", X, np.array(2.0, np.float32)),
    "max-tensors": lambda: model([node("Max", ["x", "z"], ["y"])], [("x", list(X)), ("z", list(X))], ["y"]),
    "mean-3": lambda: model([node("Mean", ["x", "z", "x"], ["y"])], [("x", list(X)), ("z", list(X))], ["y"]),
}


@pytest.mark.parametrize("case", sorted(ELEM))
def test_elementwise(case, tmp_path):
    low = 0.5 if case.startswith("div-const-first") else -1
    report, _ = parity(ELEM[case](), tmp_path, low=low)
    assert worst(report) <= TOL, report


def _pool(op, size=8, **attrs):
    return single(op, (1, 4, size, size), **attrs)


POOL = {
    "max-k2s2": lambda: _pool("MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
    "max-k3s2p1": lambda: _pool("MaxPool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    "max-ceil": lambda: _pool("MaxPool", 9, kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
    "max-ceil-k3s2p1": lambda: _pool("MaxPool", 10, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
    "max-same-upper": lambda: _pool("MaxPool", 9, kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    "max-asym": lambda: _pool("MaxPool", kernel_shape=[2, 2], pads=[0, 0, 1, 1]),
    "max-op7": lambda: single("MaxPool", (1, 4, 8, 8), opset=7, kernel_shape=[2, 2], strides=[2, 2]),
    "avg-k2s2": lambda: _pool("AveragePool", kernel_shape=[2, 2], strides=[2, 2]),
    "avg-k3p1-exclude": lambda: _pool("AveragePool", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    "avg-k3s2p1-exclude": lambda: _pool("AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    "avg-k3p1-include": lambda: _pool("AveragePool", kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1),
    "avg-ceil": lambda: _pool("AveragePool", 9, kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    "avg-ceil-pads-include": lambda: _pool("AveragePool", 9, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                           ceil_mode=1, count_include_pad=1),
    "avg-same-upper": lambda: _pool("AveragePool", 9, kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    "global-avg": lambda: _pool("GlobalAveragePool"),
    "global-max": lambda: _pool("GlobalMaxPool"),
    "reducemean-hw-keep": lambda: single("ReduceMean", X, axes=[2, 3], keepdims=1),
    "reducemean-hw-drop": lambda: single("ReduceMean", X, axes=[2, 3], keepdims=0),
    "reducemean-channel": lambda: single("ReduceMean", X, axes=[1], keepdims=1),
    "reducemean-op18-input": lambda: single("ReduceMean", X, {"a": np.array([-2, -1], np.int64)}, ["a"], opset=18,
                                            keepdims=0),
    "reducesum-op13": lambda: single("ReduceSum", X, {"a": np.array([1], np.int64)}, ["a"], keepdims=0),
    "reducemax-w": lambda: single("ReduceMax", X, axes=[3], keepdims=1),
}


@pytest.mark.parametrize("case", sorted(POOL))
def test_pool_and_reduce(case, tmp_path):
    report, imp = parity(POOL[case](), tmp_path)
    assert worst(report) <= TOL, report
    if case.startswith("global-avg") or case == "reducemean-hw-keep":
        assert "GlobalAveragePooling2D" in layer_types(imp)


def _flatten_gemm(trans_b=1, alpha=1.0, beta=1.0, op="Flatten", opset=13):
    w = rand(5, 4 * 4 * 4) if trans_b else rand(4 * 4 * 4, 5)
    nodes = [node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), node("Relu", ["c"], ["r"])]
    if op == "Flatten":
        nodes.append(node("Flatten", ["r"], ["f"]))
    else:
        nodes.append(node("Reshape", ["r", "shape"], ["f"]))
    nodes.append(node("Gemm", ["f", "fw", "fb"], ["y"], transB=trans_b, alpha=alpha, beta=beta))
    inits = {"w": rand(4, 3, 3, 3), "fw": w, "fb": rand(5), "shape": np.array([-1, 64], np.int64)}
    return model(nodes, [("x", [1, 3, 4, 4])], ["y"], inits, opset=opset)


def _matmul_3d():
    return model([node("MatMul", ["x", "w"], ["y"])], [("x", [1, 6, 8])], ["y"], {"w": rand(8, 5)})


def _flatten_softmax():
    nodes = [node("Conv", ["x", "w"], ["c"]), node("Flatten", ["c"], ["f"]), node("Softmax", ["f"], ["y"], axis=1)]
    return model(nodes, [("x", [1, 3, 4, 4])], ["y"], {"w": rand(4, 3, 1, 1)})


def _matmul_add():
    nodes = [node("Flatten", ["x"], ["f"]), node("MatMul", ["f", "w"], ["m"]), node("Add", ["m", "b"], ["y"])]
    return model(nodes, [("x", list(X))], ["y"], {"w": rand(256, 7), "b": rand(7)}, opset=9)


def _flatten_bn1d_gemm():
    """Flatten of NHWC features, then BatchNorm1d, a bias, ReLU and a Linear: all absorb the NHWC feature order."""
    nodes = [node("Conv", ["x", "w"], ["c"]), node("Flatten", ["c"], ["f"]),
             node("BatchNormalization", ["f", "s", "b", "m", "v"], ["n"]), node("Add", ["n", "k"], ["a"]),
             node("Relu", ["a"], ["r"]), node("Gemm", ["r", "fw"], ["y"], transB=1)]
    inits = {"w": rand(4, 3, 1, 1), "s": rand(64) + 1, "b": rand(64), "m": rand(64), "v": np.abs(rand(64)) + 0.5,
             "k": rand(64), "fw": rand(5, 64)}
    return model(nodes, [("x", [1, 3, 4, 4])], ["y"], inits)


MATMUL = {
    "flatten-bn1d-add-relu-gemm": _flatten_bn1d_gemm,
    "flatten-gemm-transB": lambda: _flatten_gemm(),
    "flatten-gemm-alpha-beta": lambda: _flatten_gemm(0, alpha=0.5, beta=2.0),
    "reshape-gemm-op9": lambda: _flatten_gemm(op="Reshape", opset=9),
    "matmul-3d": _matmul_3d,
    "matmul-add-fused": _matmul_add,
    "flatten-then-softmax": _flatten_softmax,
}


@pytest.mark.parametrize("case", sorted(MATMUL))
def test_gemm_matmul(case, tmp_path):
    report, imp = parity(MATMUL[case](), tmp_path)
    assert worst(report) <= TOL, report
    types = layer_types(imp)
    assert "Dense" in types or case == "flatten-then-softmax"
    if case.startswith(("flatten-gemm", "reshape-gemm", "flatten-bn1d")):
        # Flatten of an NHWC conv output feeds Dense with permuted weight rows: no transpose at run time.
        assert "Permute" not in types
    if case == "matmul-add-fused":
        assert "ConstantOp" not in types


def _shuffle(opset=13):
    nodes = [node("Reshape", ["x", "s1"], ["a"]), node("Transpose", ["a"], ["b"], perm=[0, 2, 1, 3, 4]),
             node("Reshape", ["b", "s2"], ["c"]), node("Conv", ["c", "w"], ["y"])]
    inits = {"s1": np.array([1, 2, 4, 8, 8], np.int64), "s2": np.array([1, -1, 8, 8], np.int64), "w": rand(3, 8, 1, 1)}
    return model(nodes, [("x", [1, 8, 8, 8])], ["y"], inits, opset=opset)


def _dynamic_flatten():
    """torch's x.view(x.size(0), -1) in old exports: Shape → Gather → Unsqueeze → Concat → Reshape."""
    nodes = [node("Shape", ["x"], ["sh"]), node("Gather", ["sh", "zero"], ["n"], axis=0),
             node("Unsqueeze", ["n"], ["nu"], axes=[0]), node("Concat", ["nu", "minus1"], ["tgt"], axis=0),
             node("Reshape", ["x", "tgt"], ["f"]), node("Gemm", ["f", "w"], ["y"], transB=1)]
    inits = {"zero": np.array(0, np.int64), "minus1": np.array([-1], np.int64), "w": rand(3, 256)}
    return model(nodes, [("x", ["N", 4, 8, 8])], ["y"], inits, opset=11)


SHAPE = {
    "reshape-nc-hw": lambda: single("Reshape", X, {"s": np.array([1, 4, 64], np.int64)}, ["s"]),
    "reshape-zero-copy": lambda: single("Reshape", X, {"s": np.array([0, 0, -1], np.int64)}, ["s"]),
    "reshape-allowzero0-op14": lambda: single("Reshape", X, {"s": np.array([0, 16, 16], np.int64)}, ["s"],
                                              opset=14, allowzero=0),
    "channel-shuffle": _shuffle,
    "transpose-to-nhwc": lambda: single("Transpose", X, perm=[0, 2, 3, 1]),
    "transpose-hw": lambda: single("Transpose", X, perm=[0, 1, 3, 2]),
    "squeeze-attr-op11": lambda: single("Squeeze", (1, 4, 1, 8), opset=11, axes=[2]),
    "squeeze-input-op13": lambda: single("Squeeze", (1, 4, 1, 1), {"a": np.array([2, 3], np.int64)}, ["a"]),
    "unsqueeze-attr-op11": lambda: single("Unsqueeze", (1, 6), opset=11, axes=[2, 3]),
    "unsqueeze-input-op13": lambda: single("Unsqueeze", (1, 6), {"a": np.array([-1], np.int64)}, ["a"]),
    "flatten-axis2": lambda: single("Flatten", (1, 1, 4, 8), axis=2),
    "dynamic-flatten-fold": _dynamic_flatten,
    "expand-op13": lambda: single("Expand", (1, 4, 1, 8), {"s": np.array([1, 4, 3, 8], np.int64)}, ["s"]),
}


@pytest.mark.parametrize("case", sorted(SHAPE))
def test_shape_ops(case, tmp_path):
    report, imp = parity(SHAPE[case](), tmp_path, batch=1 if case != "dynamic-flatten-fold" else 2)
    assert worst(report) <= TOL, report
    if case == "channel-shuffle":
        assert layer_types(imp).count("Permute") == 1
    if case == "transpose-to-nhwc":
        # NCHW input stored NHWC: the Transpose costs nothing.
        assert "Permute" not in layer_types(imp) and imp.outputs[0].perm is None


def _split(opset):
    if opset >= 18:
        return single("Split", X, opset=18, outputs=2, axis=1, num_outputs=2)
    if opset >= 13:
        return single("Split", X, {"s": np.array([1, 3], np.int64)}, ["s"], opset=13, outputs=2, axis=1)
    return single("Split", X, opset=opset, outputs=3, axis=3, split=[2, 2, 4])


def _slice(opset):
    if opset < 10:
        return single("Slice", X, opset=9, starts=[1, 2], ends=[3, 100], axes=[1, 3])
    inits = {"st": np.array([1, 1], np.int64), "en": np.array([4, -1], np.int64), "ax": np.array([1, 2], np.int64),
             "sp": np.array([2, 2], np.int64)}
    return single("Slice", X, inits, ["st", "en", "ax", "sp"], opset=opset)


def _pad(opset, mode="constant", value=0.0):
    pads = [0, 0, 1, 2, 0, 0, 2, 1]
    if opset < 11:
        return single("Pad", X, opset=opset, mode=mode, pads=pads, value=value)
    inits = {"p": np.array(pads, np.int64), "v": np.array(value, np.float32)}
    return single("Pad", X, inits, ["p", "v"], opset=opset, mode=mode)


def _concat(axis, opset=13):
    nodes = [node("Relu", ["x"], ["r"]), node("Conv", ["x", "w"], ["c"]), node("Concat", ["r", "c", "x"], ["y"],
                                                                               axis=axis)]
    return model(nodes, [("x", list(X))], ["y"], {"w": rand(4, 4, 1, 1)}, opset=opset)


TENSOR = {
    "concat-channels-op7": lambda: _concat(1, 7),
    "concat-height": lambda: _concat(2),
    "concat-neg-axis": lambda: _concat(-1),
    "split-op11-attr": lambda: _split(11),
    "split-op13-input": lambda: _split(13),
    "split-op18-num-outputs": lambda: _split(18),
    "slice-op9-attr": lambda: _slice(9),
    "slice-op13-steps": lambda: _slice(13),
    "pad-constant-op11": lambda: _pad(11),
    "pad-constant-value-op7": lambda: _pad(7, value=0.5),
    "pad-reflect-op13": lambda: _pad(13, "reflect"),
    "pad-edge-op18": lambda: _pad(18, "edge"),
    "gather-channel-scalar": lambda: single("Gather", X, {"i": np.array(2, np.int64)}, ["i"], axis=1),
}


@pytest.mark.parametrize("case", sorted(TENSOR))
def test_tensor_ops(case, tmp_path):
    report, imp = parity(TENSOR[case](), tmp_path)
    assert worst(report) <= TOL, report
    if case.startswith("concat-channels"):
        assert "Concatenate" in layer_types(imp) and "Permute" not in layer_types(imp)


def _resize(opset=13, mode="nearest", coord="asymmetric", nearest="floor", scales=(1, 1, 2, 2), sizes=None):
    attrs = dict(mode=mode)
    if opset >= 11:
        attrs.update(coordinate_transformation_mode=coord, nearest_mode=nearest)
        inits = {"roi": np.array([], np.float32), "sc": np.array(scales, np.float32)}
        ins = ["roi", "sc"]
        if sizes is not None:
            inits = {"roi": np.array([], np.float32), "sz": np.array(sizes, np.int64)}
            ins = ["roi", "", "sz"]
        return single("Resize", X, inits, ins, opset=opset, **attrs)
    return single("Resize", X, {"sc": np.array(scales, np.float32)}, ["sc"], opset=opset, **attrs)


RESIZE = {
    "nearest-asym-floor-op13": lambda: _resize(),
    "nearest-halfpixel-round-op11": lambda: _resize(11, coord="half_pixel", nearest="round_prefer_floor"),
    "nearest-sizes-op13": lambda: _resize(sizes=[1, 4, 16, 24]),
    "nearest-align-corners": lambda: _resize(coord="align_corners", nearest="round_prefer_ceil", sizes=[1, 4, 12, 12]),
    "linear-halfpixel": lambda: _resize(mode="linear", coord="half_pixel"),
    "linear-pytorch-halfpixel-x3": lambda: _resize(mode="linear", coord="pytorch_half_pixel", scales=(1, 1, 3, 3)),
    "linear-align-corners": lambda: _resize(mode="linear", coord="align_corners"),
    "linear-asymmetric-op18": lambda: _resize(18, mode="linear", coord="asymmetric"),
    "linear-downscale": lambda: _resize(mode="linear", coord="half_pixel", sizes=[1, 4, 4, 4]),
    "resize-op10": lambda: _resize(10),
    "upsample-op7-attr": lambda: single("Upsample", X, opset=7, mode="nearest", scales=[1.0, 1.0, 2.0, 2.0]),
    "upsample-op9-input": lambda: single("Upsample", X, {"s": np.array([1, 1, 2, 2], np.float32)}, ["s"], opset=9),
    "upsample-op9-linear": lambda: single("Upsample", X, {"s": np.array([1, 1, 2, 2], np.float32)}, ["s"], opset=9,
                                          mode="linear"),
}


@pytest.mark.parametrize("case", sorted(RESIZE))
def test_resize(case, tmp_path):
    report, imp = parity(RESIZE[case](), tmp_path)
    assert worst(report) <= TOL, report
    if case in ("nearest-asym-floor-op13", "linear-halfpixel", "upsample-op7-attr"):
        assert "UpSampling2D" in layer_types(imp)


def _fp16():
    from onnx import TensorProto, helper, numpy_helper

    nodes = [node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), node("Cast", ["c"], ["c32"], to=1),
             node("Relu", ["c32"], ["r"]), node("Cast", ["r"], ["y"], to=TensorProto.FLOAT16)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)],
                          [numpy_helper.from_array(rand(4, 3, 3, 3).astype(np.float16), "w"),
                           numpy_helper.from_array(rand(4).astype(np.float16), "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


def _constant_node_weights():
    from onnx import numpy_helper

    nodes = [node("Constant", [], ["w"], value=numpy_helper.from_array(rand(4, 4, 3, 3), "w")),
             node("Constant", [], ["b"], value_floats=[0.1, 0.2, 0.3, 0.4]),
             node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])]
    return model(nodes, [("x", list(X))], ["y"], opset=13)


def _two_outputs():
    nodes = [node("Conv", ["x", "w"], ["feat"]), node("GlobalAveragePool", ["feat"], ["g"]),
             node("Flatten", ["g"], ["vec"])]
    return model(nodes, [("x", list(X))], ["feat", "vec"], {"w": rand(5, 4, 1, 1)})


def _nhwc_input():
    """tf2onnx style: NHWC input, Rescaling Mul, Transpose to NCHW, conv, Transpose back to NHWC."""
    nodes = [node("Mul", ["x", "k"], ["s"]), node("Transpose", ["s"], ["t"], perm=[0, 3, 1, 2]),
             node("Conv", ["t", "w"], ["c"], pads=[1, 1, 1, 1]), node("Relu", ["c"], ["r"]),
             node("Transpose", ["r"], ["y"], perm=[0, 2, 3, 1])]
    return model(nodes, [("x", ["unk", 8, 8, 3])], ["y"], {"k": np.float32(1 / 127.5) * np.ones(3, np.float32),
                                                          "w": rand(4, 3, 3, 3)}, opset=15)


GRAPH = {"float16": _fp16, "constant-node-weights": _constant_node_weights, "two-outputs": _two_outputs,
         "nhwc-input-tf2onnx": _nhwc_input}


@pytest.mark.parametrize("case", sorted(GRAPH))
def test_graph_forms(case, tmp_path):
    report, imp = parity(GRAPH[case](), tmp_path)
    assert worst(report) <= TOL, report
    if case == "float16":
        assert any("float16" in n for n in imp.notes) and imp.model.inputs[0].dtype == "float32"
    if case == "two-outputs":
        assert [o.perm for o in imp.outputs] == [(0, 2, 3, 1), None]
        assert [o.onnx_shape for o in imp.outputs] == [(1, 5, 8, 8), (1, 5)]
    if case == "nhwc-input-tf2onnx":
        assert imp.inputs[0].perm is None and imp.inputs[0].keras_shape == (1, 8, 8, 3)
        assert imp.outputs[0].perm is None and "Permute" not in layer_types(imp)


def test_custom_layers_convert_to_tflite_builtins(tmp_path):
    """Every custom layer lowers to TFLite builtins (no Flex ops) and the .tflite matches Keras."""
    from edgeopt._tf import tf

    nodes = [node("Clip", ["x", "lo", "hi"], ["a"]), node("HardSigmoid", ["a"], ["b"], alpha=1 / 6, beta=0.5),
             node("HardSwish", ["b"], ["c"]), node("Slice", ["c", "st", "en", "ax"], ["d"]),
             node("Split", ["d", "sp"], ["e0", "e1"], axis=1), node("Pad", ["e0", "pads"], ["f"], mode="reflect"),
             node("Pad", ["e1", "pads"], ["g"], mode="edge"), node("Div", ["f", "g"], ["h"]),
             node("Exp", ["h"], ["i"]), node("Resize", ["i", "", "", "sz"], ["j"], mode="linear",
                                              coordinate_transformation_mode="align_corners"),
             node("ReduceMean", ["j", "rax"], ["y"], keepdims=1), node("Sub", ["one", "y"], ["z"])]
    inits = {"lo": np.array(-0.5, np.float32), "hi": np.array(0.8, np.float32),
             "st": np.array([1], np.int64), "en": np.array([7], np.int64), "ax": np.array([2], np.int64),
             "sp": np.array([2, 2], np.int64), "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
             "sz": np.array([1, 2, 12, 16], np.int64), "rax": np.array([1], np.int64),
             "one": np.array([1.0], np.float32)}
    report, imp = parity(model(nodes, [("x", list(X))], ["z"], inits, opset=18), tmp_path, batch=1)
    assert worst(report) <= TOL, report
    conv = tf().lite.TFLiteConverter.from_keras_model(imp.model)
    conv.target_spec.supported_ops = [tf().lite.OpsSet.TFLITE_BUILTINS]
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=conv.convert())
    ops = {o["op_name"] for o in interp._get_ops_details()}
    assert {"HARD_SWISH", "SPLIT_V", "MIRROR_PAD", "RESIZE_BILINEAR", "MEAN"} <= ops
    assert not any(op.startswith("Flex") for op in ops)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 8, 8, 4)).astype(np.float32)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"])
    want = imp.model(x, training=False).numpy()
    assert float(np.max(np.abs(got - want))) <= 1e-5 * max(1.0, float(np.max(np.abs(want))))
