"""`make bench`: does fine-tuning the shipped demo CNN for 2 epochs on the Fashion-MNIST training set raise or hold
its accuracy on all 10,000 test images? (goal: fine-tuned >= original)

Runs `edgeopt finetune edgeopt/assets/fashion_mnist_cnn.onnx --data train-images --labels train-labels --val t10k
--val-labels t10k --epochs 2 -o tuned.tflite` (defaults otherwise: AdamW, lr 1e-4, cosine, batch 32) and reads its
report: top-1 of the original model (onnxruntime) and of the fine-tuned FP32 .tflite on the 10,000 t10k images,
with their 95 % intervals. Beside it, the same 2 epochs with a plain ``model.fit`` (same optimizer, schedule and
batch; Keras' own shuffling of the arrays in memory) on the imported Keras model, evaluated on the same images.

The data is the Debian package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist`). Writes
bench/results/finetune.json and .md.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
CNN = REPO / "edgeopt" / "assets" / "fashion_mnist_cnn.onnx"
EPOCHS, BATCH, LR = 2, 32, 1e-4


def edgeopt_finetune(out: Path) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "edgeopt.cli", "finetune", str(CNN),
           "--data", str(FASHION / "train-images-idx3-ubyte.gz"), "--labels", str(FASHION / "train-labels-idx1-ubyte.gz"),
           "--val", str(FASHION / "t10k-images-idx3-ubyte.gz"), "--val-labels", str(FASHION / "t10k-labels-idx1-ubyte.gz"),
           "--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--lr", str(LR), "-o", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"edgeopt finetune failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.with_name(out.stem + ".report.json").read_text()), time.perf_counter() - t0


def plain_fit() -> dict:
    """The peer: tf_keras compile + fit on the imported model, same optimizer, cosine schedule, batch, epochs."""
    import edgeopt
    from edgeopt._tf import keras
    from edgeopt.data import read_labels
    from edgeopt.data.idx import read_idx
    from edgeopt.train.schedule import make_schedule

    k = keras()
    imported = edgeopt.load(CNN)
    model = imported.model
    x = read_idx(FASHION / "train-images-idx3-ubyte.gz").astype(np.float32)[..., None] / 255.0
    y = read_labels(FASHION / "train-labels-idx1-ubyte.gz")
    xt = read_idx(FASHION / "t10k-images-idx3-ubyte.gz").astype(np.float32)[..., None] / 255.0
    yt = read_labels(FASHION / "t10k-labels-idx1-ubyte.gz")
    before = float(np.mean(np.argmax(model.predict(xt, batch_size=256, verbose=0), 1) == yt))
    steps = len(x) // BATCH
    k.utils.set_random_seed(0)
    model.compile(optimizer=k.optimizers.AdamW(learning_rate=make_schedule(peak=LR, warmup=0, total=steps * EPOCHS,
                                                                          cosine=True), weight_decay=0.0),
                  loss=k.losses.SparseCategoricalCrossentropy(from_logits=True))
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=True, verbose=0)
    seconds = time.perf_counter() - t0
    after = float(np.mean(np.argmax(model.predict(xt, batch_size=256, verbose=0), 1) == yt))
    return {"keras_before": before, "keras_after": after, "train_seconds": seconds}


def main() -> int:
    from edgeopt.outputs import write_text

    if not (FASHION / "train-images-idx3-ubyte.gz").exists():
        print(f"{FASHION} not found: install the Debian package dataset-fashion-mnist "
              "(scripts/install-test-deps.sh does)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        report, seconds = edgeopt_finetune(Path(tmp) / "tuned.tflite")
    acc = report["accuracy"]
    orig, tuned = acc["models"]["original"]["top1"], acc["models"]["fp32"]["top1"]
    training = report["training"]
    peer = plain_fit()
    doc = {
        "command": "edgeopt finetune fashion_mnist_cnn.onnx --data train (60,000) --labels ... --val t10k "
                   f"--val-labels ... --epochs {EPOCHS} --batch-size {BATCH} --lr {LR} -o tuned.tflite",
        "test_images": acc["data"]["samples"],
        "original_top1": orig, "finetuned_fp32_tflite_top1": tuned,
        "raised_or_held": tuned["accuracy"] >= orig["accuracy"],
        "training_history": training["history"],
        "edgeopt_run_seconds": seconds,
        "plain_model_fit": peer,
    }
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "finetune.json", json.dumps(doc, indent=2) + "\n")

    def pct(r):
        return f"{100 * r['accuracy']:.2f} % [{100 * r['ci95'][0]:.2f}, {100 * r['ci95'][1]:.2f}]"

    md = ["# Fine-tuning the demo CNN on Fashion-MNIST (2 epochs), accuracy on all 10,000 test images", "",
          "| model | top-1 (95 % interval) |", "|---|---|",
          f"| original (onnxruntime) | {pct(orig)} |",
          f"| fine-tuned by `edgeopt finetune`, FP32 .tflite | {pct(tuned)} |",
          f"| peer: plain `model.fit`, same settings (Keras) | {100 * peer['keras_before']:.2f} % → "
          f"{100 * peer['keras_after']:.2f} % |", "",
          f"Training time: edgeopt {sum(r['seconds'] for r in training['history']):.0f} s (the whole run, with "
          f"import, conversion and report: {seconds:.0f} s); plain fit {peer['train_seconds']:.0f} s (arrays in "
          "memory).", ""]
    write_text(out / "finetune.md", "\n".join(md))
    print("\n".join(md))
    return 0 if doc["raised_or_held"] else 1


if __name__ == "__main__":
    sys.exit(main())
