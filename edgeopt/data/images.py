"""Image folders and idx image files -> preprocessed model input."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from rich.console import Console
from rich.progress import Progress

from edgeopt.errors import DataError

from .preprocess import ImageGeometry, Preprocess, resize_image, to_model_input

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
PROGRESS_ABOVE = 200  # decoding more images than this shows a progress bar


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder``, recursively, sorted by their path relative to it; hidden files are skipped.

    >>> list_images("calib/")  # doctest: +SKIP
    [PosixPath('calib/cat/001.jpg'), PosixPath('calib/dog/001.png')]
    """
    folder = Path(folder)
    found = [
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def existing(source: str | Path, *, flag: str) -> Path:
    """``source`` as a Path, or a DataError naming the flag it was given to when nothing is there."""
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder.",
                        hint=f"give a folder of images, an idx file, or a .npy/.npz file ({flag})")
    return path


def folder_images(folder: Path) -> list[Path]:
    """:func:`list_images`, or a DataError when the folder holds none."""
    files = list_images(folder)
    if not files:
        raise DataError(f"{folder}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)}, in subfolders too).",
                        hint="point at the folder that holds the images, or give a .npy/.npz/idx file")
    return files


def _open(path: Path, *, mode: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)  # photos from phones store rotation in EXIF
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit: keep the top 8 bits
                im = Image.fromarray((np.asarray(im, np.uint32) >> 8).clip(0, 255).astype(np.uint8))
            return im.convert(mode)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(
            f"{path}: cannot decode this image ({type(e).__name__}: {e}).",
            hint="remove or replace the file; it is corrupt or not an image despite its extension",
        ) from None


def _progress(items: Sequence, *, label: str) -> Iterable:
    if len(items) <= PROGRESS_ABOVE:
        yield from items
        return
    with Progress(console=Console(stderr=True), transient=True) as bar:
        yield from bar.track(items, description=label)


def load_image_files(paths: Sequence[Path], *, geometry: ImageGeometry, preprocess: Preprocess) -> np.ndarray:
    """Decode, convert (L for 1-channel inputs, RGB for 3), resize and normalize ``paths`` into one batch."""
    mode = "L" if geometry.channels == 1 else "RGB"
    pixels = np.empty((len(paths), geometry.height, geometry.width, geometry.channels), np.uint8)
    for i, path in enumerate(_progress(paths, label=f"decoding {len(paths)} images")):
        resized = resize_image(_open(path, mode=mode), geometry=geometry, preprocess=preprocess)
        pixels[i] = resized.reshape(pixels.shape[1:])
    return to_model_input(pixels, geometry=geometry, preprocess=preprocess)


def from_gray_array(images: np.ndarray, *, geometry: ImageGeometry, preprocess: Preprocess) -> np.ndarray:
    """uint8 (N, H, W) grayscale images (idx data) -> model input; a 3-channel input gets the gray value in R, G, B."""
    n = len(images)
    if images.shape[1:] == geometry.target == (geometry.height, geometry.width):
        pixels = images  # already the input's size: skip PIL
    else:
        pixels = np.stack([
            resize_image(Image.fromarray(im, "L"), geometry=geometry, preprocess=preprocess) for im in images
        ]) if n else np.empty((0, geometry.height, geometry.width), np.uint8)
    pixels = pixels[..., None]
    if geometry.channels == 3:
        pixels = np.repeat(pixels, 3, axis=-1)
    return to_model_input(pixels, geometry=geometry, preprocess=preprocess)
