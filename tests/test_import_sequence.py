"""Sequence models as text recognizers write them: attention that moves the batch axis, LSTM/GRU run
sequence-first, LayerNorm, GELU, and the CRNN head that merges batch and time; built in torch, exported, imported.

Every case asserts import parity (max_rel_error <= 1e-4 against onnxruntime, batch 2 where the export allows it)
and the Keras layers the mapping must produce (a fused LSTM, no Erf left behind, ...).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from onnx_builders import layer_types
from edgeopt.frontends import load_model
from edgeopt.frontends.parity import check_parity

TOL = 1e-4


class Attention(nn.Module):
    """An SVTR-style mixing block: qkv reshaped to [B, N, 3, heads, d] and permuted [2, 0, 3, 1, 4]."""

    def __init__(self, c=32, heads=4):
        super().__init__()
        self.heads, self.conv = heads, nn.Conv2d(3, c, 3, 4, 1)
        self.norm, self.qkv, self.proj = nn.LayerNorm(c), nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.mlp = nn.Sequential(nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c))

    def forward(self, x):
        x = self.conv(x).flatten(2).permute(0, 2, 1)
        b, n, c = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = ((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5).softmax(-1)
        x = x + self.proj((a @ v).transpose(1, 2).reshape(b, n, c))
        return x + self.mlp(self.norm(x))


class CRNN(nn.Module):
    """Conv stack to height 1, ``squeeze(2).permute(2, 0, 1)`` (sequence-first), a recurrent layer, a classifier."""

    def __init__(self, cell="lstm", bidirectional=True, layers=2, merge_head=False):
        super().__init__()
        self.cnn = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(16, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d((16, 1)))
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(32, 24, num_layers=layers, bidirectional=bidirectional)
        self.fc = nn.Linear(48 if bidirectional else 24, 11)
        self.merge_head = merge_head

    def forward(self, x):
        f = self.cnn(x).squeeze(2).permute(2, 0, 1)
        y, _ = self.rnn(f)
        if self.merge_head:  # crnn.pytorch: view(T * b, h) -> Linear -> view(T, b, -1)
            t, b, h = y.shape
            return self.fc(y.view(t * b, h)).view(t, b, -1)
        return self.fc(y).permute(1, 0, 2).log_softmax(-1)


class Unsqueezed(nn.Module):
    """Unsqueeze at axis 0 in front of the batch, then a transpose moving it back: [1, B, C, W] -> [B, W, C]."""

    def forward(self, x):
        y = torch.relu(x).mean(2).unsqueeze(0)
        return y.permute(1, 3, 2, 0).squeeze(3) * 2.0


def _export(module, shape, path, opset=17):
    torch.manual_seed(0)
    module.eval()
    for m in module.modules():  # non-trivial BatchNorm/LayerNorm parameters
        if isinstance(m, nn.LayerNorm):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    with torch.no_grad():
        torch.onnx.export(module, torch.randn(*shape), str(path), opset_version=opset, dynamo=False,
                          input_names=["x"], output_names=["y"])
    return path


def _parity(path, batch=2):
    imported = load_model(path)
    rng = np.random.default_rng(1)
    spec = imported.inputs[0]
    shape = list(spec.onnx_shape)
    shape[spec.perm[0] if spec.perm else 0] = batch
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    return check_parity(imported, samples=[x], raise_on_fail=False), imported


CASES = {
    "attention-op17": (lambda: Attention(), (1, 3, 32, 64), 17),
    "attention-op14": (lambda: Attention(), (1, 3, 32, 64), 14),  # LayerNorm decomposed into Reduce/Pow/...
    "lstm-bidirectional-2": (lambda: CRNN("lstm", True, 2), (1, 1, 32, 64), 17),
    "lstm-forward-1": (lambda: CRNN("lstm", False, 1), (1, 1, 32, 64), 17),
    "gru-bidirectional-2": (lambda: CRNN("gru", True, 2), (1, 1, 32, 64), 17),
    "gru-forward-1": (lambda: CRNN("gru", False, 1), (1, 1, 32, 64), 17),
    "crnn-merged-head": (lambda: CRNN("lstm", True, 1, merge_head=True), (1, 1, 32, 64), 17),
    "unsqueeze-batch": (lambda: Unsqueezed(), (1, 4, 6, 10), 17),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_sequence_model_parity(case, tmp_path):
    build, shape, opset = CASES[case]
    path = _export(build(), shape, tmp_path / f"{case}.onnx", opset)
    report, imported = _parity(path)
    assert report["passed"] and max(o["max_rel_error"] for o in report["outputs"]) <= TOL, report
    types = layer_types(imported)
    if "lstm" in case or "gru" in case:
        cell = "LSTM" if "lstm" in case else "GRU"
        assert ("Bidirectional" in types) == ("bidirectional" in case)
        if "bidirectional" not in case:
            assert cell in types
    if case == "attention-op17":
        assert "LayerNormalization" in types
        assert any("GELU" in n for n in imported.notes), imported.notes


def test_sequence_first_output_keeps_its_layout(tmp_path):
    # [T, B, C] comes back as [T, B, C]: the Keras side is [B, T, C] and the spec records the permutation
    path = _export(CRNN("lstm", True, 1, merge_head=True), (1, 1, 32, 64), tmp_path / "m.onnx")
    out = load_model(path).outputs[0]
    assert out.onnx_shape == (32, 1, 11) and out.keras_shape == (1, 32, 11) and out.perm == (1, 0, 2)


def _lstm_variant(tmp_path, **attrs):
    import onnx
    from onnx import helper

    from onnx_builders import rand

    h = 4
    n = helper.make_node("LSTM", ["x", "w", "r", "b"], ["y"], name="lstm", hidden_size=h, **attrs)
    inits = {"w": rand(1, 4 * h, 3), "r": rand(1, 4 * h, h), "b": rand(1, 8 * h)}
    g = helper.make_graph([n], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [5, 1, 3])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                          [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()])
    p = tmp_path / "lstm.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]), str(p))
    return p


def test_reverse_lstm_from_onnx(tmp_path):
    report, imported = _parity(_lstm_variant(tmp_path, direction="reverse"), batch=1)
    assert report["passed"] and report["outputs"][0]["max_rel_error"] <= TOL, report
    assert "Reverse" in layer_types(imported)
    assert imported.inputs[0].perm == (1, 0, 2)  # the model input itself is sequence-first


@pytest.mark.parametrize("attrs, reason", [({"clip": 2.0}, "cell clipping"),
                                           ({"activations": ["Sigmoid", "Relu", "Tanh"]}, "activations"),
                                           ({"input_forget": 1}, "input_forget")])
def test_unsupported_lstm_variants_are_named(attrs, reason, tmp_path):
    from edgeopt.errors import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match=f"unsupported ONNX ops: LSTM with .*{reason}.*node 'lstm'"):
        load_model(_lstm_variant(tmp_path, **attrs))


def test_crnn_compresses_to_int8_unrolled(tmp_path):
    import edgeopt
    from edgeopt.analyze.tflite import read_tflite

    path = _export(CRNN("lstm", True, 1), (1, 1, 32, 64), tmp_path / "crnn.onnx")
    rng = np.random.default_rng(0)
    calib = tmp_path / "calib.npy"
    np.save(calib, rng.uniform(-1, 1, (40, 1, 32, 64)).astype(np.float32))
    res = edgeopt.compress(path, precision="int8", calib=calib, output=tmp_path / "crnn_int8.tflite",
                           report={"latency_runs": 2, "warmup_runs": 1, "delegates": False})
    summary = read_tflite(res.output)
    # 32 steps: unrolled into builtin int8 ops, no stateful sequence op
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in summary.op_histogram and not summary.custom_ops
    assert summary.op_histogram["FULLY_CONNECTED"] >= 2 * 32
    assert res.report["fidelity"][0]["cosine_mean"] >= 0.99


def test_long_lstm_keeps_the_fused_op_and_runs_stateless(tmp_path):
    # over 128 steps the fused op stays; its state must not leak from one sample into the next
    from edgeopt.analyze.tflite import read_tflite
    from edgeopt.converter import to_tflite
    from edgeopt.runtime import TFLiteModel

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(3, 8)

        def forward(self, x):  # x: [T, B, 3]
            return self.rnn(x)[0]

    imported = load_model(_export(Seq(), (140, 1, 3), tmp_path / "long.onnx"))
    tfl = tmp_path / "long.tflite"
    tfl.write_bytes(to_tflite(imported.model, input_names=["x"], output_names=["y"]))
    assert read_tflite(tfl).op_histogram.get("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1
    x = np.random.default_rng(0).uniform(-1, 1, (3, 1, 140, 3)).astype(np.float32)  # Keras layout [B, T, C]
    want = [imported.model(s).numpy() for s in x]
    runner = TFLiteModel(tfl)
    got = [runner.run_one({"x": s})["y"] for s in x]  # the same interpreter, three sequences in a row
    assert max(float(np.abs(g - w).max()) for g, w in zip(got, want)) < 1e-4


def test_zero_peepholes_are_accepted(tmp_path):
    import onnx

    path = _lstm_variant(tmp_path)
    m = onnx.load(str(path))
    m.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros((1, 12), np.float32), "p"))
    m.graph.node[0].input.extend(["", "", "", "p"])  # sequence_lens, initial_h, initial_c, P
    onnx.save(m, str(path))
    report, _ = _parity(path, batch=1)
    assert report["passed"] and report["outputs"][0]["max_rel_error"] <= TOL, report
