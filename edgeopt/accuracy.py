"""Accuracy against labels: top-1 (and top-5 above 10 classes) with a 95 % Wilson score interval.

The classifier output is the model's single output, or else its first 2-D ``[N, classes]`` output. The original
model runs batched (onnxruntime for ONNX, the Keras model for Keras sources); each `.tflite` runs one sample at a
time through :mod:`edgeopt.runtime`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .frontends.spec import TensorSpec

Z95 = 1.959963984540054  # the 97.5 % quantile of the standard normal
BATCH = 256  # samples per onnxruntime / Keras call


def wilson(correct: int, n: int, *, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``correct / n`` (95 % by default); (0, 1) when ``n`` is 0.

    >>> [round(v, 4) for v in wilson(98, 100)]
    [0.93, 0.9945]
    """
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo = 0.0 if correct == 0 else max(0.0, centre - half)  # exact at the ends, where rounding would show
    hi = 1.0 if correct == n else min(1.0, centre + half)
    return lo, hi


def classifier_output(outputs: Sequence[TensorSpec]) -> tuple[int, str] | None:
    """(index, how it was chosen) of the output that holds the class scores, or None when none does.

    >>> classifier_output([TensorSpec("logits", (1, 10), (1, 10), "float32", None)])
    (0, 'the single output')
    """
    from .evaluate import is_classifier

    if len(outputs) == 1:
        return (0, "the single output") if is_classifier(outputs[0]) or _dynamic(outputs[0]) else None
    for i, spec in enumerate(outputs):
        if len(spec.onnx_shape) == 2 and (int(spec.onnx_shape[1]) >= 2 or int(spec.onnx_shape[1]) <= 0):
            return i, "the first 2-D [N, classes] output"
    return None


def _dynamic(spec: TensorSpec) -> bool:
    return len(spec.onnx_shape) == 2 and int(spec.onnx_shape[1]) <= 0


def topk(scores: np.ndarray, labels: np.ndarray, *, k: int) -> dict:
    """Top-``k`` accuracy of ``scores`` [N, classes] against ``labels`` [N]: correct, samples, accuracy, ci95."""
    scores = scores.reshape(len(scores), -1)
    if k == 1:
        hit = np.argmax(scores, axis=1) == labels
    else:
        best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        hit = np.any(best == labels[:, None], axis=1)
    correct, n = int(hit.sum()), int(len(labels))
    lo, hi = wilson(correct, n)
    return {"correct": correct, "samples": n, "accuracy": correct / n if n else 0.0, "ci95": [lo, hi]}


def scores_summary(scores: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1, and top-5 when there are more than 10 classes."""
    width = int(np.prod(scores.shape[1:]))
    out = {"top1": topk(scores, labels, k=1)}
    if width > 10:
        out["top5"] = topk(scores, labels, k=5)
    return out


def original_scores(source, source_format: str, model, x_onnx: np.ndarray, spec_in: TensorSpec,
                    index: int, *, batch_size: int = BATCH) -> np.ndarray:
    """The original model's classifier output on ``x_onnx`` (original layout): onnxruntime on the ONNX file in
    batches (one sample at a time for a fixed batch of 1), or the Keras model itself."""
    parts = []
    if source_format == "onnx":
        from .frontends.parity import reference_session

        sess = reference_session(source)
        name = sess.get_outputs()[index].name
        x = np.asarray(x_onnx, np.float32)
        try:
            sess.run([name], {spec_in.name: x[:2]})
            step = batch_size
        except Exception:  # a fixed batch of 1: one sample per run
            step = 1
        for start in range(0, len(x), step):
            out = sess.run([name], {spec_in.name: x[start:start + step]})[0]
            parts.append(np.asarray(out, np.float32).reshape(len(x[start:start + step]), -1))
    else:
        from .evaluate import run_keras

        outs = run_keras(model, [spec_in.to_keras(x_onnx)], batch_size=batch_size)
        parts.append(outs[index].reshape(len(x_onnx), -1))
    return np.concatenate(parts, axis=0)


def tflite_scores(path, x_keras: np.ndarray, *, input_name: str, output_name: str) -> np.ndarray:
    """A `.tflite` file's classifier output, one sample at a time (inputs quantized by the runtime)."""
    from .evaluate import run_tflite

    (out,) = run_tflite(path, [x_keras], input_names=[input_name], output_names=[output_name])
    return out.reshape(len(x_keras), -1)
