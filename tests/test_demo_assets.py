"""The shipped demo model and data: they load, fit together, and reach the accuracy their README states."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgeopt.data import load_samples, read_idx
from edgeopt.frontends.spec import TensorSpec

ASSETS = Path(__file__).resolve().parents[1] / "edgeopt" / "assets"
MODEL = ASSETS / "fashion_mnist_cnn.onnx"
IMAGES = ASSETS / "fashion_mnist_subset-images-idx3-ubyte.gz"
LABELS = ASSETS / "fashion_mnist_subset-labels-idx1-ubyte.gz"
FULL_T10K = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist, optional
SPEC = TensorSpec("image", (1, 1, 28, 28), (1, 28, 28, 1), "float32", (0, 2, 3, 1))


def readme_accuracy(row: str) -> float:
    """The accuracy (percent) in the README's accuracy table row that starts with ``row``."""
    text = (ASSETS / "README.md").read_text()
    match = re.search(rf"^\| {re.escape(row)} \| [\d,]+ \| ([\d.]+) % \|$", text, re.MULTILINE)
    assert match, f"no '{row}' accuracy row in {ASSETS / 'README.md'}"
    return float(match.group(1))


def accuracy(x: np.ndarray, labels: np.ndarray) -> float:
    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    logits = np.concatenate([sess.run(None, {"image": x[i : i + 1000]})[0] for i in range(0, len(x), 1000)])
    return 100.0 * float((logits.argmax(1) == labels).mean())


def test_files_are_small_and_consistent():
    assert MODEL.stat().st_size < 1_000_000
    model = onnx.load(str(MODEL))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == 13
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert model.graph.input[0].name == "image" and dims[0].dim_param == "batch"
    assert [d.dim_value for d in dims[1:]] == [1, 28, 28]
    labels = read_idx(LABELS)
    assert read_idx(IMAGES).shape == (600, 28, 28)
    assert np.bincount(labels, minlength=10).tolist() == [60] * 10  # balanced: 60 per class


def test_subset_accuracy_matches_readme():
    x = load_samples(IMAGES, SPEC)
    assert x.shape == (600, 1, 28, 28) and float(x.min()) == 0.0 and float(x.max()) == 1.0
    measured = accuracy(x, read_idx(LABELS))
    stated = readme_accuracy("shipped subset")
    assert measured >= stated - 2.0
    assert measured >= 88.0
    assert measured == pytest.approx(stated, abs=0.5)  # onnxruntime on the same bytes: the same answers


@pytest.mark.skipif(not FULL_T10K.is_dir(), reason=f"full Fashion-MNIST not installed in {FULL_T10K}")
def test_full_test_split_accuracy_matches_readme():
    x = load_samples(FULL_T10K / "t10k-images-idx3-ubyte.gz", SPEC)
    measured = accuracy(x, read_idx(FULL_T10K / "t10k-labels-idx1-ubyte.gz"))
    assert measured == pytest.approx(readme_accuracy("full t10k test split"), abs=0.2)
    assert measured >= 88.0
