"""Printed text on real photos, for OCR models: text-line crops (recognizers, direction classifier) and scenes with
a few lines of text (detectors).

Backgrounds are :func:`images.region_crops` of the real photos, so no two samples share a background region; text
lines are muted towards a paper or a dark sign, scenes keep the photo as it is. Every string is distinct. Text is
drawn with the DejaVu fonts of Debian's fonts-dejavu-core when they are installed, else with Pillow's built-in
scalable font.

>>> texts = unique_texts(3, seed=0)
>>> [line.shape[0] for line in text_lines(texts, height=32, photos=("china",))]
[32, 32, 32]
"""
from __future__ import annotations

from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from images import region_crops

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf",
              "DejaVuSansCondensed.ttf", "DejaVuSerif-Italic.ttf")

# Words of the kind found on signs, labels, receipts and forms.
WORDS = ("open", "closed", "exit", "entrance", "parking", "total", "cash", "change", "invoice", "receipt", "date",
         "price", "sale", "coffee", "tea", "milk", "bread", "station", "platform", "street", "avenue", "road",
         "north", "south", "east", "west", "hotel", "pharmacy", "bakery", "market", "museum", "library", "school",
         "office", "floor", "room", "door", "push", "pull", "danger", "caution", "warning", "stop", "slow", "bus",
         "taxi", "train", "ticket", "gate", "arrival", "departure", "menu", "lunch", "dinner", "special", "fresh",
         "organic", "weight", "net", "batch", "serial", "model", "made", "in", "the", "of", "and", "for", "city",
         "park", "garden", "bridge", "river", "lake", "hill", "tower", "centre", "Mon", "Tue", "Wed", "Thu", "Fri")


@lru_cache(maxsize=None)
def font(size: int, index: int = 0) -> ImageFont.FreeTypeFont:
    """One of the DejaVu faces at ``size`` pixels (``index`` picks the face), or Pillow's built-in font."""
    files = [FONT_DIR / name for name in FONT_FILES if (FONT_DIR / name).exists()]
    if files:
        return ImageFont.truetype(str(files[index % len(files)]), size)
    return ImageFont.load_default(size)


def _one_text(rng: np.random.Generator) -> str:
    words = [str(rng.choice(WORDS)) for _ in range(rng.integers(1, 4))]
    kind = rng.integers(6)
    if kind == 0:
        words.append(f"{rng.integers(1, 999)}.{rng.integers(100):02d}")  # a price
    elif kind == 1:
        words.append(f"{rng.integers(2000, 2030)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}")
    elif kind == 2:
        words.insert(0, f"No.{rng.integers(10, 99999)}")
    elif kind == 3:
        words = [w.upper() for w in words]
    elif kind == 4:
        words[0] = words[0].capitalize()
    return " ".join(words)


def text_stream(*, seed: int = 0) -> Iterator[str]:
    """Distinct strings without end: one to three words, sometimes with a price, a date or a number."""
    rng, seen = np.random.default_rng(seed), set()
    while True:
        text = _one_text(rng)
        if text not in seen:
            seen.add(text)
            yield text


def unique_texts(n: int, *, seed: int = 0) -> list[str]:
    """The first ``n`` strings of :func:`text_stream`."""
    return list(islice(text_stream(seed=seed), n))


def _fitted_font(text: str, *, size: int, width: int, index: int) -> ImageFont.FreeTypeFont:
    """The face at ``size``, shrunk until ``text`` fits in ``width`` pixels."""
    while size > 6 and font(size, index).getlength(text) > width:
        size -= 1
    return font(size, index)


def text_lines(texts: Sequence[str], *, height: int, photos: Sequence[str], max_aspect: float = 8.0,
               seed: int = 0) -> list[np.ndarray]:
    """One uint8 (height, width, 3) RGB line image per text, cropped to the text plus a margin.

    The background is a photo crop muted towards paper (dark ink) or, for a quarter of them, towards a dark sign
    (light ink); the font face, size (55-80 % of the height) and ink colour vary.
    """
    rng = np.random.default_rng(seed)
    max_width = int(height * max_aspect)
    backgrounds = region_crops(len(texts), (height, max_width), photos=photos, seed=seed)
    lines = []
    for i, (text, bg) in enumerate(zip(texts, backgrounds)):
        dark = rng.uniform() < 0.25
        tone = np.full(3, 30.0 if dark else 235.0)
        mix = rng.uniform(0.3, 0.6)  # how much of the photo shows through
        image = Image.fromarray((mix * bg + (1 - mix) * tone).astype(np.uint8))
        ink = tuple(int(v) for v in (rng.integers(200, 256, 3) if dark else rng.integers(0, 90, 3)))
        margin = int(rng.integers(2, height // 4 + 2))
        face = _fitted_font(text, size=int(height * rng.uniform(0.55, 0.8)), width=max_width - 2 * margin,
                            index=int(rng.integers(len(FONT_FILES))))
        left, top, right, bottom = face.getbbox(text)
        y = (height - (bottom - top)) // 2 - top
        ImageDraw.Draw(image).text((margin - left, y), text, font=face, fill=ink)
        lines.append(np.asarray(image)[:, : min(max_width, right - left + 2 * margin)])
    return lines


def text_scenes(texts: Sequence[Sequence[str]], size: tuple[int, int], *, photos: Sequence[str],
                seed: int = 0) -> np.ndarray:
    """uint8 (len(texts), H, W, 3) photo crops with the given lines of text printed at random places.

    Each line is drawn black or white, whichever stands out from the photo under it, at 9-22 % of the height.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    scenes = region_crops(len(texts), size, photos=photos, seed=seed)
    for scene, lines in zip(scenes, texts):
        image = Image.fromarray(scene)
        draw = ImageDraw.Draw(image)
        for text in lines:
            face = _fitted_font(text, size=int(h * rng.uniform(0.09, 0.22)), width=w - 4,
                                index=int(rng.integers(len(FONT_FILES))))
            left, top, right, bottom = face.getbbox(text)
            x = int(rng.integers(2, max(3, w - (right - left) - 1)))
            y = int(rng.integers(0, max(1, h - bottom)))
            under = scene[max(0, y + top): y + bottom, x: x + right - left]
            fill = (0, 0, 0) if under.size and under.mean() > 110 else (255, 255, 255)
            draw.text((x - left, y), text, font=face, fill=fill)
        scene[:] = np.asarray(image)
    return scenes
