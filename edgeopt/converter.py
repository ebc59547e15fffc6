"""Keras → `.tflite`: FP32, FP16, dynamic-range and full-integer INT8.

The model is converted through a concrete function with batch 1 and one signature (``serving_default``) whose
input and output names are the original model's tensor names (made safe for TensorFlow), so the `.tflite` can be
driven by name and its shapes are static, as the Edge TPU compiler and most delegates require.
"""
from __future__ import annotations

import contextlib
import re
import warnings
from typing import Callable, Iterable, Literal, Sequence

import numpy as np

from ._tf import tf
from .errors import ConversionError

Precision = Literal["fp32", "fp16", "dynamic-range", "int8"]
IOType = Literal["int8", "uint8", "float32"]


def safe_name(name: str, index: int = 0) -> str:
    """A TensorFlow-legal tensor name for an ONNX/Keras name ('input.1' → 'input_1', '0' → 't_0').

    >>> safe_name("input.1"), safe_name("123"), safe_name("x:0")
    ('input_1', 't_123', 'x_0')
    """
    s = re.sub(r"[^A-Za-z0-9_]", "_", name) or f"t{index}"
    return s if s[0].isalpha() else f"t_{s}"


def unique_safe_names(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for i, n in enumerate(names):
        s = safe_name(n, i)
        while s in out:
            s = f"{s}_{i}"
        out.append(s)
    return out


@contextlib.contextmanager
def calibration_warnings():
    """Silences the deprecation warning of the tf.lite.Interpreter the calibrator builds to feed samples by
    signature name (LiteRT's own interpreter runs everything else)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter is deprecated")
        yield


def to_tflite(
    model,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    precision: Precision = "fp32",
    representative: Callable[[], Iterable[list[np.ndarray] | dict[str, np.ndarray]]] | None = None,
    io_type: IOType = "float32",
    per_channel: bool = True,
) -> bytes:
    """Convert a tf_keras model; ``input_names``/``output_names`` become the signature's names (already safe).

    ``representative`` yields batch-1 float arrays in the Keras layout (INT8 only): a list for a model with one
    input, a dict by signature name for several (the converter orders a signature's inputs by name and feeds a
    list in that order; :func:`edgeopt.quantization.ptq.calibration_samples` does this).

    >>> data = to_tflite(model, input_names=["x"], output_names=["y"], precision="fp16")  # doctest: +SKIP
    """
    conv, concrete = make_converter(model, input_names=input_names, output_names=output_names)
    _configure(conv, precision=precision, representative=representative, io_type=io_type, per_channel=per_channel)
    from ._quiet import quiet_native_stderr
    from .profiling import step
    from .quantization.compact import compact

    try:
        with quiet_native_stderr(), step("TFLite converter"), calibration_warnings():
            data = conv.convert()  # the converter's C++ prints its settings on fd 2
    except Exception as exc:
        raise _conversion_error(str(exc), precision, concrete, model) from None
    with step("compaction"):
        return compact(data)


def make_converter(model, *, input_names: Sequence[str], output_names: Sequence[str]):
    """(TFLiteConverter, concrete function) of ``model`` at batch 1, with one signature named by the given names;
    a ConversionError when the graph cannot be traced."""
    T = tf()
    specs = [
        T.TensorSpec((1,) + tuple(int(d) for d in inp.shape[1:]), T.float32, name=n)
        for inp, n in zip(model.inputs, input_names)
    ]

    @T.function
    def serve(*args):
        outs = model(list(args) if len(args) > 1 else args[0], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return {n: o for n, o in zip(output_names, outs)}

    try:
        concrete = serve.get_concrete_function(*specs)
        # The trackable only has to hold the variables: passing the Keras model itself makes every convert() export
        # and reload it as a SavedModel (70-85 % of a conversion), for the same bytes.
        holder = T.Module()
        holder.model_variables = list(model.variables)
        return T.lite.TFLiteConverter.from_concrete_functions([concrete], holder), concrete
    except Exception as exc:  # TF raises many types for graphs it cannot trace
        raise ConversionError(f"the model cannot be traced for conversion: {exc}") from None


_REFUSED = (r"'tf\.(\w+)' op is neither a custom op nor a flex op", r"'tfl?\.(\w+)' op (?:is not supported|failed)")


def refused_ops(text: str) -> list[str]:
    """The TensorFlow op types a converter error says TFLite cannot run, in order, without repeats.

    >>> refused_ops("... error: 'tf.Erf' op is neither a custom op nor a flex op ... TF Select ops: Erf, Cumprod")
    ['Erf', 'Cumprod']
    """
    found = [m for pat in _REFUSED for m in re.findall(pat, text)]
    for line in re.findall(r"TF Select ops: ([^\n]+)", text):
        found += [p.strip() for p in line.split(",") if p.strip()]
    return list(dict.fromkeys(found))


def _conversion_error(text: str, precision: str, concrete, model) -> ConversionError:
    """A ConversionError naming the refused ops, the Keras layers that emit them and their ONNX nodes."""
    ops = refused_ops(text)
    if not ops:
        lines = [ln for ln in text.strip().splitlines() if "error:" in ln] or text.strip().splitlines()
        last = lines[-1].split("error:", 1)[-1].strip() if lines else "unknown error"
        return ConversionError(f"TFLite conversion ({precision}) failed: {last[:300]}",
                               hint="run `edgeopt inspect` on the source model to see its ops")
    origins = getattr(model, "_edgeopt_origins", {})
    where: dict[str, list[str]] = {}
    for op in concrete.graph.get_operations():
        parts = op.name.split("/")
        if op.type in ops and len(parts) > 2:
            layer = parts[1]
            label = f"node {origins[layer]}" if layer in origins else f"Keras layer '{layer}'"
            where.setdefault(op.type, [])
            if label not in where[op.type]:
                where[op.type].append(label)
    listed = "; ".join(f"{op} (from {', '.join(where[op][:3])})" if op in where else op for op in ops)
    return ConversionError(f"TFLite conversion ({precision}) failed: TFLite has no builtin kernel for {listed}",
                           hint="replace that layer before export, or cut the model before it "
                                "(onnx.utils.extract_model) and run the rest outside")


def _configure(conv, *, precision, representative, io_type, per_channel) -> None:
    T = tf()
    if precision == "fp32":
        return
    conv.optimizations = [T.lite.Optimize.DEFAULT]
    if precision == "fp16":
        conv.target_spec.supported_types = [T.float16]
    elif precision == "int8":
        if representative is None:
            raise ConversionError("INT8 conversion needs representative samples")
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [T.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = {"int8": T.int8, "uint8": T.uint8, "float32": T.float32}[io_type]
        conv.inference_output_type = conv.inference_input_type
        # Per-channel weight scales are the converter's default; per-tensor is the older, coarser scheme.
        conv._experimental_disable_per_channel = not per_channel
    elif precision != "dynamic-range":
        raise ConversionError(f"unknown precision {precision!r}")
