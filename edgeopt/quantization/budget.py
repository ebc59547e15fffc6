"""The accuracy budget of INT8: keep the most damaging ops in float, one more at a time, until the model meets
``--min-agreement`` (top-1 agreement with FP32 on the held-back samples; the mean output cosine for a model without
a classifier output) or ``--max-accuracy-drop`` (points of top-1 accuracy against the labels, below the float
model's).

The order is the sensitivity analysis' (:mod:`.sensitivity`: the gain in output cosine when the op alone stays
float). Every candidate is requantized from one calibration, so a step costs a requantization and one pass over the
measuring samples. Those samples are the ones the report measures on too (the held-back split, or the labeled
evaluation data), so the report's figures come from the samples the choice was made on (against the Keras model
here, against the FP32 .tflite there: the two agree to conversion parity); the record says which samples.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..console import track


@dataclass(frozen=True)
class Budget:
    """What to meet: ``metric`` (agreement, cosine or accuracy_drop) against ``target``."""

    metric: str
    target: float

    def met(self, value: float) -> bool:
        return value <= self.target if self.metric == "accuracy_drop" else value >= self.target

    def describe(self, value: float) -> str:
        if self.metric == "accuracy_drop":
            return f"{value:.2f} points of top-1 accuracy below float"
        return f"top-1 agreement {100 * value:.2f} %" if self.metric == "agreement" else f"cosine {value:.5f}"


def choose_float_ops(calibrated: bytes, ranked: Sequence[dict], *, budget: Budget, measure: Callable[[Path], float],
                     per_channel: bool, io_type: str, workdir: Path) -> tuple[bytes, dict]:
    """The INT8 model with the fewest of ``ranked`` (most damaging first) kept in float that meets ``budget``, and
    the record of every step; with every op in float and the budget still missed, the best model and
    ``met: False``."""
    from .sensitivity import requantize

    path = workdir / "budget_candidate.tflite"
    workdir.mkdir(parents=True, exist_ok=True)

    def attempt(ops: list[str]) -> tuple[bytes, float]:
        data = requantize(calibrated, per_channel=per_channel, float_ops=ops, io_type=io_type)
        path.write_bytes(data)
        return data, float(measure(path))

    data, value = attempt([])
    steps = [{"float_ops": 0, "value": value}]
    chosen: list[dict] = []
    best = (value, data, 0)
    if not budget.met(value):
        for row in track(list(ranked), f"keeping ops in float until {budget.metric} meets {budget.target:g}",
                         total=len(ranked)):
            chosen.append(row)
            data, value = attempt([r["tensor"] for r in chosen])
            steps.append({"float_ops": len(chosen), "value": value, "op": row["op"], "layers": row["layers"]})
            better = value < best[0] if budget.metric == "accuracy_drop" else value > best[0]
            if better:
                best = (value, data, len(chosen))
            if budget.met(value):
                break
    path.unlink(missing_ok=True)
    met = budget.met(value)
    if not met:  # the best model seen, with the ops it kept in float
        value, data, k = best
        chosen = chosen[:k]
    record = {"metric": budget.metric, "target": budget.target, "met": met, "value": value,
              "all_int8": steps[0]["value"], "ops_total": len(ranked),
              "float_ops": [{"op": r["op"], "layers": r["layers"], "onnx": r["onnx"], "tensor": r["tensor"]}
                            for r in chosen],
              "float_fraction": len(chosen) / max(len(ranked), 1), "steps": steps}
    return data, record


def agreement_measure(held: Sequence[np.ndarray], reference: Sequence[np.ndarray], *, input_names, output_names,
                      output_specs) -> tuple[str, Callable[[Path], float]]:
    """(metric, measure): top-1 agreement with ``reference`` for a classifier, else the mean output cosine."""
    from ..evaluate import is_classifier
    from .sensitivity import fidelity

    io = dict(input_names=input_names, output_names=output_names, output_specs=output_specs)
    if any(is_classifier(spec) for spec in output_specs):
        return "agreement", lambda path: fidelity(path, held, reference, **io)["top1_agreement"]
    return "cosine", lambda path: fidelity(path, held, reference, **io)["cosine"]


def accuracy_drop_measure(x_keras: Sequence[np.ndarray], labels: np.ndarray, float_top1: float, *, index: int,
                          input_names, output_names) -> Callable[[Path], float]:
    """Points of top-1 accuracy on ``labels`` below ``float_top1`` (the float model's)."""
    from ..evaluate import run_tflite

    def drop(path: Path) -> float:
        out = run_tflite(path, x_keras, input_names=input_names, output_names=output_names)[index]
        top1 = float(np.mean(np.argmax(out.reshape(len(out), -1), axis=1) == labels))
        return 100.0 * (float_top1 - top1)

    return drop
