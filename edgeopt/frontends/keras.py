"""Keras models (.h5, .keras, SavedModel folder) loaded as an :class:`ImportedModel` (layout as-is, perm None)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from edgeopt.errors import ModelFileError, UnsupportedModelError
from edgeopt.frontends.spec import ImportedModel, TensorSpec


def _load(path: Path):
    from edgeopt._tf import keras
    from edgeopt.frontends.onnx.layers import custom_objects

    try:
        return keras().models.load_model(str(path), compile=False, custom_objects=custom_objects())
    except Exception as exc:
        raise ModelFileError(f"{path} cannot be loaded as a tf_keras model: {type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}",
                             hint="save it with tf_keras (Keras 2) model.save('model.keras' or 'model.h5'); "
                                  "Keras 3 files and plain tf.Module SavedModels are not read") from None


def _static(name: str, shape, given: Sequence[int] | None, path: Path) -> tuple[int, ...]:
    dims = [None if d is None else int(d) for d in shape]
    if given is not None:
        try:
            given = [int(v) for v in given]
        except (TypeError, ValueError):
            raise ModelFileError(f"input_shapes for '{name}' must be a list of integers, got {given!r}") from None
        if len(given) != len(dims) or any(d is not None and d != g for d, g in zip(dims, given)):
            raise ModelFileError(f"{path}: --input-shape gives {given} for input '{name}', whose shape is {dims}")
        return tuple(given)
    dims[0] = 1 if dims and dims[0] is None else dims[0]
    if any(d is None for d in dims):
        example = ",".join(str(d or "H") for d in dims)
        raise UnsupportedModelError(f"{path}: input '{name}' has dynamic dimensions {dims}",
                                    hint=f"pass --input-shape {name}:{example} with every dimension fixed")
    return tuple(dims)


def load_keras(path, *, input_shapes: Mapping[str, Sequence[int]] | None = None) -> ImportedModel:
    """Load a tf_keras model file or SavedModel folder.

    >>> m = load_keras("model.keras")   # doctest: +SKIP
    >>> m.source_format
    'keras'
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    model = _load(path)
    if not hasattr(model, "inputs") or not model.inputs:
        raise UnsupportedModelError(f"{path}: the Keras model has no defined inputs (a subclassed model?)",
                                    hint="save a functional or Sequential model built with known input shapes")
    given = dict(input_shapes or {})
    names = [t.name.split(":")[0] for t in model.inputs]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ModelFileError(f"{path}: --input-shape names {unknown}, but the model's inputs are {names}")
    ins = []
    for name, t in zip(names, model.inputs):
        shape = _static(name, t.shape, given.get(name), path)
        ins.append(TensorSpec(name, shape, shape, "float32", None))
    batch = ins[0].onnx_shape[0]
    outs = []
    for t in model.outputs:
        shape = (batch, *[int(d) if d is not None else -1 for d in t.shape[1:]])
        outs.append(TensorSpec(t.name.split(":")[0].split("/")[0], shape, shape, "float32", None))
    return ImportedModel(model, tuple(ins), tuple(outs), path, "keras", ())
