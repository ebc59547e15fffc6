"""Full-integer post-training quantization.

The converter runs the float model on each calibration sample and records the range of every activation; those
ranges fix the int8 scales. Weights get one scale per output channel (per-channel) unless asked otherwise.

The converter reads the samples while its own native output is muted (``edgeopt._quiet``); the progress bar is
drawn on the real terminal all the same.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from ..console import track
from ..converter import IOType, to_tflite
from ..errors import DataError
from ..profiling import step


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

    return to_tflite(model, input_names=input_names, output_names=output_names, precision="int8",
                     representative=lambda: calibration_samples(calib, input_names), io_type=io_type,
                     per_channel=per_channel)


def calibration_samples(calib: Sequence[np.ndarray], input_names: Sequence[str] | None = None
                        ) -> Iterator[list[np.ndarray] | dict[str, np.ndarray]]:
    """The converter's representative dataset: batch-1 float32 samples behind a progress bar; the time from the
    first sample to the last is the profile's ``calibration`` step. A model with several inputs gets each sample
    as a dict by signature name (``input_names``, in the order of ``calib``): the converter orders a signature's
    inputs by name, and a list would be fed in that order, not in the Keras model's.

    >>> [x[0].shape for x in calibration_samples([np.zeros((2, 4, 4, 3))])]
    [(1, 4, 4, 3), (1, 4, 4, 3)]
    >>> sorted(next(calibration_samples([np.zeros((1, 2)), np.ones((1, 3))], ["z", "a"])).items())[0][1].shape
    (1, 3)
    """
    n = len(calib[0])
    named = input_names is not None and len(calib) > 1
    if named and len(input_names) != len(calib):
        raise ValueError(f"{len(calib)} calibration arrays for {len(input_names)} input names")
    with step("calibration"):
        for i in track(range(n), f"calibrating on {n} samples", total=n):
            sample = [np.asarray(a[i : i + 1], np.float32) for a in calib]
            yield dict(zip(input_names, sample)) if named else sample


def interpreter_order(interpreter, input_names: Sequence[str]) -> list[int]:
    """For each of ``interpreter``'s inputs in its own order (what a list of inputs is fed to), the position in
    ``input_names`` (the Keras model's order) of the array it takes; the identity without a signature."""
    signatures = interpreter.get_signature_list()
    if len(input_names) < 2 or not signatures:
        return list(range(len(input_names)))
    details = interpreter.get_signature_runner(next(iter(signatures))).get_input_details()
    if sorted(details) != sorted(input_names):
        raise ValueError(f"the model's inputs are {', '.join(details)}, not {', '.join(input_names)}")
    by_index = {d["index"]: name for name, d in details.items()}
    return [list(input_names).index(by_index[d["index"]]) for d in interpreter.get_input_details()]
