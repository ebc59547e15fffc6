"""How raw pixels become model input: size, crop, channel order, value range, mean/std and layout.

The arithmetic, per pixel and channel ``c`` (channels counted in the model's order, after any RGB->BGR swap)::

    v = lo + (x / 255) * (hi - lo)          # uint8 x onto value_range (lo, hi)
    y = (v - mean[c]) / std[c]

e.g. ImageNet-style models: ``value_range=(0, 1), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)``;
Caffe-style BGR models: ``channel_order="bgr", value_range=(0, 255), mean=(104, 117, 123)``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from edgeopt.errors import DataError
from edgeopt.frontends.spec import TensorSpec


_RANGE_DEFAULTS = {"value_range": (0.0, 1.0), "mean": (0.0,), "std": (1.0,)}


def _positive_dims(size: tuple[int, int]) -> bool:
    return len(size) == 2 and all(isinstance(d, int) and d > 0 for d in size)


@dataclass(frozen=True)
class Preprocess:
    """What the model expects of its image input.

    - ``size``: (H, W) to resize to; ``None`` uses the model input's H, W. A size larger than the input is a
      "resize then center-crop" (``size=(256, 256)`` on a 224x224 model: the ImageNet evaluation convention).
    - ``resize``: ``"center-crop"`` (default) crops the largest centered region with the target's aspect ratio
      before resizing, so nothing is distorted; ``"stretch"`` resizes the whole image to the target.
    - ``channel_order``: ``"bgr"`` reverses RGB (no effect on 1-channel inputs).
    - ``value_range``: where uint8 0..255 lands, linearly; ``mean``/``std``: one value per model channel, or one
      for all, applied after that.
    - ``stated``: which of ``value_range``, ``mean``, ``std`` the user gave. Only stated ranges are checked against
      ``.npy``/``.npz`` arrays, which are otherwise taken as they are; ``None`` (the default) counts every field
      that differs from its default as stated.

    >>> Preprocess(value_range=(0, 255), mean=(104, 117, 123), channel_order="bgr").std
    (1.0,)
    """

    size: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    channel_order: Literal["rgb", "bgr"] = "rgb"
    value_range: tuple[float, float] = (0.0, 1.0)
    resize: Literal["stretch", "center-crop"] = "center-crop"
    stated: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.stated is None:
            # Built in Python: a field given a value other than its default counts as stated.
            given = tuple(k for k, d in _RANGE_DEFAULTS.items() if tuple(getattr(self, k)) != d)
            object.__setattr__(self, "stated", given)
        elif not set(self.stated) <= set(_RANGE_DEFAULTS):
            raise DataError(f"stated names {self.stated}; only {tuple(_RANGE_DEFAULTS)} can be stated.")
        if self.size is not None and not _positive_dims(tuple(self.size)):
            raise DataError(f"size must be two positive integers (H, W), got {self.size}.", hint="e.g. --size 224")
        if self.channel_order not in ("rgb", "bgr"):
            raise DataError(f"channel_order must be 'rgb' or 'bgr', got {self.channel_order!r}.")
        if self.resize not in ("stretch", "center-crop"):
            raise DataError(f"resize must be 'stretch' or 'center-crop', got {self.resize!r}.")
        lo, hi = self.value_range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise DataError(f"value_range must be two finite numbers low < high, got {self.value_range}.",
                            hint="e.g. --value-range 0,1 or --value-range -1,1 or --value-range 0,255")
        if not self.mean or not self.std:
            raise DataError("mean and std need at least one value each.")
        if not all(math.isfinite(s) and s > 0 for s in self.std):
            raise DataError(f"every std value must be positive, got {self.std}.", hint="e.g. --std 0.229,0.224,0.225")
        if not all(math.isfinite(m) for m in self.mean):
            raise DataError(f"every mean value must be finite, got {self.mean}.")

    def channel_stats(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """``mean`` and ``std`` as float32 arrays of length ``channels`` (a single value is repeated)."""
        out = []
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels):
                raise DataError(
                    f"{name} has {len(values)} values {values}, the model input has {channels} channel(s).",
                    hint=f"give one value or {channels} values: --{name} " + ",".join(["..."] * channels),
                )
            out.append(np.resize(np.asarray(values, np.float32), channels))
        return out[0], out[1]

    def output_range(self, channels: int) -> tuple[float, float]:
        """The smallest and largest value a preprocessed pixel can take, over all channels."""
        mean, std = self.channel_stats(channels)
        lo, hi = self.value_range
        return float(((lo - mean) / std).min()), float(((hi - mean) / std).max())


@dataclass(frozen=True)
class ImageGeometry:
    """Where an image goes in a model input: layout, channels, the input's H, W and the resize target."""

    layout: Literal["NCHW", "NHWC"]
    channels: int
    height: int
    width: int
    target: tuple[int, int]  # resize to this (H, W), then center-crop to (height, width) when larger


