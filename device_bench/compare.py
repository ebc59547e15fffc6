"""Compare several .tflite models on this host with interleaved runs, and plot latency against accuracy and size.

Runs are interleaved round-robin: every round runs a batch of each model, so a slow drift of the machine (thermal
throttling, a background job) lands on all models alike instead of on whichever ran last. The starting model
rotates each round (round r starts at model r mod n), so no model always runs right after another particular one.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .runner import BenchError, Session, latency_stats


def compare(models, /, *, rounds=5, runs_per_round=10, num_threads=1, warmup_runs=1, use_xnnpack=True, seed=0):
    """Interleave ``rounds`` batches of ``runs_per_round`` invokes per model; return per-model stats and the order.

    >>> result = compare({"fp32": "m.tflite", "int8": "m_int8.tflite"}, rounds=3)   # doctest: +SKIP
    >>> result["models"]["int8"]["latency_ms"]["median"]                         # doctest: +SKIP
    """
    if not isinstance(models, Mapping) or len(models) < 2:
        raise BenchError("compare needs at least two models as {label: path}")
    if rounds < 1 or runs_per_round < 1:
        raise BenchError("rounds and runs_per_round must be >= 1")
    sessions = {label: Session(path, num_threads=num_threads, use_xnnpack=use_xnnpack, seed=seed)
                for label, path in models.items()}
    for session in sessions.values():
        session.run(1 + warmup_runs)
    labels, samples, per_round, order = list(sessions), {k: [] for k in sessions}, {k: [] for k in sessions}, []
    origin = time.perf_counter()
    for round_index in range(rounds):
        shift = round_index % len(labels)
        for label in labels[shift:] + labels[:shift]:
            start = time.perf_counter() - origin
            times = sessions[label].run(runs_per_round)
            order.append({"round": round_index, "label": label, "start_s": start,
                          "end_s": time.perf_counter() - origin})
            samples[label].extend(times)
            per_round[label].append(float(np.median(times)))
    return {
        "rounds": rounds, "runs_per_round": runs_per_round, "num_threads": num_threads, "order": order,
        "models": {label: {"path": sessions[label].model_path,
                           "size_bytes": os.path.getsize(sessions[label].model_path),
                           "latency_ms": latency_stats(samples[label]),
                           "round_medians_ms": per_round[label], "init_ms": sessions[label].init_ms}
                   for label in labels},
    }


def plot_comparison(results, /, *, accuracy=None, out_png, accuracy_label="accuracy"):
    """Write a PNG: median latency vs accuracy (point area ∝ file size) when accuracies are given, and median
    latency vs file size. Returns the PNG's path.

    >>> plot_comparison(compare(models), accuracy={"fp32": 0.91, "int8": 0.90}, out_png="cmp.png")  # doctest: +SKIP
    """
    try:
        # The object-oriented API with the Agg canvas: no pyplot, no GUI backend, no global figure state.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise BenchError("drawing the plot needs matplotlib", hint="pip install matplotlib") from exc

    models = results["models"]
    labels = list(models)
    latency = [models[k]["latency_ms"]["median"] for k in labels]
    size_mb = [models[k]["size_bytes"] / 1e6 for k in labels]
    panels = 2 if accuracy else 1
    fig = Figure(figsize=(5.5 * panels, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)
    if accuracy:
        missing = [k for k in labels if k not in accuracy]
        if missing:
            raise BenchError(f"no accuracy given for {', '.join(missing)}")
        ax = axes[0][0]
        # Area in points² scales with size: the largest model gets 600, the others proportionally (min 30).
        biggest = max(size_mb)
        ax.scatter(latency, [accuracy[k] for k in labels], s=[max(30.0, 600.0 * s / biggest) for s in size_mb],
                   alpha=0.6)
        for k, x in zip(labels, latency):
            ax.annotate(k, (x, accuracy[k]), textcoords="offset points", xytext=(6, 6))
        ax.set(xlabel="median latency (ms)", ylabel=accuracy_label, title=f"latency vs {accuracy_label} (area ∝ size)")
    ax = axes[0][panels - 1]
    ax.scatter(size_mb, latency)
    for k, x, y in zip(labels, size_mb, latency):
        ax.annotate(k, (x, y), textcoords="offset points", xytext=(6, 6))
    ax.set(xlabel="file size (MB)", ylabel="median latency (ms)", title="latency vs size")
    fig.tight_layout()
    out = Path(out_png)
    tmp = out.with_name(out.name + ".tmp.png")
    try:
        fig.savefig(tmp, dpi=110, format="png")
        os.replace(tmp, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise BenchError(f"cannot write {out}: {exc.strerror or exc}") from exc
    return out
