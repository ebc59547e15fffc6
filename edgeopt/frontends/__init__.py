"""Model frontends: ONNX files and Keras models become an :class:`ImportedModel` (a trainable tf_keras model)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from edgeopt.errors import ModelFileError
from edgeopt.frontends.spec import ImportedModel, TensorSpec

__all__ = ["load_model", "ImportedModel", "TensorSpec"]

_KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"


def _kind(path: Path) -> str | None:
    if path.is_dir():
        return "keras" if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists() else None
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if path.suffix.lower() in _KERAS_SUFFIXES:
        return "keras"
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_HDF5_MAGIC) or head.startswith(_ZIP_MAGIC):
        return "keras"
    # An ONNX protobuf starts with field 1 (ir_version, varint): tag byte 0x08.
    if head[:1] == b"\x08":
        return "onnx"
    return None


def load_model(path, *, input_shapes: Mapping[str, Sequence[int]] | None = None) -> ImportedModel:
    """Load an ONNX file, a Keras ``.h5``/``.keras`` file or a SavedModel directory.

    ``input_shapes`` fixes dynamic dims, name → full shape in the file's layout (``{"input": [1, 3, 320, 320]}``).

    >>> m = load_model("model.onnx", input_shapes={"input": [1, 3, 224, 224]})  # doctest: +SKIP
    >>> m.model.summary()                                                        # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}",
                             hint="accepted: an ONNX file (.onnx), a Keras .h5/.keras file or a SavedModel folder")
    try:
        kind = _kind(path)
    except OSError as exc:
        raise ModelFileError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if kind == "onnx":
        from edgeopt.frontends.onnx import import_onnx

        return import_onnx(path, input_shapes=input_shapes)
    if kind == "keras":
        from edgeopt.frontends.keras import load_keras

        return load_keras(path, input_shapes=input_shapes)
    raise ModelFileError(f"{path} is not a model format edgeopt reads",
                         hint="accepted: an ONNX file (.onnx), a Keras .h5/.keras file or a SavedModel folder")
