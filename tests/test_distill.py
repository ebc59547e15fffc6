"""The distill stage through the pipeline, the API, the CLI and a recipe: a zoo student trained on soft targets and
labels (or the teacher's outputs alone), INT8 conversion, the report's distillation section, `edgeopt students`."""
from __future__ import annotations



import pytest

import edgeopt
from edgeopt.params import DataParams, DistillParams
from edgeopt.pipeline import StageCall, run

from train_helpers import CNN, IMAGES, LABELS, REPO, run_edgeopt


def test_distill_with_labels_then_int8(tmp_path):
    from edgeopt.analyze.keras_summary import keras_summary
    from edgeopt.distillation.students import build_student

    out = tmp_path / "s_int8.tflite"
    result = run(CNN, [StageCall("import"),
                       StageCall("distill", {"student": "shufflenet_v2_x0_5", "epochs": 4, "lr": 3e-3,
                                             "batch_size": 32}),
                       StageCall("quantize.ptq")], output=out,
                 data=DataParams(data=str(IMAGES), labels=str(LABELS)), quiet=True)
    rep = result.report
    d = rep["distillation"]
    assert [s["stage"] for s in rep["lineage"]] == ["import", "distill", "quantize.ptq"]
    assert d["loss"] == ["ce=0.1", "kd=0.9"] and d["mode"].startswith("labels and soft targets")
    student = keras_summary(build_student("shufflenet_v2_x0_5", (28, 28, 1), 10))
    assert (d["student_macs"], d["student_params"]) == (student["macs"], student["params"]) == \
        (rep["keras"]["macs"], rep["keras"]["params"])
    assert d["input"] == [28, 28, 1] and d["classes"] == 10 and d["small_input_stem"]
    history = rep["training"]["history"]
    assert len(history) == 4 and history[-1]["loss"] < 0.5 * history[0]["loss"]  # the student learns
    assert history[-1]["accuracy"] > history[0]["accuracy"]
    assert d["teacher_val_accuracy"] >= 0.9  # the teacher, evaluated once on the same validation split
    models = rep["accuracy"]["models"]
    assert set(models) == {"original", "fp32", "int8"} and models["int8"]["top1"]["samples"] == 60
    md = out.with_name(out.stem + ".report.md").read_text()
    assert "## Distillation" in md and "Student `shufflenet_v2_x0_5`" in md
    # the learning curves as a plot beside the report: loss and top-1, training and validation
    curves = out.with_name(out.stem + ".training.svg").read_text()
    assert rep["training_plot"] == "s_int8.training.svg" and "](s_int8.training.svg)" in md
    assert curves.count("<polyline") == 4 and curves.count("<circle") == 4 * 4
    assert "validation loss" in curves and "training accuracy" in curves


