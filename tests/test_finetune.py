"""train.finetune through the pipeline and the CLI: labels, class folders, the original model's outputs as targets,
the report's training and accuracy sections, and clear errors for bad training data."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgeopt
from edgeopt.data import read_idx
from edgeopt.errors import DataError, RecipeError
from edgeopt.params import DataParams
from edgeopt.pipeline import StageCall, run

from train_helpers import CNN, IMAGES, LABELS, run_edgeopt


def test_compress_finetune_int8_reports_training_and_accuracy_on_the_held_back_training_split(tmp_path):
    out = tmp_path / "cnn_int8.tflite"
    result = run(CNN, [StageCall("import"), StageCall("train.finetune", {"epochs": 1, "batch_size": 32}),
                       StageCall("quantize.ptq")], output=out,
                 data=DataParams(data=str(IMAGES), labels=str(LABELS), calib_samples=200), quiet=True)
    rep = result.report
    assert [s["stage"] for s in rep["lineage"]] == ["import", "train.finetune", "quantize.ptq"]
    t = rep["training"]
    assert t["epochs_run"] == 1 and t["steps_per_epoch"] == 540 // 32 and t["objective"] == "1·ce"
    assert t["data"]["samples"] == 540 and t["data"]["targets"] == "labels"
    acc = rep["accuracy"]
    assert acc["data"]["split"] == "held-back-train" and acc["data"]["samples"] == 60
    assert "held back from training" in acc["data"]["described"]
    # the validation of the last epoch (Keras) and the report's FP32 .tflite saw the same 60 images
    fp32 = acc["models"]["fp32"]["top1"]["accuracy"]
    assert abs(fp32 - t["history"][-1]["val_accuracy"]) <= 1 / 60 + 1e-9
    assert rep["evaluation_data"]["source"] == str(IMAGES)  # calibrated on the training part of --data
    md = out.with_name(out.stem + ".report.md").read_text()
    assert "## Training" in md and "0 (before)" in md
    assert not (tmp_path / "cnn_int8.tflite.ckpt").exists()  # a completed run leaves no checkpoint folder


def test_finetune_without_labels_trains_towards_the_original_outputs(tmp_path):
    result = edgeopt.finetune(CNN, data=IMAGES, output=tmp_path / "kd.keras", epochs=1, batch_size=64, lr=1e-3)
    t = result.artifact.metrics["training"]
    assert t["objective"] == "1·kd(T=4)"
    assert t["data"]["targets"] == "the original model's outputs (onnxruntime)"
    assert t["history"][0]["val_agreement"] >= 0.9  # the student stays with its teacher
    assert t["initial"]["val_agreement"] == 1.0  # before training, the imported model is the teacher
    assert (tmp_path / "kd.keras").exists()


def test_class_folders_carry_labels_and_save_keras_keeps_the_trained_model(tmp_path):
    from PIL import Image

    images, labels = read_idx(IMAGES), read_idx(LABELS)
    root = tmp_path / "photos"
    names = ["a_tshirt", "b_trouser", "c_pullover"]
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in np.flatnonzero(labels == c)[:24]:
            Image.fromarray(images[i]).save(root / name / f"{i}.png")
    out, kept = tmp_path / "tuned.tflite", tmp_path / "tuned.keras"
    result = edgeopt.finetune(CNN, data=root, output=out, save_keras=kept, epochs=1, batch_size=16)
    t = result.report["training"]
    assert t["data"]["classes"] == names and t["data"]["samples"] == 72 - 7
    assert result.report["accuracy"]["data"]["samples"] == 7  # round(0.1 * 72) held back
    from edgeopt._tf import keras

    model = keras().models.load_model(kept, compile=False)
    x = images[:8, :, :, None].astype(np.float32) / 255.0
    from edgeopt.runtime import TFLiteModel

    tfl = TFLiteModel(out)
    got = np.concatenate([tfl.run_one({tfl.input_names[0]: x[i:i + 1]})[tfl.output_names[0]] for i in range(8)])
    assert np.abs(got - model.predict(x, verbose=0)).max() < 1e-4  # the .tflite is the kept model, converted


def test_labels_that_do_not_fit_are_data_errors(tmp_path):
    short = tmp_path / "short.npy"
    np.save(short, read_idx(LABELS)[:500])
    with pytest.raises(DataError, match=r"holds 500 labels but .* holds 600 samples"):
        edgeopt.finetune(CNN, data=IMAGES, labels=short, output=tmp_path / "a.keras")
    big = tmp_path / "big.npy"
    y = read_idx(LABELS).astype(np.int64)
    y[7] = 12
    np.save(big, y)
    with pytest.raises(DataError, match=r"labels go up to 12 \(13 classes\) but the model's output 'logits' has 10"):
        edgeopt.finetune(CNN, data=IMAGES, labels=big, output=tmp_path / "b.keras")
    empty = tmp_path / "folders"
    (empty / "cats").mkdir(parents=True)
    (empty / "dogs").mkdir()
    from PIL import Image

    Image.fromarray(read_idx(IMAGES)[0]).save(empty / "cats" / "0.png")
    with pytest.raises(DataError, match="class folder dogs holds no images"):
        edgeopt.finetune(CNN, data=empty, output=tmp_path / "c.keras")


def test_ce_without_labels_and_data_without_training_are_refused(tmp_path):
    with pytest.raises(DataError, match="ce loss term needs labels"):
        edgeopt.finetune(CNN, data=IMAGES, output=tmp_path / "a.keras", loss=("ce",))
    with pytest.raises(RecipeError, match="no stage of this run trains"):
        run(CNN, [StageCall("import"), StageCall("quantize.ptq")], output=tmp_path / "b.tflite",
            data=DataParams(data=str(IMAGES)), quiet=True)


def test_cli_finetune_to_keras_prints_the_epochs_and_the_digest(tmp_path):
    out = tmp_path / "t.keras"
    res = run_edgeopt(["finetune", CNN, "--data", IMAGES, "--labels", LABELS, "--epochs", "1", "--batch-size", "64",
                       "--val-split", "0.2", "-o", out])
    assert res.returncode == 0, res.stderr[-3000:]
    assert "0 (before)" in res.stdout and "weights sha256" in res.stdout and f"wrote {out}" in res.stdout
    assert "fine-tuning epoch 1/1: loss" in res.stderr
    bad = run_edgeopt(["compress", CNN, "--data", IMAGES, "-o", tmp_path / "x.tflite"])
    assert bad.returncode == 2 and "no stage of this run trains" in bad.stderr and "--finetune" in bad.stderr


def test_finetune_help_lists_the_training_flags_with_examples():
    res = run_edgeopt(["finetune", "--help"])
    assert res.returncode == 0
    for flag in ("--epochs", "--batch-size", "--lr", "--strategy", "--resume", "--loss", "--augment", "--save-keras",
                 "multi-worker", "Examples"):
        assert flag in res.stdout, flag
    compress = run_edgeopt(["compress", "--help"])
    for flag in ("--finetune", "--data", "--epochs", "--strategy"):
        assert flag in compress.stdout, flag
    stages = run_edgeopt(["stages"])
    assert "train.finetune" in stages.stdout and "(recipe only)" not in stages.stdout


def test_compress_finetune_writes_a_recipe_that_loads_to_the_same_stages(tmp_path):
    from edgeopt.recipe import load_recipe

    recipe = tmp_path / "r.toml"
    res = run_edgeopt(["compress", CNN, "--finetune", "--data", IMAGES, "--labels", LABELS, "--epochs", "3",
                       "--loss", "ce=0.5,kd=0.5", "--augment", "crop", "--int8", "--recipe-out", recipe,
                       "-o", tmp_path / "x.tflite", "--batch-size", "600"])  # one batch more than the data
    assert res.returncode == 2 and "fewer than one batch of 600" in res.stderr  # refused after the recipe
    r = load_recipe(recipe)
    assert [c.use for c in r.calls] == ["import", "train.finetune", "quantize.ptq"]
    train = dict(r.calls[1].values)
    assert train["epochs"] == 3 and tuple(train["loss"]) == ("ce=0.5", "kd=0.5")
    assert tuple(train["augment"]) == ("crop",)
    assert "checkpoint_dir" not in train  # unset values are left out, not written as "None"
    assert r.data_params().data == str(IMAGES) and r.data_params().labels == str(LABELS)


def test_importing_edgeopt_leaves_gpus_visible():
    import subprocess
    import sys

    from train_helpers import env

    e = env()
    e.pop("CUDA_VISIBLE_DEVICES")
    code = ("import os, edgeopt; from edgeopt._tf import tf; tf(); "
            "print(repr(os.environ.get('CUDA_VISIBLE_DEVICES')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "None"


def test_shipped_finetune_recipe_runs_through_edgeopt_run(tmp_path):
    from edgeopt.recipe import load_recipe

    from train_helpers import REPO

    recipe = REPO / "recipes" / "finetune_int8.toml"
    assert [c.use for c in load_recipe(recipe).calls] == ["import", "train.finetune", "quantize.ptq"]
    out = tmp_path / "r_int8.tflite"
    res = run_edgeopt(["run", recipe, CNN, "--data", IMAGES, "--labels", LABELS, "-o", out])
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.loads(out.with_name(out.stem + ".report.json").read_text())
    assert rep["training"]["epochs_run"] == 2 and rep["training"]["global_batch"] == 32
    assert rep["precision"] == "int8" and rep["accuracy"]["data"]["samples"] == 60
    assert rep["accuracy"]["models"]["int8"]["top1"]["accuracy"] >= 0.8  # 60 held-back Fashion-MNIST images


def test_calibration_without_calib_never_sees_the_validation_split(tmp_path):
    """No --calib: calibration samples come from the training part of --data, the held-back split stays unseen."""
    from edgeopt.context import Context

    imported = edgeopt.load(CNN)
    ctx = Context(workdir=tmp_path, data=DataParams(data=str(IMAGES), labels=str(LABELS), calib_samples=600),
                  quiet=True)
    split = ctx.training(imported.inputs[0])
    assert len(split.val) == 60 and len(np.intersect1d(split.train, split.val)) == 0
    samples = ctx.samples(imported.inputs)
    seen = np.concatenate([samples.calib[0], samples.holdout[0]])
    assert len(seen) == 540  # every training sample, none of the 60 held back
    val = ctx.open_training(imported.inputs[0]).read(split.val)
    flat_seen = {row.tobytes() for row in seen.reshape(len(seen), -1)}
    assert not any(row.tobytes() in flat_seen for row in val.reshape(len(val), -1))