def image_geometry(spec: TensorSpec, *, preprocess: Preprocess = Preprocess()) -> ImageGeometry:
    """The image layout of a model input, or a DataError when the input does not take images.

    >>> spec = TensorSpec("x", (1, 3, 32, 32), (1, 32, 32, 3), "float32", (0, 2, 3, 1))
    >>> image_geometry(spec).layout, image_geometry(spec, preprocess=Preprocess(size=(40, 40))).target
    ('NCHW', (40, 40))
    """
    shape = tuple(spec.onnx_shape)
    if spec.is_image:
        layout, (c, h, w) = "NCHW", shape[1:]
    elif spec.perm is None and len(shape) == 4 and shape[3] in (1, 3):
        layout, (h, w, c) = "NHWC", shape[1:]
    else:
        raise DataError(
            f"model input '{spec.name}' has shape {list(shape)} ({spec.layout}), which does not take images "
            "(expected [N, C, H, W] or [N, H, W, C] with 1 or 3 channels).",
            hint="give the data already prepared as a .npy/.npz file in the model's input shape",
        )
    if c not in (1, 3):
        raise DataError(f"model input '{spec.name}' has {c} channels; image data fills 1 (grayscale) or 3 (color).",
                        hint="give the data already prepared as a .npy/.npz file")
    size = preprocess.size
    if h <= 0 or w <= 0:  # dynamic spatial size: the data decides it
        if size is None:
            raise DataError(f"model input '{spec.name}' has a dynamic height/width {list(shape)}; "
                            "the image size must be given.", hint="pass --size H,W")
        h, w = size
    target = (h, w) if size is None else tuple(size)
    if target[0] < h or target[1] < w:
        raise DataError(
            f"--size {target[0]},{target[1]} is smaller than the model input '{spec.name}' ({h}x{w}).",
            hint=f"leave --size out to resize straight to {h},{w}, or give a larger size to resize then center-crop",
        )
    return ImageGeometry(layout, c, h, w, target)


def resize_image(image: Image.Image, *, geometry: ImageGeometry, preprocess: Preprocess) -> np.ndarray:
    """One PIL image (mode L or RGB) -> uint8 (H, W) or (H, W, 3) at the model's input size."""
    th, tw = geometry.target
    src_w, src_h = image.size
    box = (0.0, 0.0, float(src_w), float(src_h))
    if preprocess.resize == "center-crop":
        # keep the target aspect ratio: crop width when the source is wider (src_w/src_h > tw/th), else height
        if src_w * th > tw * src_h:
            cw = src_h * tw / th
            box = ((src_w - cw) / 2, 0.0, (src_w + cw) / 2, float(src_h))
        else:
            ch = src_w * th / tw
            box = (0.0, (src_h - ch) / 2, float(src_w), (src_h + ch) / 2)
    if (src_h, src_w) != (th, tw) or box != (0.0, 0.0, float(src_w), float(src_h)):
        image = image.resize((tw, th), Image.Resampling.BILINEAR, box=box)
    pixels = np.asarray(image)
    top, left = (th - geometry.height) // 2, (tw - geometry.width) // 2
    return pixels[top : top + geometry.height, left : left + geometry.width]


def to_model_input(pixels: np.ndarray, *, geometry: ImageGeometry, preprocess: Preprocess) -> np.ndarray:
    """uint8 (N, H, W, C) in RGB (or L) order -> float32 model input in the ONNX layout.

    >>> g = ImageGeometry("NCHW", 3, 1, 1, (1, 1))
    >>> to_model_input(np.array([[[[255, 0, 51]]]], np.uint8), geometry=g, preprocess=Preprocess()).ravel().round(3)
    array([1. , 0. , 0.2], dtype=float32)
    """
    if preprocess.channel_order == "bgr" and pixels.shape[-1] == 3:
        pixels = pixels[..., ::-1]
    lo, hi = preprocess.value_range
    mean, std = preprocess.channel_stats(geometry.channels)
    x = pixels.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)
    x = (x - mean) / std
    if geometry.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)


_NUMBER = r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?"


def _floats(text: str, *, flag: str) -> tuple[float, ...]:
    parts = [p for p in re.split(r"[,\s]+", text.strip().strip("[]()")) if p]
    if not parts or not all(re.fullmatch(_NUMBER, p) for p in parts):
        raise DataError(f"{flag} {text!r}: expected comma-separated numbers.", hint=f"e.g. {flag} 0.485,0.456,0.406")
    return tuple(float(p) for p in parts)


def parse_size(text: str) -> tuple[int, int]:
    """``"224"`` -> (224, 224); ``"240,320"`` or ``"240x320"`` -> (240, 320) (H, W).

    >>> parse_size("240x320")
    (240, 320)
    """
    parts = [p for p in re.split(r"[,x\s]+", text.strip().lower()) if p]
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise DataError(f"--size {text!r}: expected one positive integer or H,W.",
                        hint="e.g. --size 224 or --size 240,320")
    h = int(parts[0])
    return h, int(parts[-1])


def parse_preprocess_args(
    *,
    size: str | None = None,
    mean: str | None = None,
    std: str | None = None,
    channel_order: str | None = None,
    value_range: str | None = None,
    resize: str | None = None,
) -> Preprocess:
    """Command-line strings -> a :class:`Preprocess`; options left as ``None`` keep their defaults.

    >>> parse_preprocess_args(size="224", mean="0.485,0.456,0.406", value_range="0,1").mean
    (0.485, 0.456, 0.406)
    """
    kw: dict = {"stated": tuple(k for k, v in (("value_range", value_range), ("mean", mean), ("std", std))
                                if v is not None)}
    if size is not None:
        kw["size"] = parse_size(size)
    if mean is not None:
        kw["mean"] = _floats(mean, flag="--mean")
    if std is not None:
        kw["std"] = _floats(std, flag="--std")
    if value_range is not None:
        vr = _floats(value_range, flag="--value-range")
        if len(vr) != 2:
            raise DataError(f"--value-range {value_range!r}: expected two numbers low,high.",
                            hint="e.g. --value-range 0,255")
        kw["value_range"] = vr
    if channel_order is not None:
        order = channel_order.strip().lower()
        if order not in ("rgb", "bgr"):
            raise DataError(f"--channel-order {channel_order!r}: expected rgb or bgr.")
        kw["channel_order"] = order
    if resize is not None:
        mode = resize.strip().lower()
        if mode not in ("stretch", "center-crop"):
            raise DataError(f"--resize {resize!r}: expected stretch or center-crop.")
        kw["resize"] = mode
    return Preprocess(**kw)
