"""Labeled data and accuracy in the report (issue 7, items 1 and 2).

Labels: idx, .npy, the ``y`` of an .npz, class folders; they follow the seeded pick of the samples; bad labels are
a DataError naming the file and the numbers. Accuracy: top-1 (top-5 above 10 classes) of the original model, the
FP32 and the output .tflite, with the sample count and a 95 % Wilson interval, equal to an independent evaluation.
"""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgeopt
from edgeopt.accuracy import classifier_output, topk, wilson
from edgeopt.data import load_labels, load_samples, read_idx, read_labels, write_idx
from edgeopt.data.labels import class_folder_labels
from edgeopt.errors import DataError
from edgeopt.frontends.spec import TensorSpec

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "edgeopt" / "assets"
DEMO = ASSETS / "fashion_mnist_cnn.onnx"
DEMO_IMAGES = ASSETS / "fashion_mnist_subset-images-idx3-ubyte.gz"
DEMO_LABELS = ASSETS / "fashion_mnist_subset-labels-idx1-ubyte.gz"
QUICK = {"latency_runs": 2, "warmup_runs": 0, "delegates": False}
SPEC = TensorSpec("x", (1, 1, 4, 4), (1, 4, 4, 1), "float32", (0, 2, 3, 1))


# ---- the interval and the scores ---------------------------------------------------------------------------------

def test_wilson_interval_values():
    lo, hi = wilson(98, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.9300, 0.9945)
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and round(hi, 4) == 0.2775
    lo, hi = wilson(10, 10)
    assert round(lo, 4) == 0.7225 and hi == 1.0
    assert wilson(0, 0) == (0.0, 1.0)


def test_topk_counts_hits():
    scores = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
    labels = np.array([1, 1, 2, 1])
    t1 = topk(scores, labels, k=1)
    assert (t1["correct"], t1["samples"], t1["accuracy"]) == (2, 4, 0.5)
    assert t1["ci95"] == list(wilson(2, 4))
    assert topk(scores, labels, k=2)["correct"] == 4


def test_classifier_output_rule():
    single = TensorSpec("logits", (1, 10), (1, 10), "float32", None)
    boxes = TensorSpec("boxes", (1, 100, 4), (1, 100, 4), "float32", None)
    probs = TensorSpec("probs", (1, 5), (1, 5), "float32", None)
    assert classifier_output([single]) == (0, "the single output")
    assert classifier_output([boxes, probs]) == (1, "the first 2-D [N, classes] output")
    assert classifier_output([boxes]) is None


# ---- label files -------------------------------------------------------------------------------------------------

def test_label_files_idx_gz_npy_npz(tmp_path):
    y = np.array([3, 0, 9, 1], np.uint8)
    assert read_labels(write_idx(y, path=tmp_path / "l-labels-idx1-ubyte")).tolist() == [3, 0, 9, 1]
    with gzip.open(tmp_path / "g-labels-idx1-ubyte.gz", "wb") as f:
        f.write((tmp_path / "l-labels-idx1-ubyte").read_bytes())
    assert read_labels(tmp_path / "g-labels-idx1-ubyte.gz").tolist() == [3, 0, 9, 1]
    np.save(tmp_path / "y.npy", y.astype(np.int32)[:, None])  # (N, 1) is fine
    assert read_labels(tmp_path / "y.npy").tolist() == [3, 0, 9, 1]
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 1, 4, 4), np.float32), y=y)
    assert read_labels(tmp_path / "d.npz").tolist() == [3, 0, 9, 1]
    np.save(tmp_path / "f.npy", np.array([1.0, 2.0]))  # whole floats are integers
    assert read_labels(tmp_path / "f.npy").dtype == np.int64


@pytest.mark.parametrize("array, words", [
    (np.array([1, -2, 3]), ["label 1 is -2", "1 of 3 labels are negative"]),
    (np.array([1.0, 2.5, 3.0]), ["label 1 is 2.5", "not an integer", "1 of 3"]),
    (np.array(["a", "b"]), ["<U1", "not integers"]),
    (np.eye(3, dtype=np.int64), ["shape [3, 3]", "argmax"]),
])
def test_bad_label_values_name_file_and_numbers(tmp_path, array, words):
    path = tmp_path / "y.npy"
    np.save(path, array)
    with pytest.raises(DataError) as err:
        read_labels(path)
    assert str(path) in err.value.message
    for w in words:
        assert w in err.value.message + (err.value.hint or "")


