"""The Fashion-MNIST ResNet of the pruning benchmark: defined, trained and evaluated in torch, exported to ONNX.

A ResNet-14 in the CIFAR manner (3x3 stem, three stages of two basic blocks at 24, 48 and 96 channels, strides 1, 2,
2, 1x1 projection shortcuts where the shape changes, global average pooling, a linear classifier). Trained with SGD
(momentum 0.9, Nesterov, weight decay 5e-4, one-cycle learning rate peaking at 0.1, batch 128, random 2-pixel shifts
and horizontal flips), seeded. Inputs are the images scaled to [0, 1], shape (N, 1, 28, 28).

``trained(cache)`` trains once and keeps the weights and the ONNX file under ``cache`` (keyed by the settings), so a
second ``make bench`` starts from them.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import time
from pathlib import Path

import numpy as np

FASHION = Path("/usr/share/datasets/fashion-mnist")
SETTINGS = {"widths": (24, 48, 96), "blocks": 2, "epochs": 6, "batch": 128, "lr": 0.1, "weight_decay": 5e-4,
            "seed": 0}


def read_idx(path: Path) -> np.ndarray:
    raw = gzip.open(path).read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images as float32 (N, 1, 28, 28) in [0, 1], labels int64) of ``train`` or ``t10k``."""
    x = read_idx(FASHION / f"{split}-images-idx3-ubyte.gz").astype(np.float32)[:, None] / 255.0
    y = read_idx(FASHION / f"{split}-labels-idx1-ubyte.gz").astype(np.int64)
    return x, y


def build(widths=SETTINGS["widths"], blocks=SETTINGS["blocks"]):
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.shortcut = nn.Identity()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return self.relu(y + self.shortcut(x))

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                      nn.ReLU(inplace=True))
            layers, cin = [], widths[0]
            for i, w in enumerate(widths):
                for b in range(blocks):
                    layers.append(Block(cin, w, 2 if (i > 0 and b == 0) else 1))
                    cin = w
            self.layers = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(cin, 10)

        def forward(self, x):
            return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))

    return ResNet()


def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random shifts by up to 2 pixels (zero padding) and horizontal flips."""
    n = len(x)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    dy, dx = rng.integers(0, 5, n), rng.integers(0, 5, n)
    out = np.stack([padded[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28] for i in range(n)])
    flip = rng.random(n) < 0.5
    out[flip] = out[flip][..., ::-1]
    return out


def accuracy(model, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    import torch

    model.eval()
    hits = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            hits += int((model(torch.from_numpy(x[i:i + batch])).argmax(1).numpy() == y[i:i + batch]).sum())
    return hits / len(x)


def fit(model, x: np.ndarray, y: np.ndarray, *, epochs: int, batch: int, optimizer, scheduler, seed: int,
        shift_flip: bool, log=print) -> list[float]:
    """Train ``model`` on (x, y); returns the mean loss per epoch."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    losses = []
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(x))
        total, count, t0 = 0.0, 0, time.perf_counter()
        for i in range(0, len(order) - batch + 1, batch):
            idx = order[i:i + batch]
            xb = augment(x[idx], rng) if shift_flip else x[idx]
            inputs = torch.from_numpy(np.ascontiguousarray(xb)).to(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(inputs), torch.from_numpy(y[idx]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total, count = total + float(loss.detach()) * len(idx), count + len(idx)
        losses.append(total / count)
        log(f"  epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f} ({time.perf_counter() - t0:.0f} s)")
    return losses


def fit_one_cycle(model, x: np.ndarray, y: np.ndarray, settings: dict, *, log=print) -> float:
    """``fit`` with SGD (momentum 0.9, Nesterov, ``settings["weight_decay"]``), a one-cycle learning rate peaking at
    ``settings["lr"]``, ``settings["epochs"]`` epochs of ``settings["batch"]``, shifts and flips; returns seconds."""
    import torch

    steps = settings["epochs"] * (len(x) // settings["batch"])
    opt = torch.optim.SGD(model.parameters(), lr=settings["lr"], momentum=0.9, nesterov=True,
                          weight_decay=settings["weight_decay"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings["lr"], total_steps=steps)
    t0 = time.perf_counter()
    fit(model, x, y, epochs=settings["epochs"], batch=settings["batch"], optimizer=opt, scheduler=sched,
        seed=settings["seed"], shift_flip=True, log=log)
    return time.perf_counter() - t0


def export(model, path: Path) -> None:
    import torch

    model.eval()
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}}, opset_version=13, dynamo=False)


def trained(cache: Path, log=print) -> dict:
    """Train (or reuse) the model; returns {"onnx", "weights", "test_accuracy", "train_seconds", "settings"}."""
    import torch

    key = hashlib.sha256(json.dumps(SETTINGS, sort_keys=True).encode()).hexdigest()[:12]
    folder = Path(cache).resolve() / f"fmnist_resnet14-{key}"
    info_path = folder / "info.json"
    if info_path.exists():  # the files' paths are those of this folder, wherever the cache was made
        return {**json.loads(info_path.read_text()), "onnx": str(folder / "model.onnx"),
                "weights": str(folder / "weights.pt")}
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SETTINGS["seed"])
    x, y = fashion("train")
    xt, yt = fashion("t10k")
    model = build().to(memory_format=torch.channels_last)  # NHWC kernels: faster on CPU
    log(f"training the torch ResNet-14 on Fashion-MNIST ({SETTINGS['epochs']} epochs)")
    seconds = fit_one_cycle(model, x, y, SETTINGS, log=log)
    model = model.to(memory_format=torch.contiguous_format)
    torch.save(model.state_dict(), folder / "weights.pt")
    export(model, folder / "model.onnx")
    info = {"onnx": str(folder / "model.onnx"), "weights": str(folder / "weights.pt"),
            "test_accuracy": accuracy(model, xt, yt), "train_seconds": round(seconds, 1), "settings": SETTINGS}
    info_path.write_text(json.dumps(info, indent=2))
    return info


if __name__ == "__main__":
    import sys

    print(json.dumps(trained(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".cache/bench")), indent=2))