def test_label_free_distillation_learns_the_teachers_outputs(tmp_path):
    result = edgeopt.distill(CNN, student="mobilenet_v2_035", data=IMAGES, output=tmp_path / "s.keras", epochs=2,
                             lr=3e-3, batch_size=32)
    d = result.distillation
    assert d["loss"] == ["kd"] and d["mode"].startswith("label-free")
    assert result.training["data"]["targets"].startswith("the original model's outputs")
    history = result.training["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["agreement"] is not None  # top-1 agreement with the teacher stands in for accuracy
    assert (tmp_path / "s.keras").exists()


def test_students_command_and_distill_errors(tmp_path):
    listing = run_edgeopt(["students"])
    assert listing.returncode == 0, listing.stderr[-2000:]
    for name in ("mobilenet_v2_035", "mobilenet_v2_140", "mobilenet_v3_small", "mobilenet_v3_large",
                 "shufflenet_v2_x0_5", "shufflenet_v2_x2_0"):
        assert name in listing.stdout
    assert "1,366,792" in listing.stdout and "paper MACs" in listing.stdout  # 224x224, beside the papers
    sized = run_edgeopt(["students", "--teacher", CNN])
    assert sized.returncode == 0 and "MACs vs teacher" in sized.stdout and "28x28x1, 10 classes" in sized.stdout
    bad = run_edgeopt(["distill", CNN, "--student", "shufflenet_v2_05", "--data", IMAGES, "-o", tmp_path / "x.keras"])
    assert bad.returncode == 2 and "did you mean 'shufflenet_v2_x0_5'" in bad.stderr
    helps = run_edgeopt(["distill", "--help"])
    assert helps.returncode == 0 and "--student" in helps.stdout and "Examples" in helps.stdout
    assert "--distill" in run_edgeopt(["compress", "--help"]).stdout


def test_distill_params_and_recipe():
    with pytest.raises(ValueError, match="alpha must be in"):
        DistillParams(alpha=1.5)
    with pytest.raises(ValueError, match="did you mean 'mobilenet_v3_small'"):
        DistillParams(student="mobilenet_v3_smal")
    from edgeopt.recipe import load_recipe

    r = load_recipe(REPO / "recipes" / "distill_int8.toml")
    assert [c.use for c in r.calls] == ["import", "distill", "quantize.ptq"]
    assert r.calls[1].values["student"] == "mobilenet_v2_035"


def test_a_teacher_without_a_classifier_output_is_refused(tmp_path):
    from edgeopt.errors import RecipeError

    from edgeopt._tf import keras

    k = keras()
    x = k.Input((16, 16, 3))
    model = k.Model(x, k.layers.Conv2D(4, 3, padding="same")(x))
    path = tmp_path / "dense.keras"
    model.save(path)
    with pytest.raises(RecipeError, match="classifier students"):
        edgeopt.distill(path, student="mobilenet_v2_035", data=IMAGES, output=tmp_path / "s.keras")


def test_compress_distill_flags_reach_the_stage(tmp_path):
    out = tmp_path / "c_int8.tflite"
    res = run_edgeopt(["compress", CNN, "--distill", "mobilenet_v3_small", "--alpha", "0.5", "--temperature", "2",
                       "--data", IMAGES, "--labels", LABELS, "--epochs", "1", "--batch-size", "32", "--int8",
                       "-o", out])
    assert res.returncode == 0, res.stderr[-3000:]
    import json

    rep = json.loads(out.with_name(out.stem + ".report.json").read_text())
    d = rep["distillation"]
    assert d["student"] == "mobilenet_v3_small" and d["loss"] == ["ce=0.5", "kd=0.5"] and d["temperature"] == 2
    assert [s["stage"] for s in rep["lineage"]] == ["import", "distill", "quantize.ptq"]
    assert rep["precision"] == "int8" and rep["keras"]["macs"] == d["student_macs"]


def test_a_softmax_teacher_gets_a_softmax_student(tmp_path):
    """A teacher that outputs probabilities: the student outputs probabilities too (the app reading it expects
    what the teacher gave), and the kd term compares both as log-probabilities."""
    import numpy as np

    from edgeopt._tf import keras

    k = keras()
    k.utils.set_random_seed(0)
    x = k.Input((28, 28, 1))
    y = k.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    y = k.layers.Dense(10)(k.layers.GlobalAveragePooling2D()(y))
    path = tmp_path / "soft.keras"
    k.Model(x, k.layers.Softmax()(y)).save(path)
    out = tmp_path / "s.keras"
    result = edgeopt.distill(path, student="shufflenet_v2_x0_5", data=IMAGES, labels=LABELS, output=out, epochs=1,
                             batch_size=32)
    assert result.training["history"][0]["loss"] > 0
    student = k.models.load_model(out)
    assert type(student.layers[-1]).__name__ == "Softmax"
    probe = np.random.default_rng(0).uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
    assert np.allclose(student.predict(probe, verbose=0).sum(-1), 1.0, atol=1e-5)


def test_hint_distillation_learns_the_teacher_layer_and_leaves_no_adapter(tmp_path):
    """--hint: a student layer of the teacher layer's size learns its feature map through a 1x1 adapter; the
    student written has none of it, and its report times the teacher beside the student."""
    from edgeopt.analyze.keras_summary import keras_summary
    from edgeopt.distillation.students import build_student

    out = tmp_path / "h.tflite"
    result = edgeopt.distill(CNN, student="mobilenet_v2_035", data=IMAGES, labels=LABELS, output=out, epochs=3,
                             lr=3e-3, batch_size=32, hint="/features/features.4/features.4.2/Relu")
    d = result.distillation
    h = d["hint"]
    assert h["teacher_layer"] == "features_features.4_features.4.2_Relu" and h["teacher_shape"] == [7, 7, 64]
    assert h["student_shape"][:2] == [7, 7] and h["pool"] == 1  # the deepest 7x7 student layer
    assert d["loss"] == ["ce=0.1", "kd=0.9", "hint=1"] and "hint" in result.training["objective"]
    history = result.training["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    plain = keras_summary(build_student("mobilenet_v2_035", (28, 28, 1), 10))
    assert (d["student_params"], d["student_macs"]) == (plain["params"], plain["macs"])  # no adapter left
    rep = result.report
    assert set(rep["models"]) == {"fp32", "teacher fp32"}
    assert rep["models"]["teacher fp32"]["macs"] == d["teacher_macs"]
    assert rep["models"]["teacher fp32"]["latency"]["median_ms"] > 0
    md = out.with_name(out.stem + ".report.md").read_text()
    assert "Hint: the student's" in md and "the teacher's FP32 .tflite timed in the same interleaved run" in md


def test_the_hint_term_fits_a_feature_map():
    """The trainer's hint term alone: the adapted student feature map approaches the teacher's (relative error
    falls from about 1 to under 0.35 in 60 steps), and the written student drops the adapter."""
    import numpy as np

    from edgeopt._tf import keras
    from edgeopt.distillation.hint import ADAPTER, hint_models, without_adapter
    from edgeopt.errors import RecipeError
    from edgeopt.params import TrainParams
    from edgeopt.train.data import from_arrays
    from edgeopt.train.trainer import Objective, train

    k = keras()
    k.utils.set_random_seed(0)
    x_in = k.Input((16, 16, 3))
    f = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="t_feat")(x_in)
    f2 = k.layers.Conv2D(8, 3, strides=4, padding="same", activation="relu", name="t_quarter")(f)
    teacher = k.Model(x_in, k.layers.Dense(4)(k.layers.GlobalAveragePooling2D()(f2)))
    s_in = k.Input((16, 16, 3))
    g = k.layers.Conv2D(6, 3, padding="same", activation="relu", name="s_conv")(s_in)
    g = k.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="s_half")(g)
    student = k.Model(s_in, k.layers.Dense(4)(k.layers.GlobalAveragePooling2D()(g)))
    hint = hint_models(teacher, student, "t_feat", weight=1.0)
    assert hint.info["student_layer"] == "s_conv" and hint.info["pool"] == 1  # 16x16, like the teacher's
    pooled = hint_models(teacher, student, "t_quarter", "s_half", weight=1.0)  # 8x8 pooled onto 4x4
    assert pooled.info["pool"] == 2 and pooled.net.outputs[-1].shape[1:] == (4, 4, 8)
    with pytest.raises(RecipeError, match="an integer multiple"):
        hint_models(teacher, student, "t_feat", "s_half", weight=1.0)  # 8x8 cannot learn 16x16
    with pytest.raises(RecipeError, match="did you mean 't_feat'"):
        hint_models(teacher, student, "t_fet", weight=1.0)
    x = np.random.default_rng(0).uniform(0, 1, (256, 16, 16, 3)).astype(np.float32)
    targets = [np.asarray(t) for t in hint.teacher.predict(x, verbose=0)]
    objective = Objective((("hint", 1.0),), 0, 4, hint=True)
    params = TrainParams(epochs=6, batch_size=32, lr=1e-2, seed=0)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as t:
        result = train(hint.net, from_arrays(x, teacher_outputs=targets), params, objective=objective,
                       checkpoint_dir=Path(t))
    losses = [h["loss"] for h in result.history]
    assert losses[0] > 0.5 and losses[-1] < 0.35, losses
    alone = without_adapter(result.model, hint.outputs)
    assert ADAPTER not in [layer.name for layer in alone.layers] and len(alone.outputs) == 1
    assert np.allclose(alone.predict(x[:8], verbose=0), result.model.predict(x[:8], verbose=0)[0], atol=1e-6)
