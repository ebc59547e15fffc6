"""`make bench`: training throughput of edgeopt's trainer against a plain ``model.fit`` (goal: at least 0.9x).

Both train the same model on the same ``tf.data`` pipeline (the trainer's own: seeded batch plan, samples decoded
on the fly by ``numpy_function``, prefetched), with the same optimizer (AdamW, lr 1e-4) and loss (cross-entropy on
logits), 2 epochs each; the figure is the samples per second of epoch 2 (epoch 1 includes tracing). The runs
alternate, fit then trainer, five pairs; the ratio of each pair compares two runs a few seconds apart, and the
result is the median of the five pair ratios, so a slow moment of the (shared, virtual) machine moves one pair,
not the figure.

- demo CNN: ``edgeopt/assets/fashion_mnist_cnn.onnx`` imported, on 8,192 Fashion-MNIST training images (the
  Debian package's idx file, else the shipped 600-image subset), batch 64.
- MobileNetV2-0.35 at 96x96: ``tf_keras.applications.MobileNetV2(alpha=0.35)``, 10 classes, random weights, on
  1,024 random 96x96 images (a .npy file, memory-mapped), batch 32.
- The distillation students MobileNetV2-0.35 and ShuffleNetV2-0.5 (``edgeopt.distillation.students``, 28x28 with
  the resolution-keeping stem, random weights) on 8,192 Fashion-MNIST training images, batch 128: the distillation
  bench's setting, in which BatchNormalization on full-resolution maps is a large share of each step.

Writes bench/results/train_throughput.json and .md.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
PAIRS = 5


def _fashion_files() -> tuple[Path, Path]:
    """The Fashion-MNIST training images and labels: the Debian package's idx files, else the shipped subset."""
    images, labels = FASHION / "train-images-idx3-ubyte.gz", FASHION / "train-labels-idx1-ubyte.gz"
    if not images.exists():
        assets = REPO / "edgeopt" / "assets"
        images = assets / "fashion_mnist_subset-images-idx3-ubyte.gz"
        labels = assets / "fashion_mnist_subset-labels-idx1-ubyte.gz"
    return images, labels


def _source_cnn(tmp: Path):
    import edgeopt
    from edgeopt.data import Preprocess
    from edgeopt.data.source import open_source

    imported = edgeopt.load(REPO / "edgeopt" / "assets" / "fashion_mnist_cnn.onnx")
    images, labels_file = _fashion_files()
    from edgeopt.data import read_labels

    spec = imported.inputs[0]
    source = open_source(images, spec, preprocess=Preprocess())
    labels = read_labels(labels_file)
    n = min(8192, len(source))
    return "demo CNN (Fashion-MNIST 28x28)", imported.model, spec, source, labels, np.arange(n), 64, str(images)


def _source_mobilenet(tmp: Path):
    from edgeopt._tf import keras
    from edgeopt.data import Preprocess
    from edgeopt.data.source import open_source
    from edgeopt.frontends.spec import TensorSpec

    k = keras()
    k.utils.set_random_seed(0)
    model = k.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10,
                                       classifier_activation=None)
    rng = np.random.default_rng(0)
    path = tmp / "images96.npy"
    np.save(path, rng.random((1024, 96, 96, 3), dtype=np.float32))
    spec = TensorSpec("x", (1, 96, 96, 3), (1, 96, 96, 3), "float32", None)
    source = open_source(path, spec, preprocess=Preprocess())
    labels = rng.integers(0, 10, 1024)
    return "MobileNetV2-0.35 (96x96)", model, spec, source, labels, np.arange(1024), 32, "random 96x96 images"


def _source_student(student: str, title: str):
    """A distillation student of the zoo on Fashion-MNIST at 28x28 (the resolution-keeping stem), batch 128: the
    distillation bench's setting, where BatchNormalization is a large part of each step."""

    def make(tmp: Path):
        from edgeopt._tf import keras
        from edgeopt.data import Preprocess, read_labels
        from edgeopt.data.source import open_source
        from edgeopt.distillation.students import build_student
        from edgeopt.frontends.spec import TensorSpec

        keras().utils.set_random_seed(0)
        model = build_student(student, (28, 28, 1), 10)
        images, labels_file = _fashion_files()
        spec = TensorSpec("x", (1, 28, 28, 1), (1, 28, 28, 1), "float32", None)
        source = open_source(images, spec, preprocess=Preprocess())
        n = min(8192, len(source))
        return title, model, spec, source, read_labels(labels_file), np.arange(n), 128, str(images)

    return make


