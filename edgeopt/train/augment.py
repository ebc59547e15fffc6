"""Augmentations for training batches, in numpy, seeded per sample and epoch.

Each sample's random numbers come from ``(seed, epoch, sample index)``, so a resumed run augments every sample of
every remaining epoch exactly as an uninterrupted run would, whatever the batch order or the number of workers.

>>> import numpy as np
>>> x = np.arange(2 * 1 * 4 * 4, dtype=np.float32).reshape(2, 1, 4, 4)
>>> y = augment_batch(x, np.array([0, 1]), epoch=0, seed=0, ops=("flip",), layout="NCHW", padding=0)
>>> y.shape
(2, 1, 4, 4)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def augment_batch(x: np.ndarray, indices: Sequence[int], *, epoch: int, seed: int, ops: Sequence[str],
                  layout: str, padding: int) -> np.ndarray:
    """``x`` (N, C, H, W) or (N, H, W, C) with each sample flipped left-right (p = 0.5) and/or cropped back to its
    size at a random offset after ``padding`` zero pixels on each side (values 0 of the model input)."""
    out = np.array(x, copy=True)
    h_axis, w_axis = (1, 2) if layout == "NCHW" else (0, 1)  # axes of one sample
    for i, index in enumerate(indices):
        rng = sample_rng(seed, epoch, index)
        sample = out[i]
        if "crop" in ops and padding > 0:
            dy, dx = rng.integers(0, 2 * padding + 1, size=2)
            pad = [(0, 0)] * sample.ndim
            pad[h_axis] = pad[w_axis] = (padding, padding)
            padded = np.pad(sample, pad)
            h, w = sample.shape[h_axis], sample.shape[w_axis]
            window = [slice(None)] * sample.ndim
            window[h_axis], window[w_axis] = slice(dy, dy + h), slice(dx, dx + w)
            sample = padded[tuple(window)]
        if "flip" in ops and rng.random() < 0.5:
            sample = np.flip(sample, axis=w_axis)
        out[i] = sample
    return out
