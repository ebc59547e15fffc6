"""Activation ranges for INT8 chosen from their histograms: min-max, percentile or MSE-optimal clipping.

The converter calibrates a model in two steps, and edgeopt takes them apart: calibration records each activation
tensor's min and max into the float model (``_experimental_calibrate_only``), and quantization (``mlir_quantize``)
turns each recorded range into that tensor's int8 scale and zero point. Between the two, the recorded ranges are
replaced here, so the converter's own quantizer uses them; ops whose output range is fixed (softmax, logistic, tanh)
keep theirs, as the quantizer ignores a recorded range there.

A range of a long-tailed tensor spends most of its 256 steps on values that hardly occur. Clipping it trades the
error of clipped values for a finer step on the rest:

* ``minmax``: the calibrated range, as the converter has it;
* ``percentile``: the 0.01 % and 99.99 % points of the calibration values (zero stays inside);
* ``mse``: the range with the least expected squared error of int8 rounding plus clipping over the calibration
  histogram (rounding error ``step²/12`` inside, the distance to the bound outside).

Model inputs keep their calibrated range: an int8 input's scale is what the application quantizes its data with.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

BINS = 2048
PERCENTILE = 99.99
METHODS = ("minmax", "percentile", "mse")


def _model(data: bytes):
    from ai_edge_litert import schema_py_generated as schema

    return schema, schema.ModelT.InitFromPackedBuf(bytearray(data), 0)


def calibrated_ranges(calibrated: bytes) -> dict[int, tuple[float, float]]:
    """Tensor index (subgraph 0) → the calibrated (min, max) of every activation with one, model inputs left out."""
    _, model = _model(calibrated)
    graph = model.subgraphs[0]
    inputs = {int(i) for i in graph.inputs}
    out = {}
    for i, t in enumerate(graph.tensors):
        q = t.quantization
        if i in inputs or q is None or q.min is None or len(q.min) != 1 or q.max is None:
            continue
        lo, hi = float(q.min[0]), float(q.max[0])
        if np.isfinite(lo) and np.isfinite(hi) and hi > lo:
            out[i] = (lo, hi)
    return out


def histograms(calibrated: bytes, calib: Sequence[np.ndarray], ranges: dict[int, tuple[float, float]],
               *, input_names: Sequence[str] | None = None, bins: int = BINS) -> dict[int, np.ndarray]:
    """Histogram (``bins`` equal bins over the calibrated range) of every tensor in ``ranges`` over the samples
    ``calib`` (Keras-layout arrays, one per input, named ``input_names`` in the model's signature), from the
    calibrated float model run with every tensor kept; a tensor the interpreter holds no values for is left out
    (its range stays the calibrated one). Inputs are fed by signature name (the converter may order a signature's
    tensors differently from the Keras model); a model without a signature takes them in the subgraph's order."""
    from ai_edge_litert.interpreter import Interpreter

    from ..console import track

    import warnings

    with warnings.catch_warnings():  # LiteRT warns that keeping every tensor is meant for debugging: it is here
        warnings.filterwarnings("ignore", message=r".*experimental_preserve_all_tensors")
        interp = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    signatures = interp.get_signature_list()
    if signatures and input_names is not None:
        key = next(iter(signatures))
        details = interp.get_signature_runner(key).get_input_details()
        missing = [n for n in input_names if n not in details]
        if missing:
            raise ValueError(f"the calibrated model has no input {missing[0]!r} (its inputs: {', '.join(details)})")
        indices = [details[n]["index"] for n in input_names]
    else:
        _, model = _model(calibrated)
        indices = [int(i) for i in model.subgraphs[0].inputs]
    hist = {i: np.zeros(bins, np.int64) for i in ranges}
    n = len(calib[0])
    for s in track(range(n), f"measuring activation histograms on {n} samples", total=n):
        for index, a in zip(indices, calib):
            interp.set_tensor(index, np.asarray(a[s:s + 1], np.float32))
        interp.invoke()
        for i, (lo, hi) in ranges.items():
            if i not in hist:
                continue
            try:
                values = interp.get_tensor(i)
            except ValueError:  # a tensor the interpreter does not keep (e.g. an op's internal state): left as is
                del hist[i]
                continue
            # a value past the range by the rounding of another kernel (or clipped by the quantizer) counts at its edge
            h, _ = np.histogram(np.clip(values, lo, hi), bins=bins, range=(lo, hi))
            hist[i] += h
    return hist


def _expected_error(hist: np.ndarray, lo: float, hi: float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Expected squared int8 error per value for each candidate range [a, b] (arrays), over ``hist``: rounding
    error ``step²/12`` for the values inside, the squared distance to the bound for the clipped ones; from prefix
    sums of the histogram, so a candidate costs O(log bins)."""
    width = (hi - lo) / len(hist)
    centres = lo + (np.arange(len(hist)) + 0.5) * width
    p = hist / max(hist.sum(), 1)
    mass = np.concatenate([[0.0], np.cumsum(p)])
    first = np.concatenate([[0.0], np.cumsum(p * centres)])
    second = np.concatenate([[0.0], np.cumsum(p * centres ** 2)])
    ia = np.searchsorted(centres, a, side="left")  # bins below a: [0, ia)
    ib = np.searchsorted(centres, b, side="right")  # bins above b: [ib, n)
    below = a ** 2 * mass[ia] - 2 * a * first[ia] + second[ia]
    above = (second[-1] - second[ib]) - 2 * b * (first[-1] - first[ib]) + b ** 2 * (mass[-1] - mass[ib])
    inside = mass[ib] - mass[ia]
    return ((b - a) / 255.0) ** 2 / 12.0 * inside + below + above


def choose_range(hist: np.ndarray, lo: float, hi: float, method: str) -> tuple[float, float]:
    """The range of one tensor by ``method`` (module docstring) from its histogram over [lo, hi]."""
    if method == "minmax" or hist.sum() == 0:
        return lo, hi
    width = (hi - lo) / len(hist)
    if method == "percentile":
        cdf = np.cumsum(hist) / hist.sum()
        q = 1.0 - PERCENTILE / 100.0
        a = lo + np.searchsorted(cdf, q) * width
        b = lo + (np.searchsorted(cdf, 1.0 - q) + 1) * width
        return float(min(a, 0.0)) if lo < 0 else lo, float(max(b, 0.0)) if hi > 0 else hi
    if method != "mse":
        raise ValueError(f"unknown range method {method!r}; known: {', '.join(METHODS)}")
    fractions = np.linspace(0.02, 1.0, 246)
    lows = lo * fractions if lo < 0 else np.array([lo])
    highs = hi * fractions if hi > 0 else np.array([hi])
    a, b = np.meshgrid(lows, highs, indexing="ij")
    a, b = a.ravel(), b.ravel()
    err = _expected_error(hist, lo, hi, a, b)
    best = int(np.argmin(err))
    return float(a[best]), float(b[best])


def with_ranges(calibrated: bytes, ranges: dict[int, tuple[float, float]]) -> bytes:
    """``calibrated`` with the recorded (min, max) of the tensors in ``ranges`` replaced."""
    from .compact import _sharing_builder

    _, model = _model(calibrated)
    graph = model.subgraphs[0]
    for i, (lo, hi) in ranges.items():
        q = graph.tensors[i].quantization
        q.min, q.max = [float(lo)], [float(hi)]
    builder = _sharing_builder()(len(calibrated))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def chosen(hist: dict[int, np.ndarray], ranges: dict[int, tuple[float, float]], method: str) -> dict:
    """Tensor index → the range ``method`` chooses."""
    return {i: choose_range(hist[i], *ranges[i], method) for i in ranges if i in hist}
