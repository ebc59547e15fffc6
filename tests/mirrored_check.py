"""Run by tests/test_train_distributed.py in a fresh process: two logical CPU devices must be configured before
TensorFlow starts. Trains the same model 20 steps with MirroredStrategy (2 replicas) and with one replica on the
same global batches, and prints the largest weight difference as JSON."""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

from edgeopt._tf import keras, tf  # noqa: E402

cpu = tf().config.list_physical_devices("CPU")[0]
tf().config.set_logical_device_configuration(cpu, [tf().config.LogicalDeviceConfiguration()] * 2)

from edgeopt.params import TrainParams  # noqa: E402
from edgeopt.train.data import from_arrays  # noqa: E402
from edgeopt.train.trainer import Objective, train  # noqa: E402


def model(seed: int):
    k = keras()
    k.utils.set_random_seed(seed)
    x = k.Input((8, 8, 3))
    y = k.layers.Conv2D(8, 3, padding="same")(x)
    y = k.layers.BatchNormalization()(y)  # its batch statistics must be those of the global batch
    y = k.layers.ReLU()(y)
    y = k.layers.Conv2D(8, 3, strides=2, padding="same")(y)
    y = k.layers.BatchNormalization()(y)
    y = k.layers.ReLU()(y)
    y = k.layers.GlobalAveragePooling2D()(y)
    return k.Model(x, k.layers.Dense(4)(y))


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (320, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 4, 320)
    net = model(0)
    params = dict(epochs=1, batch_size=16, lr=0.05, optimizer="sgd", momentum=0.9, schedule="constant")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("mirrored", "default"):
            result = train(net, from_arrays(x, y), TrainParams(**params, strategy=name),
                           objective=Objective((("ce", 1.0),), 0, 4), checkpoint_dir=Path(tmp) / name)
            out[name] = result
    a, b = out["mirrored"], out["default"]
    from edgeopt.errors import RecipeError

    try:  # a global batch that two replicas cannot share evenly
        train(net, from_arrays(x, y), TrainParams(**{**params, "batch_size": 15}, strategy="mirrored"),
              objective=Objective((("ce", 1.0),), 0, 4), checkpoint_dir=Path(tempfile.mkdtemp()))
        odd_refused = ""
    except RecipeError as exc:
        odd_refused = exc.message
    diffs = [float(np.abs(u - v).max()) for u, v in zip(a.model.get_weights(), b.model.get_weights())]
    moved = max(float(np.abs(u - v).max()) for u, v in zip(b.model.get_weights(), net.get_weights()))
    json.dump({"replicas": a.summary["strategy"]["replicas"], "steps": a.summary["steps_per_epoch"],
               "max_weight_difference": max(diffs), "odd_batch_error": odd_refused, "max_weight_change": moved,
               "weights": len(diffs), "per_weight": dict(zip([w.name for w in net.weights], diffs))}, sys.stdout)


if __name__ == "__main__":
    main()
