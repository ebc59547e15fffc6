"""PTQ repair: the repairs of :mod:`.rounding` and :mod:`.ranges`, each tried on the held-back samples and kept
only where it measurably helps.

``--ptq-repair auto`` (the default of ``--int8``) starts from the converter's plain INT8 model and tries, in turn:

1. cross-layer equalization of consecutive convs;
2. error-compensating rounding of the weights onto the converter's grid;
3. bias correction of the mean shift the INT8 weights still cause (against the weights before step 2);
4. activation ranges: min-max (the converter's), percentile, MSE-optimal clipping, the best of the three.

Each candidate is converted to INT8 the way the final model is (same calibration samples, same converter) and its
outputs on the held-back samples are compared with the FP32 model's: a step is kept when the mean output cosine
rises by more than :data:`MIN_GAIN` and, for a classifier, the top-1 agreement does not fall. The record lists
every step with the fidelity before and after, so the report shows what each one did. ``--ptq-repair none`` is
the converter's PTQ as it is.

The held-back samples choose the repairs and measure the result, so the fidelity reported for a repaired model is
measured on the samples it was selected on; with a few dozen samples and at most four choices the selection can
gain little from chance, and a labeled accuracy (``--data`` with labels) is measured on other samples.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from ..errors import ModelFileError

MIN_GAIN = 1e-4  # output cosine a repair must add to be kept
MODES = ("auto", "none")


def calibrate(model, calib: Sequence[np.ndarray], *, input_names, output_names, per_channel: bool = True) -> bytes:
    """The converter's calibrated float model of ``model`` (every activation's min/max recorded), for
    :func:`.sensitivity.requantize`."""
    from .._quiet import quiet_native_stderr
    from ..converter import calibration_warnings
    from .sensitivity import calibrating_converter

    conv = calibrating_converter(model, calib, input_names=input_names, output_names=output_names,
                                 per_channel=per_channel)
    conv._experimental_calibrate_only = True
    with quiet_native_stderr(), calibration_warnings():
        return conv.convert()


def _better(after: dict, before: dict) -> bool:
    if after["cosine"] <= before["cosine"] + MIN_GAIN:
        return False
    return before["top1_agreement"] is None or after["top1_agreement"] >= before["top1_agreement"]


def _short(exc: Exception) -> str:
    text = str(exc).split(": cannot be loaded as a .tflite model: ")[-1]
    return text if len(text) <= 160 else text[:157] + "..."


def _figures(f: dict) -> dict:
    return {"cosine": f["cosine"], "top1_agreement": f["top1_agreement"]}


class Repaired(NamedTuple):
    data: bytes  # the repaired INT8 model
    record: dict  # every step with its fidelity before and after (the report's "PTQ repair" section)
    float_model: object  # the Keras model the kept weight repairs made
    calibrated: bytes  # its calibrated float model, with the chosen activation ranges (for requantize)


def repair(model, calib: Sequence[np.ndarray], held: Sequence[np.ndarray], *, input_names, output_names,
           output_specs, workdir: Path, io_type: str = "int8", per_channel: bool = True,
           ranges: bool = True) -> Repaired:
    """The repaired INT8 model of ``model`` (:class:`Repaired`: the bytes, the record, the repaired Keras model and
    its calibrated model with the chosen ranges, from which :func:`.sensitivity.requantize` can keep ops in float).

    ``calib``/``held``: Keras-layout arrays, one per input; ``ranges=False`` leaves the activation ranges to the
    converter (the bytes are then the plain conversion of the repaired Keras model)."""
    from ..console import status
    from . import ranges as R
    from . import rounding
    from ..evaluate import run_keras
    from .sensitivity import Judge, requantize

    judge = Judge(held, run_keras(model, held), Path(workdir) / "repair_candidate.tflite", input_names=input_names,
                  output_names=output_names, output_specs=output_specs)
    io = dict(input_names=input_names, output_names=output_names, per_channel=per_channel)

    def convert(m) -> tuple[bytes, bytes]:
        calibrated = calibrate(m, calib, **io)
        return calibrated, requantize(calibrated, per_channel=per_channel, io_type=io_type)

    with status("PTQ repair: the converter's INT8 model"):
        calibrated, data = convert(model)
        plain = judge(data)
    record = {"samples": int(len(held[0])), "plain": _figures(plain), "steps": []}
    current, fid, float_model = (calibrated, data), plain, model

    def attempt(name: str, make) -> None:
        nonlocal current, fid, float_model
        with status(f"PTQ repair: trying {name.replace('_', ' ')}"):
            candidate, details = make(float_model)
            if not details.get("channels_scaled", details.get("layers", 0)):  # nothing changed: no conversion
                record["steps"].append({"step": name, "applicable": False, "kept": False, **details})
                return
            try:
                conv = convert(candidate)
                after = judge(conv[1])
            except ModelFileError as exc:  # e.g. a layer whose rounded weights are all 0 has a range of 0
                record["steps"].append({"step": name, "applicable": False, "kept": False, **details,
                                        "why": f"its INT8 model does not run in LiteRT ({_short(exc)})"})
                return
        keep = _better(after, fid)
        record["steps"].append({"step": name, "applicable": True, "kept": keep, "before": _figures(fid),
                                "after": _figures(after), **details})
        if keep:
            current, fid, float_model = conv, after, candidate

    attempt("equalization", lambda m: rounding.equalize(m, calib))
    before_rounding = float_model
    attempt("rounding", lambda m: rounding.compensated_rounding(m, calib, per_channel=per_channel))
    attempt("bias_correction", lambda m: rounding.bias_correction(m, calib, reference=before_rounding,
                                                                  per_channel=per_channel))

    if ranges:
        with status("PTQ repair: choosing activation ranges"):
            calibrated = current[0]
            found = R.calibrated_ranges(calibrated)
            hist = R.histograms(calibrated, calib, found, input_names=input_names) if found else {}
            tried = {"minmax": fid}
            best, best_data, best_calibrated = "minmax", current[1], calibrated
            for method in R.METHODS[1:]:
                if not found:
                    break
                candidate = R.with_ranges(calibrated, R.chosen(hist, found, method))
                data = requantize(candidate, per_channel=per_channel, io_type=io_type)
                try:
                    tried[method] = judge(data)
                except ModelFileError:  # a range LiteRT refuses: this method is out
                    continue
                if _better(tried[method], tried[best]):
                    best, best_data, best_calibrated = method, data, candidate
        record["steps"].append({"step": "ranges", "applicable": bool(found), "kept": best != "minmax",
                                "before": _figures(fid), "after": _figures(tried[best]), "chosen": best,
                                "tensors": len(found), "tried": {k: _figures(v) for k, v in tried.items()}})
        current, fid = (best_calibrated, best_data), tried[best]
    record["final"] = _figures(fid)
    record["kept"] = [s["step"] if s["step"] != "ranges" else f"ranges ({s['chosen']})"
                      for s in record["steps"] if s["kept"]]
    return Repaired(current[1], record, float_model, current[0])
