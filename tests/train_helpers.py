"""Shared by the training and pruning tests: the shipped demo CNN and data, the edgeopt command, weights of a
.keras file, a small model whose pruning group mixes a Concatenate with a residual Add."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "edgeopt" / "assets"
CNN = ASSETS / "fashion_mnist_cnn.onnx"
IMAGES = ASSETS / "fashion_mnist_subset-images-idx3-ubyte.gz"
LABELS = ASSETS / "fashion_mnist_subset-labels-idx1-ubyte.gz"
EDGEOPT = [sys.executable, "-m", "edgeopt.cli"]


def env(**extra: str) -> dict:
    e = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "CUDA_VISIBLE_DEVICES": "", "COLUMNS": "200"}
    e.pop("TF_CONFIG", None)
    e.update(extra)
    return e


def run_edgeopt(args, *, timeout: int = 600, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGEOPT, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env(**extra), cwd=REPO)


def keras_weights(path: Path) -> list[np.ndarray]:
    from edgeopt._tf import keras

    return keras().models.load_model(path, compile=False).get_weights()


def max_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert len(a) == len(b)
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def concat_residual_model():
    """concat(a, b) + c: a's channels are c's first 8, b's its last 8 (one pruning group whose convs hold different
    channels)."""
    from edgeopt._tf import keras

    k = keras()
    k.utils.set_random_seed(0)
    x = k.Input((8, 8, 3))
    a = k.layers.Conv2D(8, 3, padding="same", name="a")(x)
    b = k.layers.Conv2D(8, 3, padding="same", name="b")(x)
    c = k.layers.Conv2D(16, 3, padding="same", name="c")(x)
    y = k.layers.Add()([k.layers.Concatenate()([a, b]), c])
    return k.Model(x, k.layers.GlobalAveragePooling2D()(k.layers.Conv2D(4, 1, name="o")(y)))
