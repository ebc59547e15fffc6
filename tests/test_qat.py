"""Quantization-aware training: every layer the importer and the student zoo emit is wrapped, the ranges start
calibrated, the QAT model trains through the shared trainer and converts to a model whose ops are all integer;
``compress --qat`` reports QAT beside plain PTQ."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from train_helpers import CNN, IMAGES, LABELS, REPO, run_edgeopt

REPORT = ["--latency-runs", "2", "--warmup-runs", "1", "--no-delegates"]


def _cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def _importer_cases():
    """Every op case of the import tests (ONNX models built in-process), by name."""
    import test_import_ops as T

    cases = {}
    for group in ("CONV", "DECONV", "NORM", "ACT", "ELEM", "POOL", "MATMUL", "SHAPE", "TENSOR", "RESIZE", "GRAPH"):
        for name, build in getattr(T, group).items():
            cases[f"{group.lower()}:{name}"] = build
    return cases


def test_quantize_wraps_every_layer_the_importer_emits(tmp_path):
    """quantize_model (through quantize()) runs over a model of every layer type the importer can emit: each op
    case of the import tests, the recurrent and attention models, and a reverse LSTM. The union covers every custom
    layer of the importer; each QAT model, with its ranges set from the samples, answers like the float model."""
    import onnx

    import test_import_sequence as S
    from edgeopt.errors import ConversionError
    from edgeopt.frontends import load_model
    from edgeopt.frontends.onnx.layers import custom_objects
    from edgeopt.quantization.qat import initialise_ranges, quantize

    paths = {}
    for name, build in _importer_cases().items():
        paths[name] = tmp_path / f"{name.replace(':', '_')}.onnx"
        onnx.save(build(), str(paths[name]))
    for name, (build, shape, opset) in S.CASES.items():
        paths[f"sequence:{name}"] = S._export(build(), shape, tmp_path / f"seq_{name}.onnx", opset)
    (tmp_path / "rev").mkdir()
    paths["sequence:reverse-lstm"] = S._lstm_variant(tmp_path / "rev", direction="reverse")

    seen: Counter = Counter()
    worst = (1.0, "")
    nothing_to_quantize = []
    rng = np.random.default_rng(0)
    for name, path in paths.items():
        imported = load_model(path)
        model = imported.model
        try:
            qat_model, plan = quantize(model)
        except ConversionError as exc:
            # a model of one transpose has no layer that computes anything
            assert "no layers to quantize" in str(exc), (name, exc)
            nothing_to_quantize.append(name)
            continue
        kinds = {p["scheme"] for p in plan}
        assert kinds <= {"default", "weights", "output", "pass-through", "calibrated"}, (name, plan)
        assert len(plan) == sum(1 for layer in model.layers if type(layer).__name__ != "InputLayer")
        seen.update(p["type"] for p in plan)
        x = [rng.uniform(-1, 1, (2, *inp.shape[1:])).astype(np.float32) for inp in model.inputs]
        x = x if len(x) > 1 else x[0]
        initialise_ranges(qat_model, model, [x] if not isinstance(x, list) else x)
        ref, got = model(x, training=False), qat_model(x, training=False)
        ref = ref if isinstance(ref, (list, tuple)) else [ref]
        got = got if isinstance(got, (list, tuple)) else [got]
        assert len(ref) == len(got) and all(a.shape == b.shape for a, b in zip(ref, got)), name
        cos = min(_cosine(a, b) for a, b in zip(ref, got))
        assert all(np.isfinite(np.asarray(g)).all() for g in got), name
        if name.startswith("elem:div"):
            # c / x and x / y with x, y in [-1, 1]: outputs near the pole span a range no 8-bit grid resolves
            continue
        worst = min(worst, (cos, name))
    assert nothing_to_quantize == ["shape:transpose-to-nhwc"]
    custom = {key.split(">")[1] for key in custom_objects()}
    assert custom <= set(seen), sorted(custom - set(seen))
    for builtin in ("Conv2D", "DepthwiseConv2D", "Conv2DTranspose", "Dense", "BatchNormalization", "Multiply",
                    "Add", "Concatenate", "PReLU", "ELU", "LeakyReLU", "LayerNormalization", "GroupNormalization",
                    "LSTM", "GRU", "Bidirectional", "Softmax", "UpSampling2D", "Cropping2D", "Permute", "Reshape"):
        assert builtin in seen, builtin
    # 8-bit fake quantization of one to a few layers on inputs in [-1, 1]
    assert worst[0] >= 0.999, worst


STUDENTS = ["mobilenet_v2_035", "mobilenet_v3_small", "shufflenet_v2_x0_5"]


@pytest.mark.parametrize("name", STUDENTS)
def test_students_train_with_qat_and_convert_to_integer_ops_only(name, tmp_path):
    """A student (hard-swish, SE multiply, channel split and shuffle) goes through the shared trainer with QAT (the
    two with edgeopt's own configs; MobileNetV2 has tfmot's layers only and is converted untrained): its weights
    move, the loss is finite, and the .tflite has integer ops only."""
    from edgeopt._tf import keras
    from edgeopt.analyze.tflite import read_tflite
    from edgeopt.distillation.students import build_student
    from edgeopt.evaluate import run_tflite
    from edgeopt.params import TrainParams
    from edgeopt.quantization.ptq import quantize_int8
    from edgeopt.quantization.qat import initialise_ranges, quantize, quantize_scope, to_int8
    from edgeopt.train.data import from_arrays
    from edgeopt.train.trainer import Objective, train

    keras().utils.set_random_seed(0)
    model = build_student(name, (32, 32, 3), 10, small=True)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (48, 32, 32, 3)).astype(np.float32)
    qat_model, plan = quantize(model)
    schemes = {(p["type"], p["scheme"]) for p in plan}
    if name == "mobilenet_v3_small":
        assert {("HardSwish", "output"), ("HardSigmoid", "output"), ("Multiply", "output")} <= schemes
    if name.startswith("shufflenet"):
        assert ("Split", "pass-through") in schemes
    assert ("BatchNormalization", "default") in schemes and ("BatchNormalization", "output") not in schemes
    assert initialise_ranges(qat_model, model, [x[:32]]) > 10
    trained = qat_model
    if name != "mobilenet_v2_035":
        before = [np.array(w) for w in qat_model.trainable_weights]
        teacher = np.asarray(model(x, training=False))
        with quantize_scope():
            result = train(qat_model, from_arrays(x, teacher_outputs=[teacher]), TrainParams(epochs=1, batch_size=16),
                           objective=Objective((("mse", 1.0),), None, 0), checkpoint_dir=tmp_path / "ckpt",
                           title="qat")
        assert np.isfinite(result.history[0]["loss"])
        trained = result.model
        after = [np.array(w) for w in trained.trainable_weights]
        assert len(after) == len(before) and any(not np.array_equal(a, b) for a, b in zip(before, after))
    data = to_int8(trained, [x[:32]], input_names=["x"], output_names=["y"])
    path = tmp_path / "qat.tflite"
    path.write_bytes(data)
    summary = read_tflite(path)
    assert summary.fully_integer and not summary.float_ops, [summary.ops[i].op for i in summary.float_ops]
    assert summary.inputs[0].dtype == "int8" and summary.outputs[0].dtype == "int8"
    out = run_tflite(path, [x[32:]], input_names=["x"], output_names=["y"])[0]
    assert out.shape == (16, 10) and np.isfinite(out).all()
    # every BatchNormalization and hard-sigmoid folds into its conv as in PTQ: the same ops, none added around the
    # convs; only requantizations (QUANTIZE) where a Concatenate's inputs learned other ranges than its output
    (tmp_path / "ptq.tflite").write_bytes(quantize_int8(model, [x[:32]], input_names=["x"], output_names=["y"]))
    ptq_ops = read_tflite(tmp_path / "ptq.tflite").op_histogram
    assert {k: v for k, v in summary.op_histogram.items() if k != "QUANTIZE"} == \
        {k: v for k, v in ptq_ops.items() if k != "QUANTIZE"}
    if not name.startswith("shufflenet"):
        assert summary.op_histogram.get("QUANTIZE", 0) == ptq_ops.get("QUANTIZE", 0)


def test_learned_ranges_survive_training_and_reach_the_tflite(tmp_path):
    """A HardSwish feeding a Concatenate (tfmot turns that output fake-quant off) trains through the trainer's
    clone; a softmax Dense gets its input range from the float logits; the .tflite input scale is the range QAT
    learned, not one recalibrated from the conversion samples."""
    from edgeopt._tf import keras
    from edgeopt.analyze.tflite import read_tflite
    from edgeopt.frontends.onnx.layers import custom
    from edgeopt.params import TrainParams
    from edgeopt.quantization.qat import initialise_ranges, quantize, quantize_scope, to_int8
    from edgeopt.train.data import from_arrays
    from edgeopt.train.trainer import Objective, train

    k = keras()
    k.utils.set_random_seed(0)
    inp = k.Input((8, 8, 3))
    a = custom("HardSwish")(name="hswish")(k.layers.Conv2D(4, 3, padding="same", name="conv_a")(inp))
    b = k.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_b")(inp)
    x = k.layers.GlobalAveragePooling2D()(k.layers.Concatenate(name="concat")([a, b]))
    model = k.Model(inp, k.layers.Dense(3, activation="softmax", name="head")(x))
    rng = np.random.default_rng(0)
    x_train = rng.uniform(-2, 2, (64, 8, 8, 3)).astype(np.float32)
    y_train = rng.integers(0, 3, 64)
    qat_model, plan = quantize(model)
    assert {p["layer"]: p["scheme"] for p in plan}["hswish"] == "output"
    initialise_ranges(qat_model, model, [x_train])
    head = qat_model.get_layer("quant_head")
    pre = head._quantize_activations[0]._pre_activation_vars
    logits = k.Model(model.inputs, model.get_layer("head").input)(x_train) @ model.get_layer("head").kernel \
        + model.get_layer("head").bias
    assert float(pre["min_var"].numpy()) == pytest.approx(min(0.0, float(np.min(logits))), rel=1e-5)
    assert float(pre["max_var"].numpy()) == pytest.approx(max(0.0, float(np.max(logits))), rel=1e-5)
    with quantize_scope():
        result = train(qat_model, from_arrays(x_train, y_train), TrainParams(epochs=2, batch_size=16, lr=1e-3),
                       objective=Objective((("ce", 1.0),), 0, 3, probabilities=True), checkpoint_dir=tmp_path / "c")
    assert len(result.model.get_weights()) == len(qat_model.get_weights())
    learned = next(layer for layer in result.model.layers if type(layer).__name__ == "QuantizeLayer").quantizer_vars
    lo, hi = float(learned["min_var"].numpy()), float(learned["max_var"].numpy())
    assert lo == pytest.approx(float(x_train.min()), abs=1e-5) and hi == pytest.approx(float(x_train.max()), abs=1e-5)
    # converted with samples of half the range: the input scale still comes from the learned [lo, hi]
    path = tmp_path / "m.tflite"
    path.write_bytes(to_int8(result.model, [x_train * 0.5], input_names=["x"], output_names=["y"]))
    summary = read_tflite(path)
    assert summary.fully_integer and not summary.float_ops
    assert summary.inputs[0].scale[0] == pytest.approx((hi - lo) / 255, rel=0.02)


def _report(out: Path) -> dict:
    return json.loads(out.with_name(out.stem + ".report.json").read_text())


def test_compress_qat_trains_converts_to_integer_ops_and_reports_ptq_beside_it(tmp_path):
    """The shipped recipe on the demo CNN and its labeled data: QAT for 3 epochs, the loss falls, the file has
    integer ops only, and the report has the plain PTQ column with its accuracy and fidelity."""
    from edgeopt.analyze.tflite import read_tflite
    from edgeopt.recipe import load_recipe

    recipe = REPO / "recipes" / "qat_int8.toml"
    calls = load_recipe(recipe).calls
    assert [c.use for c in calls] == ["import", "quantize.qat"]
    out = tmp_path / "cnn_int8.tflite"
    res = run_edgeopt(["run", recipe, CNN, "--data", IMAGES, "--labels", LABELS, "-o", out])
    assert res.returncode == 0, res.stderr[-3000:]
    rep = _report(out)
    q = rep["qat"]
    assert q["schemes"] == {"default": 13} and q["ranges_from_calibration"] == 7
    t = q["training"]
    assert t["epochs_run"] == 3 and t["objective"] == "1·ce" and t["data"]["targets"] == "labels"
    losses = [r["loss"] for r in t["history"]]
    assert losses[-1] < losses[0], losses
    assert set(rep["models"]) == {"fp32", "int8", "int8 ptq"}
    acc = rep["accuracy"]["models"]
    assert acc["int8"]["top1"]["samples"] == 60 and acc["int8 ptq"]["top1"]["samples"] == 60
    assert acc["int8"]["top1"]["accuracy"] >= 0.85  # 60 held-back Fashion-MNIST images, FP32 95 %
    assert rep["fidelity"][0]["cosine_mean"] >= 0.99 and q["ptq_fidelity"][0]["cosine_mean"] >= 0.99
    summary = read_tflite(out)
    assert summary.fully_integer and not summary.float_ops
    md = out.with_name(out.stem + ".report.md").read_text()
    assert "## Quantization-aware training" in md and "| int8 ptq: logits |" in md
    assert [s["stage"] for s in rep["lineage"]] == ["import", "quantize.qat"]


def test_qat_after_pruning_and_without_labels(tmp_path):
    """compress --prune-ratio --qat without labels: the pruned model is the one trained with QAT, on the float
    (pruned) model's outputs, and the file is integer-only with the pruned channel counts."""
    from edgeopt.analyze.tflite import read_tflite

    out = tmp_path / "pruned_int8.tflite"
    res = run_edgeopt(["compress", CNN, "--prune-ratio", "0.5", "--qat", "--data", IMAGES, "--epochs", "1",
                       "--lr", "1e-4", "-o", out, *REPORT])
    assert res.returncode == 0, res.stderr[-3000:]
    rep = _report(out)
    assert [s["stage"] for s in rep["lineage"]] == ["import", "prune.structured", "quantize.qat"]
    t = rep["qat"]["training"]
    assert t["objective"].startswith("1·kd") and "outputs" in t["data"]["targets"]
    assert rep["pruning"]["macs_after"] < rep["pruning"]["macs_before"]
    summary = read_tflite(out)
    assert summary.fully_integer and not summary.float_ops
    assert summary.macs == rep["models"]["int8 ptq"]["macs"] == rep["pruning"]["macs_after"]


@pytest.mark.parametrize("args, message", [
    (["--qat", "--min-agreement", "0.99"], "belong to post-training quantization"),
    (["--qat", "--fp16"], "choose one of --int8 (or --qat), --fp16"),
    (["--qat", "--per-tensor"], "per-channel conv weights"),
    (["--qat", "--sensitivity", "--data", IMAGES], "--sensitivity analyses post-training quantization"),
    (["--qat", "--save-keras", "k.keras", "--data", IMAGES], "the trained model is the INT8 .tflite"),
    (["--qat"], "this run trains (quantize.qat) and has no training data"),
])
def test_qat_flags_that_cannot_work_are_refused(args, message, tmp_path):
    res = run_edgeopt(["compress", CNN, *args, "-o", tmp_path / "x.tflite"])
    assert res.returncode == 2 and message in " ".join(res.stderr.split()), res.stderr[-2000:]
    assert not (tmp_path / "x.tflite").exists()
