"""Random access to the samples of a data source, for training: only the samples asked for are decoded.

``load_samples`` reads a whole (capped) set into memory, which suits calibration. Training reads tens of thousands
of samples many times over, in a new order each epoch, so :class:`SampleSource` keeps only what is cheap to keep
(the sorted file list of an image folder, the uint8 images of an idx file, a memory-mapped .npy) and decodes a
batch when the training pipeline asks for it. The preprocessing is the same as ``load_samples``' to the value.

>>> from edgeopt.frontends.spec import TensorSpec
>>> spec = TensorSpec("image", (1, 1, 28, 28), (1, 28, 28, 1), "float32", (0, 2, 3, 1))
>>> src = open_source("train-images-idx3-ubyte.gz", spec)  # doctest: +SKIP
>>> len(src), src.read([0, 5, 9]).shape  # doctest: +SKIP
(60000, (3, 1, 28, 28))
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeopt.errors import DataError
from edgeopt.frontends.spec import TensorSpec

from .arrays import check_array
from .idx import is_idx_path
from .images import existing, folder_images, from_gray_array, load_image_files
from .preprocess import Preprocess, image_geometry


@dataclass
class SampleSource:
    """Samples of one data source for one model input, read by index in the original model's layout."""

    path: Path
    spec: TensorSpec
    preprocess: Preprocess
    kind: str  # "images", "idx", "array"
    count: int
    _items: Any = field(default=None, repr=False)  # file list, uint8 images or (memory-mapped) array

    def __len__(self) -> int:
        return self.count

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """The samples at ``indices`` (any order, repeats allowed), preprocessed like :func:`load_samples`."""
        idx = np.asarray(indices, np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.count):
            raise IndexError(f"sample index out of range 0..{self.count - 1}")
        if self.kind == "images":
            geometry = image_geometry(self.spec, preprocess=self.preprocess)
            return load_image_files([self._items[i] for i in idx], geometry=geometry, preprocess=self.preprocess)
        if self.kind == "idx":
            geometry = image_geometry(self.spec, preprocess=self.preprocess)
            return from_gray_array(self._items[idx], geometry=geometry, preprocess=self.preprocess)
        return check_array(np.asarray(self._items[idx]), spec=self.spec, path=self.path, preprocess=self.preprocess)


def open_source(source: str | Path, spec: TensorSpec, *, preprocess: Preprocess = Preprocess()) -> SampleSource:
    """A :class:`SampleSource` over an image folder (recursive, sorted: the order ``load_samples`` and the class
    labels use), an idx image file, or a .npy (memory-mapped) / .npz array file."""
    from . import _idx_images
    from .arrays import read_array_file

    path = existing(source, flag="--data")
    suffix = path.suffix.lower()
    if path.is_dir():
        files = folder_images(path)
        image_geometry(spec, preprocess=preprocess)  # a model that takes no images fails here, not mid-training
        return SampleSource(path, spec, preprocess, "images", len(files), files)
    if is_idx_path(path):
        images = _idx_images(path)
        image_geometry(spec, preprocess=preprocess)
        return SampleSource(path, spec, preprocess, "idx", len(images), images)
    if suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{path}: cannot read the array file ({type(exc).__name__}: {exc}).",
                            hint="save the data with np.save") from None
        check_array(np.asarray(array[:1]), spec=spec, path=path, preprocess=preprocess)  # shape and dtype, now
        return SampleSource(path, spec, preprocess, "array", len(array), array)
    if suffix == ".npz":
        array = read_array_file(path, spec=spec)
        check_array(array[:1], spec=spec, path=path, preprocess=preprocess)
        return SampleSource(path, spec, preprocess, "array", len(array), array)
    raise DataError(
        f"{path}: unknown training data type '{suffix or path.name}'.",
        hint="give a folder of images (one subfolder per class carries the labels), an MNIST-format "
             "'*-idx3-ubyte[.gz]' file or a .npy/.npz file",
    )
