"""Calibration and evaluation data: image folders, idx files and .npy/.npz arrays, as model input.

Samples come back in the **original model's layout** (the ONNX input's), ready for onnxruntime; convert them for
the Keras/TFLite side with ``spec.to_keras``.

>>> from edgeopt.frontends.spec import TensorSpec
>>> spec = TensorSpec("image", (1, 1, 28, 28), (1, 28, 28, 1), "float32", (0, 2, 3, 1))
>>> x = load_samples("t10k-images-idx3-ubyte.gz", spec, limit=100)  # doctest: +SKIP
>>> x.shape, x.dtype  # doctest: +SKIP
((100, 1, 28, 28), dtype('float32'))
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgeopt.errors import DataError
from edgeopt.frontends.spec import TensorSpec

from .arrays import check_array, read_array_file
from .idx import is_idx_path, read_idx, write_idx
from .images import IMAGE_EXTENSIONS, existing, folder_images, from_gray_array, list_images, load_image_files
from .labels import Labels, check_classes, class_folder_labels, read_labels, source_labels
from .preprocess import ImageGeometry, Preprocess, image_geometry, parse_preprocess_args, parse_size

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageGeometry",
    "Labels",
    "check_classes",
    "class_folder_labels",
    "count_samples",
    "Preprocess",
    "image_geometry",
    "is_idx_path",
    "list_images",
    "load_labels",
    "load_samples",
    "parse_preprocess_args",
    "parse_size",
    "random_samples",
    "read_idx",
    "read_labels",
    "split_holdout",
    "write_idx",
]


def _pick(count: int, *, limit: int | None, seed: int | None) -> np.ndarray:
    """Indices of the items to keep, in ascending (sorted) order.

    A random pick rather than the first ``limit``: folders sorted by path group images by class, and calibrating
    on the first class alone would skew the quantization ranges. ``seed=None`` takes the first ``limit``.
    """
    if limit is not None and limit <= 0:
        raise DataError(f"limit must be a positive number of samples, got {limit}.", hint="e.g. --calib-samples 200")
    if limit is None or limit >= count:
        return np.arange(count)
    if seed is None:
        return np.arange(limit)
    return np.sort(np.random.default_rng(seed).choice(count, size=limit, replace=False))


def load_samples(
    source: str | Path,
    spec: TensorSpec,
    *,
    preprocess: Preprocess = Preprocess(),
    limit: int | None = None,
    seed: int | None = 0,
) -> np.ndarray:
    """Model input samples (N, *input shape) from a folder of images, an image file, an idx file or .npy/.npz.

    Images (and idx images) are decoded, converted to L or RGB to match the input's 1 or 3 channels (idx
    grayscale fills all three channels of a color input), resized and normalized as ``preprocess`` says.
    .npy/.npz arrays are taken as already preprocessed and only checked. ``limit`` keeps that many samples,
    chosen with ``seed`` (``None``: the first ones), always in sorted order, so the same call gives the same data.

    >>> load_samples("calib/", spec, preprocess=Preprocess(mean=(0.5,), std=(0.5,)), limit=64)  # doctest: +SKIP
    """
    path = existing(source, flag="--calib")
    suffix = path.suffix.lower()
    if path.is_dir():
        files = folder_images(path)
        geometry = image_geometry(spec, preprocess=preprocess)
        chosen = [files[i] for i in _pick(len(files), limit=limit, seed=seed)]
        return load_image_files(chosen, geometry=geometry, preprocess=preprocess)
    if suffix in (".npy", ".npz"):
        array = check_array(read_array_file(path, spec=spec), spec=spec, path=path, preprocess=preprocess)
        return array[_pick(len(array), limit=limit, seed=seed)]
    if is_idx_path(path):
        images = _idx_images(path)
        geometry = image_geometry(spec, preprocess=preprocess)
        return from_gray_array(images[_pick(len(images), limit=limit, seed=seed)], geometry=geometry,
                               preprocess=preprocess)
    if suffix in IMAGE_EXTENSIONS:
        geometry = image_geometry(spec, preprocess=preprocess)
        return load_image_files([path], geometry=geometry, preprocess=preprocess)
    raise DataError(
        f"{path}: unknown data file type '{suffix or path.name}'.",
        hint="give a folder of images, an image file, an MNIST-format '*-idx3-ubyte[.gz]' file or a .npy/.npz file",
    )


def count_samples(source: str | Path, spec: TensorSpec) -> int:
    """How many samples ``source`` holds before any pick (what ``load_samples`` chooses from)."""
    path = Path(source)
    if path.is_dir():
        return len(list_images(path))
    if path.suffix.lower() in (".npy", ".npz"):
        return len(read_array_file(path, spec=spec))
    if is_idx_path(path):
        return len(_idx_images(path))
    return 1


def load_labels(source: str | Path, spec: TensorSpec, *, labels: str | Path | None = None,
                limit: int | None = None, seed: int | None = 0) -> Labels | None:
    """The labels of exactly the samples ``load_samples(source, spec, limit=limit, seed=seed)`` returns, in the
    same order (the same seeded pick); from ``labels`` (a label file), else the class subfolders of an image folder
    or the ``y`` of an .npz; None when there are none.

    >>> y = load_labels("t10k-images-idx3-ubyte.gz", spec, labels="t10k-labels-idx1-ubyte.gz", limit=100)  # doctest: +SKIP
    >>> len(y.values)  # doctest: +SKIP
    100
    """
    found = source_labels(source, labels, count=lambda: count_samples(source, spec))
    if found is None:
        return None
    keep = _pick(len(found.values), limit=limit, seed=seed)
    return Labels(values=found.values[keep], source=found.source, classes=found.classes)


def _idx_images(path: Path) -> np.ndarray:
    images = read_idx(path)
    if images.ndim != 3 or images.dtype != np.uint8:
        what = "labels (1-D)" if images.ndim == 1 else f"{images.dtype} data of shape {list(images.shape)}"
        raise DataError(f"{path}: holds {what}; image data is uint8 [N, H, W] (magic 0x00000803).",
                        hint="give the '*-images-idx3-ubyte' file, not the labels")
    if len(images) == 0:
        raise DataError(f"{path}: holds no images (shape {list(images.shape)}).")
    return images


def random_samples(spec: TensorSpec, n: int, *, preprocess: Preprocess = Preprocess(), seed: int = 0) -> np.ndarray:
    """``n`` uniform random samples in the declared value range (then mean/std), for when no data is given.

    Random pixels only exercise the model's ranges roughly; real data calibrates much better.

    >>> spec = TensorSpec("x", (1, 3, 8, 8), (1, 8, 8, 3), "float32", (0, 2, 3, 1))
    >>> x = random_samples(spec, 4, preprocess=Preprocess(value_range=(-1, 1)))
    >>> x.shape, bool(x.min() >= -1 and x.max() <= 1)
    ((4, 3, 8, 8), True)
    """
    if n <= 0:
        raise DataError(f"the number of random samples must be positive, got {n}.")
    rng = np.random.default_rng(seed)
    lo, hi = preprocess.value_range
    shape = tuple(spec.onnx_shape[1:])
    geometry = None
    if spec.is_image or (spec.perm is None and len(shape) == 3 and shape[-1] in (1, 3)):
        geometry = image_geometry(spec, preprocess=preprocess)
        g = geometry
        shape = (g.channels, g.height, g.width) if g.layout == "NCHW" else (g.height, g.width, g.channels)
    if any(d <= 0 for d in shape):
        raise DataError(f"model input '{spec.name}' has dynamic dimensions {list(spec.onnx_shape)}; random "
                        "samples need a fixed shape.", hint="give real data (--calib) instead")
    if np.dtype(spec.dtype).kind in "biu":
        return rng.integers(math.ceil(lo), math.floor(hi) + 1, size=(n, *shape)).astype(spec.dtype)
    x = rng.uniform(lo, hi, size=(n, *shape)).astype(np.float32)
    # non-image inputs take one mean/std for every value
    mean, std = preprocess.channel_stats(1 if geometry is None else geometry.channels)
    if geometry is not None and geometry.layout == "NCHW":
        mean, std = mean[:, None, None], std[:, None, None]  # broadcast over H, W
    return ((x - mean) / std).astype(np.float32)


def split_holdout(
    samples: np.ndarray, *, holdout: float = 0.2, min_holdout: int = 8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split samples into (calibration, held back) at random; both keep the original order.

    Held back: ``max(min_holdout, round(holdout * N))`` samples, e.g. 100 samples -> 80 + 20, 20 -> 12 + 8.

    >>> calib, held = split_holdout(np.zeros((100, 3)))
    >>> len(calib), len(held)
    (80, 20)
    """
    if not 0.0 <= holdout < 1.0:
        raise DataError(f"holdout must be a fraction in [0, 1), got {holdout}.", hint="e.g. --holdout 0.2")
    n = len(samples)
    n_hold = max(int(min_holdout), int(round(holdout * n)))
    if n_hold >= n:
        raise DataError(
            f"{n} samples are too few to hold back {n_hold} for evaluation and still calibrate on the rest.",
            hint=f"give at least {n_hold + 1} samples, or lower the held-back share",
        )
    held = np.zeros(n, bool)
    held[np.random.default_rng(seed).choice(n, size=n_hold, replace=False)] = True
    return samples[~held], samples[held]
