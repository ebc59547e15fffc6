"""Running a `.tflite` model on batches of samples with the LiteRT interpreter.

Used for fidelity (INT8 vs FP32), conversion parity and accuracy. Inputs and outputs are matched by signature
name, not by position: the converter may order a signature's tensors differently from the Keras model.
Quantized (int8/uint8) inputs are quantized here with the tensor's own scale and zero point, and quantized outputs
dequantized, so callers always exchange float arrays in the Keras (NHWC) layout.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ._quiet import quiet_native_stderr
from .errors import ModelFileError


def make_interpreter(path: str | Path, *, num_threads: int = 1):
    """A LiteRT interpreter with tensors allocated; ModelFileError when the file is not a usable .tflite."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        with quiet_native_stderr():
            interp = Interpreter(model_path=str(path), num_threads=num_threads)
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: cannot be loaded as a .tflite model: {exc}") from None
    return interp


def quantize(x: np.ndarray, detail: Mapping) -> np.ndarray:
    """float → the tensor's dtype, with its (scale, zero_point); float tensors pass through."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    # q = round(x / scale) + zero_point, clamped to the integer range
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, detail: Mapping) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return q.astype(np.float32)
    scale, zero = detail["quantization"]
    return ((q.astype(np.float32) - zero) * scale).astype(np.float32)


class TFLiteModel:
    """A `.tflite` file ready to run on float batches.

    >>> m = TFLiteModel("model.tflite")                      # doctest: +SKIP
    >>> outs = m.run({"input": x_nhwc})                       # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, num_threads: int = 1):
        self.path = Path(path)
        self.interpreter = make_interpreter(path, num_threads=num_threads)
        sigs = self.interpreter.get_signature_list()
        self.signature = next(iter(sigs)) if sigs else None
        if self.signature is not None:
            self._runner = self.interpreter.get_signature_runner(self.signature)
            self.input_details = self._runner.get_input_details()
            self.output_details = self._runner.get_output_details()
        else:
            self._runner = None
            self.input_details = {d["name"]: d for d in self.interpreter.get_input_details()}
            self.output_details = {d["name"]: d for d in self.interpreter.get_output_details()}

    @property
    def input_names(self) -> list[str]:
        return list(self.input_details)

    @property
    def output_names(self) -> list[str]:
        return list(self.output_details)

    def run_one(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One sample (batch 1) by input name; float outputs by output name.

        TFLite's fused sequence LSTM keeps its hidden and cell state in variable tensors across invocations, so
        they are reset first: every sample starts from the zero state, as in the Keras and ONNX models.
        """
        q = {k: quantize(np.asarray(v, np.float32), self.input_details[k]) for k, v in feeds.items()}
        self.interpreter.reset_all_variables()
        if self._runner is not None:
            raw = self._runner(**q)
        else:
            interp = self.interpreter
            for k, v in q.items():
                interp.set_tensor(self.input_details[k]["index"], v)
            interp.invoke()
            raw = {k: interp.get_tensor(d["index"]) for k, d in self.output_details.items()}
        return {k: dequantize(v, self.output_details[k]) for k, v in raw.items()}

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A batch (first axis) by input name, one sample at a time; outputs stacked on the first axis."""
        n = len(next(iter(feeds.values())))
        rows: dict[str, list[np.ndarray]] = {k: [] for k in self.output_details}
        for i in range(n):
            out = self.run_one({k: v[i : i + 1] for k, v in feeds.items()})
            for k, v in out.items():
                rows[k].append(v)
        return {k: np.concatenate(v, axis=0) for k, v in rows.items()}


def run_ordered(model: TFLiteModel, inputs: Sequence[np.ndarray], *, input_names: Sequence[str],
                output_names: Sequence[str]) -> list[np.ndarray]:
    """Run with inputs/outputs given in a known order of signature names."""
    out = model.run(dict(zip(input_names, inputs)))
    return [out[n] for n in output_names]