def test_npz_labels_must_be_named_y(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros(3), labels=np.zeros(3))
    with pytest.raises(DataError, match=r"d.npz: holds arrays \['x', 'labels'\]; the labels must be named 'y'"):
        read_labels(tmp_path / "d.npz")


def test_label_count_must_match_images(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((5, 1, 4, 4), np.float32))
    np.save(tmp_path / "y.npy", np.arange(4))
    with pytest.raises(DataError) as err:
        load_labels(tmp_path / "x.npy", SPEC, labels=tmp_path / "y.npy")
    assert err.value.message == f"{tmp_path / 'y.npy'}: holds 4 labels but {tmp_path / 'x.npy'} holds 5 samples."


def test_labels_follow_the_seeded_pick(tmp_path):
    n = 50
    x = np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 4, 4), np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(n) * 7 % 13)  # the .npz carries its own y
    for seed in (0, 3):
        got = load_samples(tmp_path / "d.npz", SPEC, limit=20, seed=seed)
        labels = load_labels(tmp_path / "d.npz", SPEC, limit=20, seed=seed)
        index = got[:, 0, 0, 0].astype(int)
        assert len(index) == 20 and index.tolist() != list(range(20))  # a random pick, not the first 20
        assert labels.values.tolist() == (index * 7 % 13).tolist()


def _class_folder(root: Path, counts: dict[str, int]) -> Path:
    for name, k in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(k):
            Image.fromarray(np.full((4, 4), 40 * i, np.uint8)).save(root / name / f"{i}.png")
    return root


def test_class_folders_carry_sorted_labels(tmp_path):
    root = _class_folder(tmp_path / "val", {"dog": 2, "cat": 1, "emu": 3})
    labels = class_folder_labels(root)
    assert labels.classes == ("cat", "dog", "emu")
    assert labels.values.tolist() == [0, 1, 1, 2, 2, 2]
    picked = load_labels(root, SPEC, limit=4, seed=0)
    assert len(picked.values) == 4 and picked.classes == ("cat", "dog", "emu")
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "flat" / "a.png")
    assert class_folder_labels(tmp_path / "flat") is None  # not an ImageFolder layout: no labels


def test_empty_class_folder_is_an_error(tmp_path):
    root = _class_folder(tmp_path / "val", {"cat": 2, "dog": 1})
    (root / "emu").mkdir()
    with pytest.raises(DataError) as err:
        class_folder_labels(root)
    assert err.value.message == f"{root}: class folder emu holds no images (3 images in 2 other class folders)."


# ---- accuracy in the report --------------------------------------------------------------------------------------

