"""Real photographs as test input: crops of the sample photos shipped with scikit-learn and scikit-image.

Everything here loads offline (the images are inside the installed packages). Crops at different scales and
places give varied, natural pixel statistics for INT8 calibration and fidelity tests.

edgeopt holds back a fifth of a calibration file to measure fidelity. :func:`disjoint_samples` lays out a file so
that its held-back samples come from photos no calibration sample was cut from, and :func:`region_crops` never
cuts two samples from overlapping regions: fidelity is measured on pixels the quantizer has not seen.

>>> photo_crops(4, (32, 32)).shape
(4, 32, 32, 3)
>>> disjoint_samples(40, lambda n, photos: region_crops(n, (32, 32), photos=photos)).shape
(40, 32, 32, 3)
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

# skimage.data color photographs that ship inside the package (others need a download, see skimage.data docs)
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
# The order of source_photos(); stereo_motorcycle's left view is "motorcycle".
PHOTO_NAMES = ("china", "flower", *SKIMAGE_PHOTOS, "motorcycle")
# Fidelity is measured on these; calibration crops come from the others.
HELD_BACK_PHOTOS = ("astronaut", "coffee", "motorcycle")
CALIB_PHOTOS = tuple(name for name in PHOTO_NAMES if name not in HELD_BACK_PHOTOS)


@lru_cache(maxsize=1)
def source_photos() -> tuple[np.ndarray, ...]:
    """The source photos: uint8 (H, W, 3) RGB arrays, 2 from scikit-learn and 7 from scikit-image."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = list(load_sample_images().images)  # china.jpg, flower.jpg: 427x640
    photos += [getattr(skimage.data, name)() for name in SKIMAGE_PHOTOS]
    photos.append(skimage.data.stereo_motorcycle()[0])  # (left, right, disparity): the left view
    return tuple(np.ascontiguousarray(p[..., :3], dtype=np.uint8) for p in photos)


def photo_crops(n: int, size: tuple[int, int], *, seed: int = 0) -> np.ndarray:
    """``n`` random crops of real photos, resized to ``size`` (H, W): uint8 (n, H, W, 3), RGB.

    Each crop takes a random photo, a random side between 15 % and 100 % of the photo's shorter side, an aspect
    ratio near the target's (x0.75..1.33), and a random place; the same seed gives the same crops.
    """
    photos = source_photos()
    rng = np.random.default_rng(seed)
    h, w = size
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        photo = photos[rng.integers(len(photos))]
        ph, pw = photo.shape[:2]
        side = rng.uniform(0.15, 1.0) * min(ph, pw)
        aspect = (w / h) * np.exp(rng.uniform(np.log(0.75), np.log(4 / 3)))  # crop width / height
        ch = int(min(ph, max(8, side / np.sqrt(aspect))))
        cw = int(min(pw, max(8, side * np.sqrt(aspect))))
        top, left = rng.integers(ph - ch + 1), rng.integers(pw - cw + 1)
        crop = Image.fromarray(photo[top : top + ch, left : left + cw])
        out[i] = np.asarray(crop.resize((w, h), Image.Resampling.BILINEAR))
    return out


def write_image_folder(directory: str | Path, images: np.ndarray, *, prefix: str = "img") -> Path:
    """Write uint8 (n, H, W, 3) or (n, H, W) images as ``prefix_0000.png``... into ``directory``; returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(np.asarray(image, np.uint8)).save(directory / f"{prefix}_{i:04d}.png")
    return directory


def crop_grid(shape: tuple[int, int], aspect: float, count: int) -> list[tuple[int, int, int, int]]:
    """The largest grid of at least ``count`` equal, non-overlapping cells (top, left, height, width) whose
    width / height is near ``aspect``, tiling a photo of ``shape`` (H, W)."""
    ph, pw = shape
    for rows in range(1, ph + 1):
        ch = ph // rows
        cw = min(pw, max(1, round(ch * aspect)))
        cols = pw // cw
        if rows * cols >= count:
            return [(r * ch, c * cw, ch, cw) for r in range(rows) for c in range(cols)]
    raise ValueError(f"a {ph}x{pw} photo has no room for {count} cells")


def region_crops(n: int, size: tuple[int, int], *, photos: Sequence[str], seed: int = 0) -> np.ndarray:
    """``n`` crops of the named photos, resized to ``size`` (H, W): uint8 (n, H, W, 3), no two overlapping.

    The crops are spread evenly over ``photos``. Each photo is tiled into a grid of cells shaped like ``size``
    with at least as many cells as crops asked of it; each crop is a random window of 60-100 % of its own cell,
    so two crops never share a pixel.
    """
    photos_by_name = dict(zip(PHOTO_NAMES, source_photos()))
    rng = np.random.default_rng(seed)
    h, w = size
    out = np.empty((n, h, w, 3), np.uint8)
    counts = [n // len(photos) + (i < n % len(photos)) for i in range(len(photos))]
    crops = []
    for name, count in zip(photos, counts):
        photo = photos_by_name[name]
        cells = crop_grid(photo.shape[:2], w / h, count)
        for index in rng.choice(len(cells), size=count, replace=False):
            top, left, ch, cw = cells[index]
            wh, ww = max(2, int(ch * rng.uniform(0.6, 1.0))), max(2, int(cw * rng.uniform(0.6, 1.0)))
            y, x = top + rng.integers(ch - wh + 1), left + rng.integers(cw - ww + 1)
            crops.append(photo[y : y + wh, x : x + ww])
    for i, j in enumerate(rng.permutation(n)):  # interleave the photos
        out[i] = np.asarray(Image.fromarray(crops[j]).resize((w, h), Image.Resampling.BILINEAR))
    return out


def heldback_mask(n: int) -> np.ndarray:
    """Which of ``n`` samples of a calibration file edgeopt holds back for fidelity (its default 1/5 share)."""
    from edgeopt.data import split_holdout

    _, held = split_holdout(np.arange(n))
    mask = np.zeros(n, bool)
    mask[held] = True
    return mask


def disjoint_samples(n: int, make: Callable[[int, Sequence[str]], np.ndarray]) -> np.ndarray:
    """``n`` samples whose held-back ones (:func:`heldback_mask`) are made from HELD_BACK_PHOTOS only and the
    calibration ones from CALIB_PHOTOS only; ``make(count, photos)`` returns ``count`` samples of those photos."""
    held = heldback_mask(n)
    calib, back = make(int((~held).sum()), CALIB_PHOTOS), make(int(held.sum()), HELD_BACK_PHOTOS)
    out = np.empty((n, *calib.shape[1:]), calib.dtype)
    out[~held], out[held] = calib, back
    return out
