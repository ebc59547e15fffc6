"""Fuzzing the importer: hundreds of corrupted ONNX files must import or raise an EdgeoptError, nothing else.

Mutations (fixed seed): byte flips, truncation, inserted and deleted bytes, deleted nodes, renamed tensors,
corrupted attributes, wrong input dims, removed initializers, bad opsets and IR versions, shuffled nodes.
"""
from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import onnx

from conftest import MATERIAL
from edgeopt.errors import EdgeoptError
from edgeopt.frontends import load_model
from onnx_builders import model, node, rand

SEED = 20240611


def _small_models() -> dict[str, onnx.ModelProto]:
    convnet = model(
        [node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv"),
         node("BatchNormalization", ["c", "s", "b2", "m", "v"], ["bn"], name="bn"),
         node("Clip", ["bn", "lo", "hi"], ["r"], name="relu6"),
         node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
         node("Resize", ["p", "", "sc"], ["u"], mode="nearest", name="up"),
         node("Concat", ["u", "r"], ["cat"], axis=1, name="cat"),
         node("GlobalAveragePool", ["cat"], ["g"], name="gap"),
         node("Flatten", ["g"], ["f"], name="flat"),
         node("Gemm", ["f", "fw", "fb"], ["y"], transB=1, name="fc")],
        [("x", ["N", 3, 16, 16])], ["y"],
        {"w": rand(4, 3, 3, 3), "b": rand(4), "s": rand(4) + 1, "b2": rand(4), "m": rand(4),
         "v": np.abs(rand(4)) + 0.5, "lo": np.array(0, np.float32), "hi": np.array(6, np.float32),
         "sc": np.array([1, 1, 2, 2], np.float32), "fw": rand(5, 8), "fb": rand(5)}, opset=13)
    shuffle = model(
        [node("Reshape", ["x", "s1"], ["a"], name="r1"), node("Transpose", ["a"], ["t"], perm=[0, 2, 1, 3, 4]),
         node("Reshape", ["t", "s2"], ["c"], name="r2"), node("Split", ["c"], ["y0", "y1"], axis=1, split=[2, 2]),
         node("Pad", ["y0"], ["z"], pads=[0, 0, 1, 1, 0, 0, 1, 1], mode="reflect")],
        [("x", [1, 4, 6, 6])], ["z", "y1"],
        {"s1": np.array([1, 2, 2, 6, 6], np.int64), "s2": np.array([1, 4, 6, 6], np.int64)}, opset=11)
    return {"convnet": convnet, "shuffle": shuffle}


def _material() -> dict[str, bytes]:
    out = {}
    for name in ("mnist_cntk_opset8", "cifar10_cnn_opset10"):
        p = MATERIAL / "models" / f"{name}.onnx"
        if p.exists():
            out[name] = p.read_bytes()
    return out


def _byte_mutation(data: bytes, rng) -> bytes:
    kind = rng.integers(4)
    b = bytearray(data)
    if kind == 0:
        for _ in range(int(rng.integers(1, 8))):
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
    elif kind == 1:
        b = b[: int(rng.integers(len(b)))]
    elif kind == 2:
        i = int(rng.integers(len(b)))
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 16))).astype(np.uint8).tobytes()
    else:
        i = int(rng.integers(len(b)))
        del b[i: i + int(rng.integers(1, 32))]
    return bytes(b)


def _proto_mutation(m: onnx.ModelProto, rng) -> onnx.ModelProto:
    m = copy.deepcopy(m)
    g = m.graph
    kind = int(rng.integers(10))
    nodes = list(g.node)
    if kind == 0 and nodes:
        del g.node[int(rng.integers(len(nodes)))]
    elif kind == 1 and nodes:
        n = nodes[int(rng.integers(len(nodes)))]
        if n.input:
            n.input[int(rng.integers(len(n.input)))] = rng.choice(["", "ghost", n.output[0], g.input[0].name])
    elif kind == 2 and nodes:
        n = nodes[int(rng.integers(len(nodes)))]
        for a in n.attribute:
            if a.ints:
                a.ints[int(rng.integers(len(a.ints)))] = int(rng.integers(-3, 9))
            elif a.type == onnx.AttributeProto.INT:
                a.i = int(rng.integers(-3, 9))
            elif a.type == onnx.AttributeProto.FLOAT:
                a.f = float(rng.choice([-1.0, 0.0, 1e30, np.nan]))
            elif a.type == onnx.AttributeProto.STRING:
                a.s = rng.choice([b"", b"bogus", b"SAME_LOWER", b"linear"])
    elif kind == 3:
        dims = g.input[0].type.tensor_type.shape.dim
        if dims:
            d = dims[int(rng.integers(len(dims)))]
            choice = int(rng.integers(4))
            if choice == 0:
                d.dim_param = "dyn"
            else:
                d.dim_value = int(rng.choice([0, 1, 2, 5, 7, 33]))
        if rng.random() < 0.2:
            del dims[-1]
    elif kind == 4 and g.initializer:
        del g.initializer[int(rng.integers(len(g.initializer)))]
    elif kind == 5:
        m.opset_import[0].version = int(rng.choice([1, 5, 6, 7, 9, 12, 16, 21, 22, 99]))
    elif kind == 6:
        m.ir_version = int(rng.choice([0, 1, 2, 3, 7, 11, 99]))
    elif kind == 7 and nodes:
        n = nodes[int(rng.integers(len(nodes)))]
        n.op_type = str(rng.choice(["Conv", "Relu", "Gemm", "NotAnOp", "Reshape", "Softmax", "LSTM"]))
    elif kind == 8 and g.initializer:
        t = g.initializer[int(rng.integers(len(g.initializer)))]
        if t.dims:
            t.dims[int(rng.integers(len(t.dims)))] = int(rng.integers(1, 6))
    elif kind == 9 and len(nodes) > 1:
        order = rng.permutation(len(nodes))
        shuffled = [copy.deepcopy(nodes[i]) for i in order]
        del g.node[:]
        g.node.extend(shuffled)
    return m


def _import(data: bytes, tmp_path, i: int) -> str:
    p = tmp_path / f"fuzz_{i}.onnx"
    p.write_bytes(data)
    try:
        load_model(p)
        return "ok"
    except EdgeoptError as exc:
        return type(exc).__name__
    finally:
        p.unlink()


def test_fuzz_import(tmp_path):
    from edgeopt._tf import keras

    rng = np.random.default_rng(SEED)
    sources = {k: v.SerializeToString() for k, v in _small_models().items()}
    sources.update(_material())
    outcomes: Counter = Counter()
    crashes = []
    i = 0
    for name, data in sources.items():
        proto = onnx.load_model_from_string(data)
        for j in range(120):
            i += 1
            mutated = _byte_mutation(data, rng) if j % 3 == 0 else _proto_mutation(proto, rng).SerializeToString()
            try:
                outcomes[_import(mutated, tmp_path, i)] += 1
            except Exception as exc:  # anything but an EdgeoptError is a bug
                crashes.append(f"{name} #{j}: {type(exc).__name__}: {exc}")
            if i % 40 == 0:
                keras().backend.clear_session()
    print(dict(outcomes))
    assert not crashes, "\n".join(crashes[:10])
    total = sum(outcomes.values())
    assert total == 120 * len(sources) >= 240
    # Both paths are exercised: some mutants still import, many are rejected with a clear error.
    rejected = outcomes["ModelFileError"] + outcomes["UnsupportedModelError"]
    assert outcomes["ok"] >= total // 10 and rejected >= total // 4
