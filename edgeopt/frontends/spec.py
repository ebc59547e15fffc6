"""What an imported model looks like from the outside: its tensors on the ONNX side and on the Keras side.

Image inputs become NHWC at import. A :class:`TensorSpec` records both shapes and the permutation between them,
so data prepared for the original model (ONNX layout) can be fed to the Keras/TFLite model and its outputs compared
with onnxruntime's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output.

    ``onnx_shape`` is the static shape in the original model's layout (a dynamic batch fixed to 1);
    ``perm`` maps it to the Keras side: ``keras_array = onnx_array.transpose(perm)``; ``None`` when identical.

    >>> s = TensorSpec("x", (1, 3, 32, 32), (1, 32, 32, 3), "float32", (0, 2, 3, 1))
    >>> s.layout
    'NCHW->NHWC'
    >>> s.to_keras(np.zeros((2, 3, 32, 32))).shape
    (2, 32, 32, 3)
    """

    name: str
    onnx_shape: tuple[int, ...]
    keras_shape: tuple[int, ...]
    dtype: str = "float32"
    perm: tuple[int, ...] | None = None

    @property
    def layout(self) -> str:
        if self.perm is None:
            return "as-is"
        if len(self.perm) == 4 and tuple(self.perm) == (0, 2, 3, 1):
            return "NCHW->NHWC"
        if tuple(self.perm) == (1, 0, 2):
            return "TBC->BTC"  # sequence-first: the batch moves first
        return "perm" + ",".join(map(str, self.perm))

    @property
    def is_image(self) -> bool:
        """A 4-D input whose channel axis moved last at import (the case preprocessing flags apply to)."""
        return self.layout == "NCHW->NHWC"

    def to_keras(self, onnx_array: np.ndarray) -> np.ndarray:
        return onnx_array if self.perm is None else np.ascontiguousarray(onnx_array.transpose(self.perm))

    def to_onnx(self, keras_array: np.ndarray) -> np.ndarray:
        if self.perm is None:
            return keras_array
        return np.ascontiguousarray(keras_array.transpose(np.argsort(self.perm)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "onnx_shape": list(self.onnx_shape),
            "keras_shape": list(self.keras_shape),
            "dtype": self.dtype,
            "layout": self.layout,
        }


@dataclass(frozen=True)
class ImportedModel:
    """A trainable tf_keras functional model plus the specs that tie it to the original file."""

    model: Any  # tf_keras.Model
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    source: Path
    source_format: str  # "onnx" or "keras"
    notes: tuple[str, ...] = field(default=())

    def to_keras_inputs(self, onnx_arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [s.to_keras(np.asarray(a)) for s, a in zip(self.inputs, onnx_arrays)]

    def to_onnx_outputs(self, keras_arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [s.to_onnx(np.asarray(a)) for s, a in zip(self.outputs, keras_arrays)]
