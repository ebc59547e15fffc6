"""Real photographs as test input: random crops of the sample photos shipped with scikit-learn and scikit-image.

Everything here loads offline (the images are inside the installed packages). Crops at different scales and
places give varied, natural pixel statistics for INT8 calibration and fidelity tests.

>>> photo_crops(4, (32, 32)).shape
(4, 32, 32, 3)
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

# skimage.data color photographs that ship inside the package (others need a download, see skimage.data docs)
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")


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