def _train_data(spec, source, labels, indices):
    from edgeopt.train.data import BatchReader, TrainData

    return TrainData(BatchReader(source, spec, np.asarray(labels, np.int64)), indices, None,
                     {"source": "bench", "samples": int(len(indices))})


def run_trainer(model, data, batch: int, tmp: Path) -> float:
    from edgeopt.params import TrainParams
    from edgeopt.train.trainer import Objective, train

    params = TrainParams(epochs=2, batch_size=batch, lr=1e-4, optimizer="adamw", schedule="constant")
    objective = Objective((("ce", 1.0),), 0, int(model.outputs[0].shape[-1]))
    result = train(model, data, params, objective=objective, checkpoint_dir=tmp / f"ck{time.time_ns()}")
    return result.history[1]["samples_per_second"]


def run_fit(model, data, batch: int) -> float:
    """Plain Keras: a copy of the model, compiled, fit on the trainer's own dataset (default strategy)."""
    from edgeopt._tf import keras, tf
    from edgeopt.params import TrainParams
    from edgeopt.train.trainer import _dataset

    k, tf_ = keras(), tf()
    net = k.models.clone_model(model)
    net.set_weights(model.get_weights())
    net.compile(optimizer=k.optimizers.AdamW(learning_rate=1e-4, weight_decay=0.0),
                loss=k.losses.SparseCategoricalCrossentropy(from_logits=True))
    params = TrainParams(epochs=2, batch_size=batch)
    sample = data.reader.read(0, data.indices[:1])
    ds = _dataset(tf_, data, params, tf_.distribute.InputContext(), start=0, sample=sample)
    ds = ds.map(lambda x, y, *t: (x, y))
    steps = len(data.indices) // batch
    times = []

    class Timer(k.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    net.fit(ds, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[Timer()])
    return steps * batch / times[1]


def main() -> int:
    from edgeopt.console import quieted
    from edgeopt.outputs import write_text

    rows = []
    with tempfile.TemporaryDirectory() as tmpdir, quieted(True):
        tmp = Path(tmpdir)
        for make in (_source_cnn, _source_mobilenet,
                     _source_student("mobilenet_v2_035", "student MobileNetV2-0.35 (Fashion-MNIST 28x28)"),
                     _source_student("shufflenet_v2_x0_5", "student ShuffleNetV2-0.5 (Fashion-MNIST 28x28)")):
            name, model, spec, source, labels, indices, batch, data_name = make(tmp)
            data = _train_data(spec, source, labels, indices)
            fit, ours = [], []
            for _ in range(PAIRS):
                fit.append(run_fit(model, data, batch))
                ours.append(run_trainer(model, data, batch, tmp))
            ratios = [b / a for a, b in zip(fit, ours)]
            row = {"model": name, "data": data_name, "samples": int(len(indices)), "batch": batch,
                   "fit_samples_per_second": float(np.median(fit)),
                   "trainer_samples_per_second": float(np.median(ours)),
                   "fit_runs": fit, "trainer_runs": ours, "pair_ratios": ratios, "ratio": float(np.median(ratios))}
            rows.append(row)
            print(f"{name}: model.fit {row['fit_samples_per_second']:.0f} samples/s, trainer "
                  f"{row['trainer_samples_per_second']:.0f} samples/s, median pair ratio {row['ratio']:.3f} "
                  f"(pairs {', '.join(f'{r:.2f}' for r in ratios)})", file=sys.stderr)
    doc = {"goal": "trainer >= 0.9x plain model.fit (median of the pair ratios)", "epoch_measured": 2,
           "pairs": PAIRS, "threads": "TensorFlow default",
           "rows": rows, "all_met": all(r["ratio"] >= 0.9 for r in rows)}
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "train_throughput.json", json.dumps(doc, indent=2) + "\n")
    md = ["# Training throughput: edgeopt trainer vs plain model.fit", "",
          f"Same model, same tf.data pipeline, AdamW lr 1e-4, cross-entropy; samples/s of epoch 2 (median of "
          f"{PAIRS} runs each, alternating fit and trainer); ratio: the median of the {PAIRS} pair ratios.", "",
          "| model | data | samples | batch | model.fit | edgeopt trainer | ratio | pair ratios |",
          "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['model']} | {r['data']} | {r['samples']} | {r['batch']} | "
                  f"{r['fit_samples_per_second']:.0f}/s | {r['trainer_samples_per_second']:.0f}/s | "
                  f"{r['ratio']:.3f} | {', '.join(f'{x:.2f}' for x in r['pair_ratios'])} |")
    write_text(out / "train_throughput.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if doc["all_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
