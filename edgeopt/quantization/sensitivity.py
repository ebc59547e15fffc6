"""Per-layer sensitivity of INT8 post-training quantization: which layers cost the fidelity, and how much.

Two figures per quantized op, measured on held-back samples (never the calibration ones):

* **local** (LiteRT's quantization debugger): the op's INT8 output against the float op run on the same
  dequantized inputs, as RMSE in units of the output's quantization step (1/sqrt(12) = 0.29 is the rounding floor
  of a well-placed range) and relative to the RMS of the float output;
* **end to end**: the model's outputs against FP32 (mean cosine, and top-1 agreement for a classifier) with every
  op in INT8, and with only this op kept in float. The gain of keeping it in float is the damage it does; the table
  is sorted by it.

The model is calibrated once; each "this op in float" model is requantized from the calibrated model with that op
denylisted (``mlir_quantize``), so no op is recalibrated and each variant costs a fraction of a conversion.

>>> result = analyse(model, [calib], [held], input_names=["x"], output_names=["y"], output_specs=specs,
...                  workdir=Path("/tmp/w"))                                                  # doctest: +SKIP
>>> result["layers"][0]["layers"], result["layers"][0]["gain_cosine"]                       # doctest: +SKIP
(['conv1'], 0.041)
"""
from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from .._tf import tf
from ..console import track
from ..errors import DataError

ROUNDING_FLOOR = 1 / np.sqrt(12)  # RMSE of rounding to a grid, in grid steps


def _relative_rmse(float_values, quant_values, scale, zero_point) -> float:
    """RMS of (dequantized INT8 - float) over the RMS of the float output."""
    with np.errstate(invalid="ignore", over="ignore"):  # a non-finite float value gives NaN, skipped by nanmean
        f = np.asarray(float_values, np.float64)
        q = (np.asarray(quant_values, np.float64) - zero_point) * scale
        return float(np.sqrt(np.mean((q - f) ** 2)) / (np.sqrt(np.mean(f ** 2)) + 1e-12))


def _finite(value) -> float | None:
    """A CSV figure of the debugger as a float, None when it is not finite (no sample gave a usable value)."""
    x = float(value)
    return x if np.isfinite(x) else None


def calibrating_converter(model, calib: Sequence[np.ndarray], *, input_names: Sequence[str],
                          output_names: Sequence[str], per_channel: bool = True):
    """The INT8 converter of ``model`` (float I/O) with ``calib`` as its representative samples."""
    from ..converter import _configure, make_converter
    from .ptq import calibration_samples

    conv, _ = make_converter(model, input_names=input_names, output_names=output_names)
    _configure(conv, precision="int8", representative=lambda: calibration_samples(calib, input_names),
               io_type="float32", per_channel=per_channel)
    return conv


def debugger(model, calib: Sequence[np.ndarray], held: Sequence[np.ndarray], *, input_names: Sequence[str],
             output_names: Sequence[str], per_channel: bool = True):
    """A LiteRT QuantizationDebugger of ``model`` calibrated on ``calib`` (Keras-layout arrays, one per input),
    its layer statistics measured on ``held``."""
    from .._quiet import quiet_native_stderr
    from .ptq import interpreter_order

    T = tf()
    conv = calibrating_converter(model, calib, input_names=input_names, output_names=output_names,
                                 per_channel=per_channel)
    n = len(held[0])
    options = T.lite.experimental.QuantizationDebugOptions(
        layer_direct_compare_metrics={"relative_rmse": _relative_rmse})
    with quiet_native_stderr(), warnings.catch_warnings():
        # the debugger runs TF's own interpreter, which warns that LiteRT's replaces it
        warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated")
        order = list(range(len(held)))  # the debugger feeds a list in its interpreter's input order
        dbg = T.lite.experimental.QuantizationDebugger(
            converter=conv, debug_options=options,
            debug_dataset=lambda: ([np.asarray(held[j][i:i + 1], np.float32) for j in order] for i in range(n)))
        order[:] = interpreter_order(dbg._quant_interpreter, list(input_names))
        dbg.run()
    return dbg


def requantize(calibrated: bytes, *, per_channel: bool = True, float_ops: Sequence[str] = (),
               io_type: str = "float32") -> bytes:
    """The INT8 model from a calibrated model, with the ops named in ``float_ops`` (their tensor names, as the
    debugger reports them) left in float; inputs and outputs of ``io_type`` (float32, int8 or uint8)."""
    from tensorflow.lite.python import convert

    from .._quiet import quiet_native_stderr

    T = tf()
    io = {"float32": T.float32, "int8": T.int8, "uint8": T.uint8}[io_type]
    with quiet_native_stderr():
        # as the converter does it (lite.py): the data types set the inputs and outputs (fully_quantize would
        # force them to int8)
        return convert.mlir_quantize(calibrated, disable_per_channel=not per_channel, input_data_type=io,
                                     output_data_type=io, enable_numeric_verify=False,
                                     denylisted_nodes=list(float_ops) or None)


