"""Measuring a converted model against its FP32 reference: fidelity, conversion parity, latency.

Fidelity runs both `.tflite` files on the held-back samples (never used for calibration) and compares outputs:
top-1 agreement for classifier outputs, max/mean absolute error and cosine similarity for every output.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .frontends.spec import TensorSpec


def is_classifier(spec: TensorSpec) -> bool:
    """A vector of class scores: [1, K], [1, K, 1, 1] or [1, 1, 1, K] with K >= 2."""
    shape = tuple(int(d) for d in spec.onnx_shape)
    k = int(np.prod(shape[1:])) if len(shape) > 1 else 0
    return k >= 2 and max(shape[1:]) == k


def compare_outputs(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray],
                    specs: Sequence[TensorSpec]) -> list[dict]:
    """Per output: errors of ``candidate`` against ``reference`` (both (N, ...) float arrays)."""
    rows = []
    for spec, ref, cand in zip(specs, reference, candidate):
        r = ref.reshape(len(ref), -1).astype(np.float64)
        c = cand.reshape(len(cand), -1).astype(np.float64)
        diff = np.abs(r - c)
        scale = float(np.max(np.abs(r))) or 1.0
        # cosine = <r, c> / (|r| |c|), per sample; an all-zero pair counts as identical, one all-zero side as 0
        nr, nc = np.linalg.norm(r, axis=1), np.linalg.norm(c, axis=1)
        norms = nr * nc
        cos = np.where(norms > 0, np.sum(r * c, axis=1) / np.where(norms > 0, norms, 1.0),
                       np.where((nr == 0) & (nc == 0), 1.0, 0.0))
        row = {
            "name": spec.name,
            "max_abs_error": float(diff.max()),
            "mean_abs_error": float(diff.mean()),
            "max_rel_error": float(diff.max() / scale),
            "cosine_mean": float(cos.mean()),
            "cosine_min": float(cos.min()),
        }
        if is_classifier(spec):
            row["top1_agreement"] = float(np.mean(np.argmax(r, axis=1) == np.argmax(c, axis=1)))
        rows.append(row)
    return rows


def run_tflite(path, inputs_keras: Sequence[np.ndarray], *, input_names: Sequence[str],
               output_names: Sequence[str], num_threads: int = 1) -> list[np.ndarray]:
    from .runtime import TFLiteModel, run_ordered

    return run_ordered(TFLiteModel(path, num_threads=num_threads), inputs_keras, input_names=input_names,
                       output_names=output_names)


def run_keras(model, inputs_keras: Sequence[np.ndarray], *, batch_size: int = 32) -> list[np.ndarray]:
    """The Keras model's outputs for (N, ...) Keras-layout inputs, one array per output.

    The model is called directly on each batch: ``model.predict`` would first trace a predict function, which
    costs more than the held-back samples take to run (0.2 s vs 0.06 s on the demo model).

    >>> run_keras(model, [np.zeros((40, 28, 28, 1), np.float32)])[0].shape   # doctest: +SKIP
    (40, 10)
    """
    parts = []
    for start in range(0, len(inputs_keras[0]), batch_size):
        batch = [np.asarray(a[start : start + batch_size]) for a in inputs_keras]
        outs = model(batch if len(batch) > 1 else batch[0], training=False)
        parts.append([np.asarray(o) for o in (outs if isinstance(outs, (list, tuple)) else [outs])])
    return [np.concatenate(column, axis=0) for column in zip(*parts)]


def interleaved_latency(models: Mapping[str, str], *, num_threads: int, warmup_runs: int, num_runs: int) -> dict:
    """Latency of several `.tflite` files measured in one interleaved run (device_bench.compare): rounds of 10
    runs per model in rotating order, so machine drift affects every model alike. XNNPACK, the default CPU
    delegate; at least ``num_runs`` timed runs per model."""
    from device_bench.compare import compare

    if len(models) == 1:  # nothing to interleave with: one plain benchmark
        import os

        from device_bench.runner import benchmark

        (label, path), = models.items()
        res = benchmark(path, num_threads=num_threads, warmup_runs=warmup_runs, num_runs=num_runs)
        return {"rounds": 1, "runs_per_round": res["latency_ms"]["count"], "num_threads": num_threads,
                "models": {label: {"path": path, "size_bytes": os.path.getsize(path),
                                   "latency_ms": res["latency_ms"]}}}
    runs_per_round = 10
    rounds = max(1, -(-num_runs // runs_per_round))  # ceil: never fewer runs than asked
    return compare(dict(models), rounds=rounds, runs_per_round=runs_per_round, num_threads=num_threads,
                   warmup_runs=warmup_runs)


def latency_summary(stats: Mapping, *, num_threads: int) -> dict:
    return {
        "median_ms": stats["median"],
        "mean_ms": stats["mean"],
        "p90_ms": stats["p90"],
        "std_ms": stats["std"],
        "runs": stats["count"],
        "threads": num_threads,
        "delegate": "XNNPACK",
    }
