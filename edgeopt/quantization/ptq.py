"""Full-integer post-training quantization.

The converter runs the float model on each calibration sample and records the range of every activation; those
ranges fix the int8 scales. Weights get one scale per output channel (per-channel) unless asked otherwise.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..console import track
from ..converter import IOType, to_tflite
from ..errors import DataError


def quantize_int8(
    model,
    calib: Sequence[np.ndarray],
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    io_type: IOType = "int8",
    per_channel: bool = True,
) -> bytes:
    """INT8 `.tflite` bytes; ``calib`` holds one Keras-layout float array (N, ...) per model input.

    >>> data = quantize_int8(model, [x_nhwc], input_names=["x"], output_names=["y"])  # doctest: +SKIP
    """
    n = len(calib[0]) if calib else 0
    if n == 0:
        raise DataError("no calibration samples left after holding back samples for fidelity",
                        hint="give more samples or lower --holdout")

    def representative():
        for i in track(range(n), "calibrating", total=n):
            yield [np.asarray(a[i : i + 1], np.float32) for a in calib]

    return to_tflite(model, input_names=input_names, output_names=output_names, precision="int8",
                     representative=representative, io_type=io_type, per_channel=per_channel)