def layer_names(tensor: str) -> list[str]:
    """The Keras layers of a (possibly fused) TFLite tensor name, the computing layer first.

    >>> layer_names("net/conv1_relu/Relu;net/conv1/BiasAdd;net/conv1/Conv2D;net/conv1/BiasAdd/ReadVariableOp")
    ['conv1', 'conv1_relu']
    """
    out: list[str] = []
    for part in reversed(tensor.split(";")):
        segs = part.split("/")
        name = segs[1] if len(segs) >= 3 else segs[0]
        if name not in out:
            out.append(name)
    return out


class Judge:
    """:func:`fidelity` of candidate INT8 models (bytes) against ``reference`` (the FP32 outputs on ``held``), each
    written to ``path`` to run and removed after."""

    def __init__(self, held, reference, path: Path, *, input_names, output_names, output_specs):
        self.held, self.reference, self.path = held, reference, Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.io = dict(input_names=input_names, output_names=output_names, output_specs=output_specs)

    def __call__(self, data: bytes) -> dict:
        self.path.write_bytes(data)
        try:
            return fidelity(self.path, self.held, self.reference, **self.io)
        finally:
            self.path.unlink(missing_ok=True)


def fidelity(path: Path, held, reference, *, input_names, output_names, output_specs) -> dict:
    """The .tflite ``path`` on ``held`` against ``reference`` (FP32 outputs): mean output cosine, and the top-1
    agreement of the first classifier output (None without one)."""
    from ..evaluate import compare_outputs, run_tflite

    outs = run_tflite(path, held, input_names=input_names, output_names=output_names)
    rows = compare_outputs(reference, outs, output_specs)
    agree = [r["top1_agreement"] for r in rows if "top1_agreement" in r]
    return {"cosine": float(np.mean([r["cosine_mean"] for r in rows])),
            "top1_agreement": float(agree[0]) if agree else None}


def analyse(model, calib: Sequence[np.ndarray], held: Sequence[np.ndarray], *, input_names: Sequence[str],
            output_names: Sequence[str], output_specs, workdir: Path, per_channel: bool = True,
            end_to_end: bool = True) -> dict:
    """Per-op INT8 error of ``model``: local figures for every quantized op, and (``end_to_end``) the model's
    fidelity with that op alone kept in float; rows sorted by damage (see the module docstring)."""
    return analyse_calibrated(model, calib, held, input_names=input_names, output_names=output_names,
                              output_specs=output_specs, workdir=workdir, per_channel=per_channel,
                              end_to_end=end_to_end)[0]


def analyse_calibrated(model, calib, held, *, input_names, output_names, output_specs, workdir: Path,
                       per_channel: bool = True, end_to_end: bool = True) -> tuple[dict, bytes]:
    """:func:`analyse`, and the calibrated model it requantized (for :func:`requantize`)."""
    from ..evaluate import run_keras

    if len(held[0]) == 0:
        raise DataError("the sensitivity analysis needs held-back samples, and none are left",
                        hint="give more --calib samples or a larger --holdout")
    dbg = debugger(model, calib, held, input_names=input_names, output_names=output_names,
                   per_channel=per_channel)
    buf = io.StringIO()
    dbg.layer_statistics_dump(buf)
    origins = getattr(model, "_edgeopt_origins", {})
    rows = []
    for r in csv.DictReader(io.StringIO(buf.getvalue())):
        scale, mse = float(r["scale"]), float(r["mean_squared_error"])
        layers = layer_names(r["tensor_name"])
        rows.append({"op": r["op_name"], "tensor": r["tensor_name"], "layers": layers,
                     "onnx": [origins[n] for n in layers if n in origins], "scale": scale,
                     "rmse": float(np.sqrt(mse)), "rmse_steps": float(np.sqrt(mse) / scale) if scale else None,
                     "relative_rmse": _finite(r["relative_rmse"]), "max_abs_error": _finite(r["max_abs_error"])})
    result = {"samples": int(len(held[0])), "per_channel": per_channel, "layers": rows, "all_int8": None}
    if not end_to_end or not rows:
        rows.sort(key=lambda row: -(row["relative_rmse"] or 0.0))
        return result, dbg.calibrated_model
    workdir.mkdir(parents=True, exist_ok=True)
    reference = run_keras(model, held)
    calibrated = dbg.calibrated_model
    fid = dict(input_names=input_names, output_names=output_names, output_specs=output_specs)
    path = workdir / "sensitivity_int8.tflite"
    path.write_bytes(requantize(calibrated, per_channel=per_channel))
    base = fidelity(path, held, reference, **fid)
    result["all_int8"] = base
    for row in track(rows, f"keeping each of {len(rows)} ops in float, one at a time", total=len(rows)):
        path.write_bytes(requantize(calibrated, per_channel=per_channel, float_ops=[row["tensor"]]))
        alone = fidelity(path, held, reference, **fid)
        row["float_alone"] = alone
        row["gain_cosine"] = alone["cosine"] - base["cosine"]
        row["gain_top1"] = (None if base["top1_agreement"] is None
                            else alone["top1_agreement"] - base["top1_agreement"])
    path.unlink(missing_ok=True)
    rows.sort(key=lambda row: (-row["gain_cosine"], -(row["relative_rmse"] or 0.0)))
    return result, calibrated
