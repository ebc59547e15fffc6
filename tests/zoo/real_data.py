"""Calibration files for the real-model set, made the way each model's own pipeline preprocesses its input.

Every maker returns float32 samples in the ONNX input's layout, ready to ``np.save`` and hand to
``edgeopt.compress(..., calib=path)`` with no other data option (``.npy`` arrays are taken as given). Through
:func:`images.disjoint_samples`, the samples edgeopt will hold back come from other photos than the calibration
samples, no two samples share a photo region, and every OCR sample carries a different string.

    >>> from zoo.real_models import real_entry
    >>> x = calib_array(real_entry("ppocr_cls-torchscript17"), 50)
    >>> x.shape, float(x.min()) >= -1.0
    ((50, 3, 48, 192), True)
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from PIL import Image

from images import CALIB_PHOTOS, disjoint_samples, region_crops
from text_images import text_lines, text_scenes, text_stream

if TYPE_CHECKING:
    from .real_models import RealModel

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def imagenet_nchw(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) RGB -> float32 NCHW: /255, minus the ImageNet mean, over its std (torchvision, PP-OCR det)."""
    x = (images.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return x.transpose(0, 3, 1, 2).copy()


def ppocr_resize_norm_pad(line: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PaddleOCR's resize_norm_img for rec and cls: resize to height H keeping the aspect ratio (at most W wide),
    (x / 255 - 0.5) / 0.5, then zeros on the right up to W. uint8 (h, w, 3) -> float32 (3, H, W)."""
    h, w = size
    width = min(w, math.ceil(h * line.shape[1] / line.shape[0]))
    resized = np.asarray(Image.fromarray(line).resize((width, h), Image.Resampling.BILINEAR), np.float32)
    out = np.zeros((3, h, w), np.float32)
    out[:, :, :width] = ((resized / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
    return out


def letterbox(image: np.ndarray, size: int, *, fill: int = 114) -> np.ndarray:
    """ultralytics' LetterBox(auto=False): scale the longer side to ``size``, centre, pad with grey 114."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nh, nw = round(h * scale), round(w * scale)
    out = np.full((size, size, 3), fill, np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    resized = Image.fromarray(image).resize((nw, nh), Image.Resampling.BILINEAR)
    out[top : top + nh, left : left + nw] = np.asarray(resized)
    return out


Make = Callable[[int, Sequence[str]], np.ndarray]  # (count, photos) -> count preprocessed samples


def _ppocr_det(item: RealModel, seed: int) -> Make:
    """Photo crops with 1-4 printed lines each, ImageNet-normalised (DetResizeForTest keeps a multiple of 32)."""
    texts, rng = text_stream(seed=seed), np.random.default_rng(seed)

    def make(count: int, photos: Sequence[str]) -> np.ndarray:
        lines = [[next(texts) for _ in range(rng.integers(1, 5))] for _ in range(count)]
        return imagenet_nchw(text_scenes(lines, item.input_shape[2:], photos=photos, seed=seed))

    return make


def _lines(item: RealModel, seed: int, *, rotate: bool) -> Make:
    texts, size = text_stream(seed=seed), item.input_shape[2:]

    def make(count: int, photos: Sequence[str]) -> np.ndarray:
        lines = text_lines([next(texts) for _ in range(count)], height=size[0], photos=photos, seed=seed)
        if rotate:  # every other line upside down: the classifier's 180° class
            lines = [np.ascontiguousarray(line[::-1, ::-1]) if i % 2 else line for i, line in enumerate(lines)]
        return np.stack([ppocr_resize_norm_pad(line, size) for line in lines])

    return make


def _ppocr_cls(item: RealModel, seed: int) -> Make:
    """Text lines, half of them upside down, resized to height 48, [-1, 1], zero-padded to 192 (ClsResizeImg)."""
    return _lines(item, seed, rotate=True)


def _ppocr_rec(item: RealModel, seed: int) -> Make:
    """Text lines resized to height 48, [-1, 1], zero-padded on the right (RecResizeImg)."""
    return _lines(item, seed, rotate=False)


def _crnn(item: RealModel, seed: int) -> Make:
    """Grayscale lines stretched to 32x100, (x / 255 - 0.5) / 0.5, as crnn.pytorch's resizeNormalize does."""
    texts, (h, w) = text_stream(seed=seed), item.input_shape[2:]

    def make(count: int, photos: Sequence[str]) -> np.ndarray:
        lines = text_lines([next(texts) for _ in range(count)], height=h, photos=photos, max_aspect=5.0, seed=seed)
        gray = [np.asarray(Image.fromarray(line).convert("L").resize((w, h), Image.Resampling.BILINEAR))
                for line in lines]
        return ((np.stack(gray)[:, None].astype(np.float32) / 255.0) - 0.5) / 0.5

    return make


def _letterbox(item: RealModel, seed: int) -> Make:
    """Landscape and portrait photo crops letterboxed to the square input, RGB / 255, NCHW."""
    size = item.input_shape[2]

    def make(count: int, photos: Sequence[str]) -> np.ndarray:
        wide = region_crops((count + 1) // 2, (3 * size // 4, size), photos=photos, seed=seed)
        tall = region_crops(count // 2, (size, 3 * size // 4), photos=photos, seed=seed + 1)
        boxed = [letterbox(image, size) for pair in zip(wide, tall) for image in pair]
        boxed += [letterbox(image, size) for image in wide[len(tall):]]
        return (np.stack(boxed).astype(np.float32) / 255.0).transpose(0, 3, 1, 2).copy()

    return make


def _mtcnn(item: RealModel, seed: int) -> Make:
    """Candidate windows resized to the net's input, (x - 127.5) * 0.0078125 (facenet-pytorch), NCHW."""
    size = tuple(item.input_shape[2:])

    def make(count: int, photos: Sequence[str]) -> np.ndarray:
        crops = region_crops(count, size, photos=photos, seed=seed).astype(np.float32)
        return ((crops - 127.5) * 0.0078125).transpose(0, 3, 1, 2).copy()

    return make


def _imagenet(item: RealModel, seed: int) -> Make:
    """Photo crops resized to the input, ImageNet-normalised, NCHW (torchvision's transforms)."""
    size = tuple(item.input_shape[2:])
    return lambda count, photos: imagenet_nchw(region_crops(count, size, photos=photos, seed=seed))


MAKERS: dict[str, Callable[[RealModel, int], Make]] = {
    "ppocr_det": _ppocr_det, "ppocr_cls": _ppocr_cls, "ppocr_rec": _ppocr_rec, "crnn": _crnn,
    "letterbox": _letterbox, "mtcnn": _mtcnn, "imagenet": _imagenet,
}
CALIB_SEED, TRAIN_SEED = 1, 2


def calib_array(item: RealModel, n: int = 50, /) -> np.ndarray:
    """``n`` preprocessed samples for an entry: float32 (n, *input shape[1:]), the ONNX input's layout; the ones
    edgeopt holds back are made from HELD_BACK_PHOTOS, the others from CALIB_PHOTOS."""
    x = disjoint_samples(n, MAKERS[item.data](item, CALIB_SEED)).astype(np.float32)
    assert x.shape == (n, *item.input_shape[1:]), x.shape
    return x


def training_array(item: RealModel, n: int = 128, /) -> np.ndarray:
    """``n`` samples standing in for the model's training data: made like :func:`calib_array`'s with other
    strings and crops, from CALIB_PHOTOS only, so that the held-back photos stay unseen."""
    return MAKERS[item.data](item, TRAIN_SEED)(n, CALIB_PHOTOS).astype(np.float32)


def write_calib(item: RealModel, path: Path, n: int = 50) -> Path:
    """Save :func:`calib_array` as ``path`` (.npy) and return it."""
    np.save(path, calib_array(item, n))
    return Path(path)
