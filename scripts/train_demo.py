"""Train the small Fashion-MNIST CNN shipped as edgeopt's demo model, and write it with a test subset.

The model and data it writes to ``edgeopt/assets/`` make ``make demo`` and the quick-start work without any
download. Run by hand (about two minutes on two CPU cores), from the project root:

    apt-get install dataset-fashion-mnist   # Fashion-MNIST in /usr/share/datasets/fashion-mnist/
    .venv/bin/python scripts/train_demo.py

Options: ``--data DIR`` (the folder holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``), ``--out DIR``
(default ``edgeopt/assets``), ``--epochs N`` (default 6). Needs torch (CPU is enough), onnx and onnxruntime.
The run is deterministic: fixed seeds, two threads, deterministic kernels.

Outputs:
- ``fashion_mnist_cnn.onnx``: input ``image`` [batch, 1, 28, 28] float32 in [0, 1], output ``logits`` [batch, 10];
  opset 13, exported with the TorchScript exporter (``dynamo=False``).
- ``fashion_mnist_subset-{images-idx3,labels-idx1}-ubyte.gz``: 600 images of the t10k split, 60 per class (the
  first 60 of each class in file order), in idx format.
- ``README.md``: what these are, and the model's accuracy in onnxruntime on the full t10k split and on the subset.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

# the project root, so the script runs from a checkout without installing the package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edgeopt.data.idx import read_idx, write_idx  # noqa: E402

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
PER_CLASS = 60  # 60 x 10 classes = 600 subset images
SEED = 0
WIDTHS = (16, 32, 64, 64)  # output channels of the four conv blocks
MODEL_NAME = "fashion_mnist_cnn.onnx"
SUBSET_IMAGES = "fashion_mnist_subset-images-idx3-ubyte.gz"
SUBSET_LABELS = "fashion_mnist_subset-labels-idx1-ubyte.gz"


def conv_bn_relu(cin: int, cout: int, *, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class DemoCNN(nn.Module):
    """28x28 -> 14x14 (max pool) -> 7x7 (stride 2) -> global average pool -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu(1, WIDTHS[0]),
            nn.MaxPool2d(2),
            conv_bn_relu(WIDTHS[0], WIDTHS[1]),
            conv_bn_relu(WIDTHS[1], WIDTHS[2], stride=2),
            conv_bn_relu(WIDTHS[2], WIDTHS[3]),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(WIDTHS[3], len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def load_split(data: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(data / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx(data / f"{split}-labels-idx1-ubyte.gz")
    return images, labels.astype(np.int64)


def to_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1]: x / 255."""
    return (images.astype(np.float32) / 255.0)[:, None]


def train(model: nn.Module, images: np.ndarray, labels: np.ndarray, *, epochs: int) -> None:
    x, y = torch.from_numpy(to_input(images)), torch.from_numpy(labels)
    batch = 128
    steps = epochs * ((len(x) + batch - 1) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.2)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    for epoch in range(epochs):
        t0, order, total, correct = time.time(), torch.randperm(len(x), generator=gen), 0.0, 0
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            xb, yb = x[idx], y[idx]
            # horizontal flips: clothes are left/right symmetric enough, and it helps in few epochs
            flip = torch.rand(len(xb), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(xb)
            correct += int((logits.argmax(1) == yb).sum())
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f}, train acc {100 * correct / len(x):.2f} %, "
              f"{time.time() - t0:.0f} s")


def export(model: nn.Module, path: Path) -> None:
    model.eval()
    # dynamo=False on purpose (the output needs only onnx); silence the exporter's notice about its successor
    warnings.filterwarnings("ignore", message="You are using the legacy TorchScript", category=DeprecationWarning)
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, 28, 28),),
        str(path),
        dynamo=False,
        opset_version=13,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
    )
    onnx.checker.check_model(onnx.load(str(path)))


def onnx_accuracy(path: Path, images: np.ndarray, labels: np.ndarray) -> float:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = to_input(images)
    preds = np.concatenate([sess.run(None, {"image": x[i : i + 1000]})[0].argmax(1) for i in range(0, len(x), 1000)])
    return 100.0 * float((preds == labels).mean())


def balanced_subset(labels: np.ndarray, *, per_class: int) -> np.ndarray:
    """Indices of the first ``per_class`` examples of each class, in file order."""
    picks = [np.flatnonzero(labels == c)[:per_class] for c in range(len(CLASSES))]
    return np.sort(np.concatenate(picks))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def onnx_summary(path: Path) -> tuple[int, str]:
    """The number of weights in the file and its op types in graph order."""
    graph = onnx.load(str(path)).graph
    return int(sum(np.prod(t.dims) for t in graph.initializer)), ", ".join(dict.fromkeys(n.op_type for n in graph.node))


def write_readme(out: Path, *, params: int, acc_full: float, acc_subset: float, epochs: int) -> None:
    files = [MODEL_NAME, SUBSET_IMAGES, SUBSET_LABELS]
    onnx_params, ops = onnx_summary(out / MODEL_NAME)
    rows = "\n".join(f"| `{f}` | {(out / f).stat().st_size:,} | `{sha256(out / f)[:16]}` |" for f in files)
    classes = ", ".join(f"{i} {c}" for i, c in enumerate(CLASSES))
    text = f"""# edgeopt demo assets

A small trained image classifier and a few hundred test images, shipped so that the demo and the quick start run
offline.

| file | bytes | sha256 (first 16 hex) |
|---|---|---|
{rows}

## The model
`{MODEL_NAME}`: a CNN for Fashion-MNIST, 10 classes:
{classes}.
- input `image`: float32 [batch, 1, 28, 28], pixel values in [0, 1] (uint8 / 255), no mean/std; NCHW
- output `logits`: float32 [batch, 10] (no softmax)
- layers: 4 x (Conv 3x3 + BatchNorm + ReLU) with {", ".join(map(str, WIDTHS))} channels, a 2x2 max pool after the
  first and stride 2 in the third, global average pool, Dense {WIDTHS[-1]} -> 10
- {params:,} trainable parameters in PyTorch; {onnx_params:,} weights in the ONNX file, where the
  exporter (PyTorch {torch.__version__.split("+")[0]}, TorchScript, opset 13, dynamic batch axis) folded each
  BatchNorm into the Conv before it; ONNX ops: {ops}

## The data
`fashion_mnist_subset-*-ubyte.gz`: {PER_CLASS * len(CLASSES)} images of the Fashion-MNIST **test** (t10k) split,
the first {PER_CLASS} of each class in file order, with their labels, in idx format (magic 0x00000803 /
0x00000801). The model never saw them in training (it was trained on the 60,000-image train split only).

Source data: Fashion-MNIST by Zalando Research (MIT licence), https://github.com/zalandoresearch/fashion-mnist, from
the Debian package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/`).

## Accuracy (top-1, onnxruntime, CPU)
| data | images | accuracy |
|---|---|---|
| full t10k test split | 10,000 | {acc_full:.2f} % |
| shipped subset | {PER_CLASS * len(CLASSES)} | {acc_subset:.2f} % |

## How they were made
`scripts/train_demo.py` ({epochs} epochs, AdamW with a one-cycle learning rate, batch 128, random horizontal flips,
seed {SEED}, two threads), run from the project root:

    .venv/bin/python scripts/train_demo.py
"""
    (out / "README.md").write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "edgeopt" / "assets")
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()

    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)

    train_x, train_y = load_split(args.data, "train")
    test_x, test_y = load_split(args.data, "t10k")
    model = DemoCNN()
    params = sum(p.numel() for p in model.parameters())
    print(f"training DemoCNN ({params:,} parameters) on {len(train_x):,} images")
    train(model, train_x, train_y, epochs=args.epochs)

    model_path = args.out / MODEL_NAME
    export(model, model_path)
    pick = balanced_subset(test_y, per_class=PER_CLASS)
    write_idx(test_x[pick], path=args.out / SUBSET_IMAGES)
    write_idx(test_y[pick].astype(np.uint8), path=args.out / SUBSET_LABELS)

    acc_full = onnx_accuracy(model_path, test_x, test_y)
    acc_subset = onnx_accuracy(model_path, test_x[pick], test_y[pick])
    print(f"onnxruntime top-1: full t10k {acc_full:.2f} %, subset ({len(pick)}) {acc_subset:.2f} %")
    write_readme(args.out, params=params, acc_full=acc_full, acc_subset=acc_subset, epochs=args.epochs)
    print(f"wrote {model_path} ({model_path.stat().st_size:,} bytes), the subset and README.md to {args.out}")


if __name__ == "__main__":
    main()
