"""``.npy`` / ``.npz`` data: taken as already preprocessed, in the model's original (ONNX) layout, and checked."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from edgeopt.errors import DataError
from edgeopt.frontends.spec import TensorSpec

from .preprocess import Preprocess

RANGE_SLACK = 0.25  # values may overshoot the declared range by 25 % of its span (noise, augmentation)
MIN_SPAN_FRACTION = 0.02  # data filling < 2 % of the declared range is almost surely on a different scale


def read_array_file(path: Path, *, spec: TensorSpec) -> np.ndarray:
    """The array for ``spec`` from a .npy file, or from a .npz (the array named like the input, else ``x``, else
    the only one)."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            return _pick(loaded, path=path, spec=spec)
    except ValueError as e:
        if "Object arrays" in str(e):
            raise DataError(f"{path}: holds an object array (Python objects), not numbers.",
                            hint="save a numeric array: np.save(path, np.asarray(x, np.float32))") from None
        # np.load falls back to unpickling anything that is neither .npy nor .npz, hence "pickled data"
        raise DataError(f"{path}: not a numpy .npy/.npz file ({e}).",
                        hint="save the data with np.save / np.savez") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: cannot read the array file ({type(e).__name__}: {e}).",
                        hint="the file is damaged; re-save it with np.save / np.savez") from None


def _pick(npz, *, path: Path, spec: TensorSpec) -> np.ndarray:
    keys = list(npz.keys())
    for key in (spec.name, "x"):
        if key in keys:
            return npz[key]
    if len(keys) == 1:
        return npz[keys[0]]
    raise DataError(
        f"{path}: holds arrays {keys}; none is named after the model input '{spec.name}' or 'x'.",
        hint=f"save the input data under the name '{spec.name}': np.savez(path, **{{'{spec.name}': x}})",
    )


def _fits(found: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    # a non-positive expected dim is dynamic and matches anything
    return len(found) == len(expected) and all(e <= 0 or f == e for f, e in zip(found, expected))


def check_array(array: np.ndarray, *, spec: TensorSpec, path: Path, preprocess: Preprocess) -> np.ndarray:
    """Validate dtype, shape and values; return (N, *input shape) as float32 (or the input's integer dtype)."""
    if array.dtype.kind not in "biuf":
        raise DataError(f"{path}: array dtype {array.dtype} is not numeric; model input '{spec.name}' takes "
                        f"{spec.dtype}.", hint="save a numeric array: np.save(path, np.asarray(x, np.float32))")
    sample = tuple(spec.onnx_shape[1:])
    if _fits(array.shape, sample):
        array = array[None]  # one sample without its batch axis
    if not _fits(array.shape[1:], sample) or len(array) == 0:
        raise DataError(
            f"{path}: array shape {list(array.shape)} does not fit model input '{spec.name}': expected "
            f"[N, {', '.join(map(str, sample))}] (or one sample {list(sample)}), in the ONNX model's layout.",
            hint=_shape_hint(array.shape, spec),
        )
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            first = int(np.flatnonzero(bad.reshape(len(array), -1).any(1))[0])
            raise DataError(f"{path}: {int(bad.sum())} NaN/inf values (first in sample {first}).",
                            hint="clean the data: every value must be a finite number")
    if np.dtype(spec.dtype).kind in "biu":
        return array.astype(spec.dtype)
    array = array.astype(np.float32)
    # Arrays are taken as given: only a range the user stated (value range, mean, std) is checked.
    image = spec.is_image or (spec.perm is None and len(spec.onnx_shape) == 4 and spec.onnx_shape[3] in (1, 3))
    if preprocess.stated and image:
        check_value_range(array, spec=spec, path=path, preprocess=preprocess)
    return array


def _shape_hint(found: tuple[int, ...], spec: TensorSpec) -> str:
    keras = tuple(spec.keras_shape[1:])
    if spec.perm is not None and _fits(tuple(found[1:]), keras):
        inverse = tuple(int(i) for i in np.argsort(spec.perm))
        return (f"the data looks like the converted model's layout {list(keras)}; .npy/.npz data must be in the "
                f"original model's layout: x.transpose{inverse}")
    return "save the data in the model input's shape, with the batch as the first axis"


def check_value_range(array: np.ndarray, *, spec: TensorSpec, path: Path, preprocess: Preprocess) -> None:
    """Image data must lie in the stated value range (after mean/std), within a slack, and use a fair part of it.

    With value_range (0, 1) and no mean/std, 0..255 data fails (255 > 1 + 0.25); with value_range (0, 255),
    0..1 data fails too (span 1 < 2 % of 255).
    """
    channels = spec.onnx_shape[1] if spec.is_image else spec.onnx_shape[-1]
    lo, hi = preprocess.output_range(channels)
    slack = RANGE_SLACK * (hi - lo)
    found_lo, found_hi = float(array.min()), float(array.max())
    def flag(name: str, values: tuple[float, ...]) -> str:
        return f"--{name} " + ",".join(f"{v:g}" for v in values)

    flags = ", ".join([flag("value-range", preprocess.value_range), flag("mean", preprocess.mean),
                       flag("std", preprocess.std)])
    declared = f"declared range [{lo:.4g}, {hi:.4g}] ({flags})"
    if found_lo < lo - slack or found_hi > hi + slack:
        raise DataError(
            f"{path}: values span [{found_lo:.4g}, {found_hi:.4g}], outside the {declared} of model input "
            f"'{spec.name}'.",
            hint="state how the data was scaled with --value-range (e.g. 0,255 or -1,1) and --mean/--std, "
                 "or rescale the data",
        )
    if found_hi > found_lo and found_hi - found_lo < MIN_SPAN_FRACTION * (hi - lo):
        raise DataError(
            f"{path}: values span only [{found_lo:.4g}, {found_hi:.4g}], a tiny part of the {declared} of model "
            f"input '{spec.name}'; the data is probably on a different scale.",
            hint="state how the data was scaled with --value-range (e.g. 0,1) and --mean/--std, or rescale the data",
        )
