"""Class labels for calibration and evaluation data: idx label files, .npy arrays, the ``y`` of an .npz, and
image folders with one subfolder per class (the ImageFolder layout: class ``i`` is the ``i``-th name, sorted).

Labels follow their images exactly: the same seeded pick (``_pick``) that chooses which samples are read chooses
which labels are kept.

>>> import numpy as np
>>> check_labels(np.array([0, 3, 1]), path="y.npy", images=3, images_path="x.npy").tolist()
[0, 3, 1]
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt.errors import DataError

from .idx import is_idx_path, read_idx
from .images import IMAGE_EXTENSIONS, list_images


@dataclass(frozen=True)
class Labels:
    """Integer class labels of every sample of a data source (before any pick), and where they came from."""

    values: np.ndarray  # int64, one per sample, in the order the samples are read
    source: str  # the label file, or the folder whose class subfolders name the classes
    classes: tuple[str, ...] = ()  # class names of an image folder, sorted; empty for label files


def read_labels(path: str | Path) -> np.ndarray:
    """The labels in a file: an idx label file (1-D, ``.gz`` or not), a .npy integer array, or the ``y`` array of
    an .npz; int64, checked for integer values >= 0."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such label file.",
                        hint="give an idx label file, a .npy integer array or an .npz holding 'y'")
    suffix = path.suffix.lower()
    if is_idx_path(path):
        raw = read_idx(path)
    elif suffix in (".npy", ".npz"):
        try:
            loaded = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"{path}: cannot read the label array ({type(e).__name__}: {e}).",
                            hint="save the labels with np.save(path, y) or np.savez(path, x=x, y=y)") from None
        if isinstance(loaded, np.ndarray):
            raw = loaded
        else:
            with loaded:
                if "y" not in loaded.files:
                    raise DataError(f"{path}: holds arrays {loaded.files}; the labels must be named 'y'.",
                                    hint="np.savez(path, x=images, y=labels)")
                raw = loaded["y"]
    else:
        raise DataError(f"{path}: unknown label file type '{suffix or path.name}'.",
                        hint="give an MNIST-format '*-labels-idx1-ubyte[.gz]' file, a .npy or an .npz with 'y'")
    return _as_labels(raw, path)


def _as_labels(raw: np.ndarray, path: Path) -> np.ndarray:
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]
    if raw.ndim != 1:
        raise DataError(f"{path}: labels must be one integer per sample, got an array of shape {list(raw.shape)}.",
                        hint="one-hot labels: save np.argmax(y, axis=1)")
    if raw.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(raw) | (raw != np.round(raw)))
        if len(bad):
            raise DataError(f"{path}: label {bad[0]} is {raw[bad[0]].item()!r}, not an integer "
                            f"({len(bad)} of {len(raw)} labels are not integers).",
                            hint="labels are class indices 0, 1, 2, ...")
    elif raw.dtype.kind not in "iu":
        raise DataError(f"{path}: labels are {raw.dtype} values, not integers.",
                        hint="labels are class indices 0, 1, 2, ...")
    values = raw.astype(np.int64)
    if len(values) and values.min() < 0:
        i = int(np.argmin(values))
        raise DataError(f"{path}: label {i} is {values[i]}; class indices start at 0 "
                        f"({int(np.sum(values < 0))} of {len(values)} labels are negative).")
    return values


def check_labels(values: np.ndarray, *, path: str | Path, images: int, images_path: str | Path) -> np.ndarray:
    """``values`` when there is exactly one label per image, else a DataError naming both files and counts."""
    if len(values) != images:
        raise DataError(f"{path}: holds {len(values)} labels but {images_path} holds {images} samples.",
                        hint="give the label file that belongs to these images")
    return values


def check_classes(labels: Labels, *, classes: int, output: str) -> None:
    """A DataError when a label (or a class folder) names a class the model's classifier output does not have."""
    if classes <= 0:  # a dynamic width: checked against the outputs themselves
        return
    if labels.classes and len(labels.classes) > classes:
        raise DataError(f"{labels.source}: has {len(labels.classes)} class folders but the model's output "
                        f"'{output}' has {classes} classes.", hint="give a folder with one subfolder per class of "
                                                                   "the model, named so that they sort in its order")
    top = int(labels.values.max()) if len(labels.values) else -1
    if top >= classes:
        raise DataError(f"{labels.source}: labels go up to {top} ({top + 1} classes) but the model's output "
                        f"'{output}' has {classes} classes.", hint="give the labels that belong to this model")


def class_folder_labels(folder: str | Path) -> Labels | None:
    """Labels of an ImageFolder layout (every image inside one of at least two class subfolders), or None when the
    folder is not laid out that way. A class subfolder without images is a DataError.

    With val/cat/1.jpg, val/dog/1.jpg and val/dog/2.png:

    >>> class_folder_labels("val/")  # doctest: +SKIP
    Labels(values=array([0, 1, 1]), source='val', classes=('cat', 'dog'))
    """
    folder = Path(folder)
    files = list_images(folder)
    rel = [f.relative_to(folder).parts for f in files]
    subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(subfolders) < 2 or not files or any(len(r) < 2 for r in rel):
        return None
    counts = {name: 0 for name in subfolders}
    for r in rel:
        counts[r[0]] += 1
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        raise DataError(f"{folder}: class folder{'s' if len(empty) > 1 else ''} {', '.join(empty)} "
                        f"hold{'' if len(empty) > 1 else 's'} no images ({len(files)} images in "
                        f"{len(subfolders) - len(empty)} other class folders).",
                        hint=f"put images ({', '.join(IMAGE_EXTENSIONS[:3])}, ...) in every class folder, or "
                             "remove the empty ones")
    index = {name: i for i, name in enumerate(subfolders)}
    return Labels(values=np.array([index[r[0]] for r in rel], np.int64), source=str(folder),
                  classes=tuple(subfolders))


def source_labels(data: str | Path, labels: str | Path | None, *, count: Callable[[], int]) -> Labels | None:
    """The labels of every sample of ``data`` (``count()`` of them): from the label file ``labels``, else from the
    class subfolders of an image folder, else from the ``y`` of an .npz; None when ``data`` carries none."""
    data = Path(data)
    if labels is not None:
        return Labels(check_labels(read_labels(labels), path=labels, images=count(), images_path=data), str(labels))
    if data.is_dir():
        return class_folder_labels(data)  # one label per listed image by construction
    if data.suffix.lower() == ".npz":
        with np.load(data, allow_pickle=False) as npz:
            if "y" not in npz.files or "x" not in npz.files:
                return None
            raw = npz["y"]
        return Labels(check_labels(_as_labels(raw, data), path=data, images=count(), images_path=data), str(data))
    return None