def _tflite_top1(path, x_nhwc: np.ndarray) -> np.ndarray:
    """Predictions of a .tflite file, straight from the LiteRT interpreter, inputs quantized here."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    preds = []
    for sample in x_nhwc:
        v = sample[None].astype(np.float32)
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            v = np.clip(np.round(v / scale) + zero, info.min, info.max).astype(inp["dtype"])
        interp.set_tensor(inp["index"], v)
        interp.invoke()
        preds.append(int(np.argmax(interp.get_tensor(out["index"]).reshape(-1))))
    return np.array(preds)


def test_demo_val_accuracy_equals_independent_evaluation(tmp_path):
    res = edgeopt.compress(DEMO, precision="int8", calib=DEMO_IMAGES, output=tmp_path / "m.tflite",
                           data={"value_range": (0.0, 1.0), "val": str(DEMO_IMAGES), "val_labels": str(DEMO_LABELS)},
                           report=QUICK, quiet=True)
    acc = res.report["accuracy"]
    assert acc["data"]["split"] == "val" and acc["data"]["samples"] == 600
    assert acc["output"] == {"name": "logits", "index": 0, "rule": "the single output", "classes": 10}
    assert set(acc["models"]) == {"original", "fp32", "int8"} and acc["reference"] == "onnxruntime"
    assert all("top5" not in m for m in acc["models"].values())  # 10 classes: top-1 only
    x = read_idx(DEMO_IMAGES).astype(np.float32)[..., None] / 255.0
    y = read_idx(DEMO_LABELS).astype(np.int64)
    int8_correct = int(np.sum(_tflite_top1(tmp_path / "m.tflite", x) == y))
    assert acc["models"]["int8"]["top1"]["correct"] == int8_correct
    assert acc["models"]["int8"]["top1"]["ci95"] == list(wilson(int8_correct, 600))
    import onnxruntime as ort

    sess = ort.InferenceSession(str(DEMO), providers=["CPUExecutionProvider"])
    orig = sess.run(None, {"image": x.transpose(0, 3, 1, 2)})[0].argmax(1)
    assert acc["models"]["original"]["top1"]["correct"] == int(np.sum(orig == y))
    assert acc["models"]["original"]["top1"]["accuracy"] >= 0.85
    md = (tmp_path / "m.report.md").read_text()
    assert "## Accuracy" in md and "all 600 samples of --val" in md and "Wilson score interval" in md
    saved = json.loads((tmp_path / "m.report.json").read_text())
    assert saved["accuracy"]["models"]["int8"]["top1"]["correct"] == int8_correct


def test_cli_held_back_accuracy_in_terminal_table(tmp_path):
    out = tmp_path / "demo_int8.tflite"
    res = subprocess.run([sys.executable, "-m", "edgeopt.cli", "compress", str(DEMO), "--int8",
                          "--calib", str(DEMO_IMAGES), "--labels", str(DEMO_LABELS), "--calib-samples", "600",
                          "--value-range", "0,1", "--latency-runs", "2", "--no-delegates", "-o", str(out)],
                         capture_output=True, text=True, cwd=tmp_path, env=_env())
    assert res.returncode == 0, res.stderr
    assert "accuracy on 120 labeled held-back samples" in res.stdout
    for name in ("original (onnxruntime)", "fp32", "int8", "95 % CI"):
        assert name in res.stdout
    rep = json.loads(out.with_name("demo_int8.report.json").read_text())
    acc = rep["accuracy"]
    assert acc["data"]["split"] == "held-back" and acc["data"]["samples"] == 120
    assert "held back from calibration" in acc["data"]["described"] and "600 --calib samples" in acc["data"]["described"]
    # the held-back labels are those of the held-back images: FP32 agrees with onnxruntime image for image
    assert acc["models"]["fp32"]["top1"]["correct"] == acc["models"]["original"]["top1"]["correct"]
    assert acc["models"]["original"]["top1"]["accuracy"] >= 0.8


def _env():
    import os

    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.mark.parametrize("case", ["count", "classes", "no-labels", "empty-class"])
def test_cli_bad_labels_exit_2_before_conversion(tmp_path, case):
    args = ["--calib", str(DEMO_IMAGES)]
    if case == "count":
        np.save(tmp_path / "y.npy", np.zeros(10, np.int64))
        args += ["--val", str(DEMO_IMAGES), "--val-labels", str(tmp_path / "y.npy")]
        want = f"{tmp_path / 'y.npy'}: holds 10 labels but {DEMO_IMAGES} holds 600 samples."
    elif case == "classes":
        np.save(tmp_path / "y.npy", np.arange(600) % 12)
        args += ["--val", str(DEMO_IMAGES), "--val-labels", str(tmp_path / "y.npy")]
        want = "labels go up to 11 (12 classes) but the model's output 'logits' has 10 classes."
    elif case == "no-labels":
        args += ["--val", str(DEMO_IMAGES)]
        want = "has no labels, so accuracy cannot be measured on it."
    else:
        root = _class_folder(tmp_path / "val", {"a": 1, "b": 1})
        (root / "c").mkdir()
        args += ["--val", str(root)]
        want = "class folder c holds no images"
    out = tmp_path / "m.tflite"
    res = subprocess.run([sys.executable, "-m", "edgeopt.cli", "compress", str(DEMO), "--int8", *args,
                          "--no-delegates", "-o", str(out)], capture_output=True, text=True, env=_env())
    assert res.returncode == 2, res.stdout + res.stderr
    assert want in " ".join(res.stderr.split()), res.stderr
    assert not out.exists()  # checked at import, before any conversion


def test_keras_source_top5_with_more_than_10_classes(tmp_path):
    from edgeopt._tf import keras

    k = keras()
    rng = np.random.default_rng(0)
    inp = k.Input((6, 6, 1), name="x")
    h = k.layers.Conv2D(4, 3, activation="relu")(inp)
    out = k.layers.Dense(12, name="scores")(k.layers.Flatten()(h))
    model = k.Model(inp, out)
    model.save(tmp_path / "m.keras")
    x = rng.uniform(0, 1, (60, 6, 6, 1)).astype(np.float32)
    y = rng.integers(0, 12, 60)
    np.savez(tmp_path / "val.npz", x=x, y=y)
    res = edgeopt.compress(tmp_path / "m.keras", precision="fp32", output=tmp_path / "m.tflite",
                           data={"val": str(tmp_path / "val.npz")}, report=QUICK, quiet=True)
    acc = res.report["accuracy"]
    assert acc["reference"] == "Keras" and acc["data"]["labels"] == str(tmp_path / "val.npz")
    scores = np.asarray(model(x))
    want1 = int(np.sum(scores.argmax(1) == y))
    want5 = int(np.sum(np.any(np.argsort(-scores, 1)[:, :5] == y[:, None], 1)))
    for label in ("original", "fp32"):
        assert acc["models"][label]["top1"]["correct"] == want1
        assert acc["models"][label]["top5"]["correct"] == want5
        assert acc["models"][label]["top5"]["samples"] == 60


# ---- material: MNIST CNTK on the official 10,000 test images -----------------------------------------------------

@pytest.mark.slow
def test_mnist_cntk_accuracy_equals_independent_evaluation(tmp_path, material):
    import onnxruntime as ort

    model = material("models", "mnist_cntk_opset8.onnx")
    images = material("data", "mnist", "t10k-images-idx3-ubyte.gz")
    labels = material("data", "mnist", "t10k-labels-idx1-ubyte.gz")
    res = edgeopt.compress(model, precision="int8", calib=images, output=tmp_path / "int8.tflite",
                           data={"value_range": (0.0, 255.0), "calib_samples": 200, "val": str(images),
                                 "val_labels": str(labels)}, report=QUICK, quiet=True)
    acc = res.report["accuracy"]
    assert acc["data"]["samples"] == 10_000 and acc["data"]["split"] == "val"
    raw = np.frombuffer(gzip.open(images).read(), np.uint8, offset=16).reshape(-1, 28, 28).astype(np.float32)
    y = np.frombuffer(gzip.open(labels).read(), np.uint8, offset=8).astype(np.int64)
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    orig = np.array([sess.run(None, {name: raw[i][None, None]})[0].argmax() for i in range(len(raw))])
    assert int(np.sum(orig == y)) == 9891  # 98.91 %, as the material README says
    assert acc["models"]["original"]["top1"]["correct"] == 9891
    assert round(100 * acc["models"]["original"]["top1"]["accuracy"], 2) == 98.91
    fp32_file = tmp_path / "fp32.tflite"  # the same conversion as the report's FP32 reference (deterministic)
    edgeopt.compress(model, precision="fp32", output=fp32_file, data={"value_range": (0.0, 255.0)},
                     report=QUICK, quiet=True)
    for label, path in (("fp32", fp32_file), ("int8", tmp_path / "int8.tflite")):
        correct = int(np.sum(_tflite_top1(path, raw[..., None]) == y))
        got = acc["models"][label]["top1"]
        assert (got["correct"], got["samples"]) == (correct, 10_000), label
        assert got["ci95"] == list(wilson(correct, 10_000))
    assert acc["models"]["int8"]["top1"]["accuracy"] >= 0.987


def test_calib_class_folders_label_the_held_back_split(tmp_path):
    images, y = read_idx(DEMO_IMAGES), read_idx(DEMO_LABELS)
    names = [f"{c:02d}_class" for c in range(10)]
    root = tmp_path / "calib"
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in np.flatnonzero(y == c)[:10]:
            Image.fromarray(images[i]).save(root / name / f"{i:03d}.png")
    res = edgeopt.compress(DEMO, precision="int8", calib=root, output=tmp_path / "m.tflite",
                           data={"value_range": (0.0, 1.0)}, report=QUICK, quiet=True)
    acc = res.report["accuracy"]
    assert acc["data"]["split"] == "held-back" and acc["data"]["samples"] == 20  # a fifth of 100
    assert acc["data"]["classes"] == names and acc["data"]["labels"] == str(root)
    assert acc["models"]["original"]["top1"]["accuracy"] >= 0.7
    md = (tmp_path / "m.report.md").read_text()
    assert "label i = i-th name): 0 `00_class`, 1 `01_class`" in md
    (root / "zz_empty").mkdir()  # not asked for: an empty class folder only costs the accuracy, with a warning
    res = edgeopt.compress(DEMO, precision="int8", calib=root, output=tmp_path / "m2.tflite",
                           data={"value_range": (0.0, 1.0)}, report=QUICK, quiet=True)
    assert res.report["accuracy"] is None
    assert any("zz_empty holds no images" in w for w in res.report["warnings"])
