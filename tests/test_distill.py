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
