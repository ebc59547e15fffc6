"""The report's latency plot as an SVG file, drawn directly (no plotting library to import: matplotlib alone costs
about a second per run, more than the whole report of a small model takes to measure).

One panel plots median latency against top-1 agreement with FP32 (point area proportional to file size) when the
model is a classifier; the other plots median latency against file size. Markdown viewers and browsers show the
file where report.md embeds it.

    >>> timing = {"models": {"fp32": {"size_bytes": 249_000, "latency_ms": {"median": 0.12}},
    ...                      "int8": {"size_bytes": 70_000, "latency_ms": {"median": 0.05}}}}
    >>> svg = latency_svg(timing, accuracy={"fp32": 1.0, "int8": 0.98})
    >>> svg.startswith("<svg") and svg.count("<circle") == 4
    True
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence
from xml.sax.saxutils import escape

PANEL_W, PANEL_H = 440, 330
LEFT, RIGHT, TOP, BOTTOM = 64, 18, 34, 50  # margins inside a panel, in px
COLOR = "#3b6fb6"


def nice_ticks(lo: float, hi: float, *, count: int = 6) -> list[float]:
    """Round tick values from at or below ``lo`` to at or above ``hi``: steps of 1, 2, 2.5 or 5 times a power of ten.

    >>> nice_ticks(0.0, 1.0)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    >>> nice_ticks(0.013, 0.041)
    [0.01, 0.02, 0.03, 0.04, 0.05]
    >>> nice_ticks(3.0, 3.0)
    [2.6, 2.8, 3.0, 3.2, 3.4]
    """
    if hi <= lo:  # one value: a range around it
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    ticks = [round(math.floor(lo / step + 1e-9) * step, 12)]
    while ticks[-1] < hi - step * 1e-9:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def padded(values: Sequence[float], fraction: float = 0.06) -> tuple[float, float]:
    """The range of ``values`` widened by ``fraction`` of its span on each side (not below 0 for positive data),
    so no point sits on the frame.

    >>> padded([1.0, 2.0])
    (0.94, 2.06)
    """
    lo, hi = min(values), max(values)
    pad = (hi - lo) * fraction
    return (max(lo - pad, 0.0) if lo >= 0 else lo - pad), hi + pad


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class _Panel:
    """One scatter panel at horizontal offset ``x0``: data → pixel mapping, axes, ticks and points."""

    def __init__(self, x0: float, xs: Sequence[float], ys: Sequence[float]):
        self.x0 = x0
        self.xticks = nice_ticks(*padded(xs))
        self.yticks = nice_ticks(*padded(ys))

    def px(self, x: float) -> float:
        lo, hi = self.xticks[0], self.xticks[-1]
        return self.x0 + LEFT + (x - lo) / (hi - lo) * (PANEL_W - LEFT - RIGHT)

    def py(self, y: float) -> float:
        lo, hi = self.yticks[0], self.yticks[-1]
        return PANEL_H - BOTTOM - (y - lo) / (hi - lo) * (PANEL_H - TOP - BOTTOM)

    def axes(self, title: str, xlabel: str, ylabel: str) -> list[str]:
        x_left, x_right = self.x0 + LEFT, self.x0 + PANEL_W - RIGHT
        y_top, y_bottom = TOP, PANEL_H - BOTTOM
        out = [f'<rect x="{x_left}" y="{y_top}" width="{x_right - x_left}" height="{y_bottom - y_top}" '
               'fill="none" stroke="#444"/>',
               f'<text x="{(x_left + x_right) / 2}" y="{TOP - 12}" text-anchor="middle" '
               f'font-size="13">{escape(title)}</text>',
               f'<text x="{(x_left + x_right) / 2}" y="{PANEL_H - 12}" text-anchor="middle">{escape(xlabel)}</text>',
               f'<text transform="translate({self.x0 + 16},{(y_top + y_bottom) / 2}) rotate(-90)" '
               f'text-anchor="middle">{escape(ylabel)}</text>']
        for t in self.xticks:
            x = self.px(t)
            out.append(f'<line x1="{x:.1f}" y1="{y_bottom}" x2="{x:.1f}" y2="{y_bottom + 4}" stroke="#444"/>'
                       f'<text x="{x:.1f}" y="{y_bottom + 17}" text-anchor="middle">{_fmt(t)}</text>')
        for t in self.yticks:
            y = self.py(t)
            out.append(f'<line x1="{x_left - 4}" y1="{y:.1f}" x2="{x_left}" y2="{y:.1f}" stroke="#444"/>'
                       f'<text x="{x_left - 7}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
        return out

    def point(self, x: float, y: float, label: str, radius: float) -> str:
        cx, cy = self.px(x), self.py(y)
        return (f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{radius:.1f}" fill="{COLOR}" fill-opacity="0.55" '
                f'stroke="{COLOR}"/><text x="{cx + radius + 4:.1f}" y="{cy - 4:.1f}">{escape(label)}</text>')


def latency_svg(timing: Mapping, *, accuracy: Mapping[str, float] | None = None,
                accuracy_label: str = "top-1 agreement with FP32") -> str:
    """The SVG text of the plot for a ``timing`` dict (``models`` → ``size_bytes``, ``latency_ms.median``)."""
    models = timing["models"]
    labels = list(models)
    latency = [float(models[k]["latency_ms"]["median"]) for k in labels]
    size_mb = [models[k]["size_bytes"] / 1e6 for k in labels]
    panels = 2 if accuracy else 1
    body: list[str] = []
    if accuracy:  # models without an accuracy figure (a distilled student's teacher) are only in the size panel
        shown = [i for i, k in enumerate(labels) if k in accuracy]
        acc = [float(accuracy[labels[i]]) for i in shown]
        panel = _Panel(0, [latency[i] for i in shown], acc)
        body += panel.axes(f"median latency vs {accuracy_label} (area ∝ size)", "median latency (ms)",
                           accuracy_label)
        biggest = max(size_mb[i] for i in shown) or 1.0
        # Area ∝ size: the largest model gets radius 16 px, the others sqrt-proportionally (at least 4 px).
        body += [panel.point(latency[i], y, labels[i], max(4.0, 16.0 * math.sqrt(size_mb[i] / biggest)))
                 for i, y in zip(shown, acc)]
    panel = _Panel(PANEL_W * (panels - 1), size_mb, latency)
    body += panel.axes("median latency vs file size", "file size (MB)", "median latency (ms)")
    body += [panel.point(x, y, k, 5.0) for k, x, y in zip(labels, size_mb, latency)]
    width = PANEL_W * panels
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{PANEL_H}" '
            f'viewBox="0 0 {width} {PANEL_H}" font-family="sans-serif" font-size="11">'
            f'<rect width="{width}" height="{PANEL_H}" fill="white"/>' + "".join(body) + "</svg>\n")



def training_svg(history: Sequence[Mapping]) -> str:
    """The SVG text of the learning curves of a training ``history`` (one dict per epoch): loss, and accuracy (or
    agreement with the teacher), training and validation, per epoch."""
    epochs = [float(h["epoch"]) for h in history]
    panels = []
    for title, keys in (("loss per epoch", ("loss", "val_loss")),
                        ("top-1 per epoch", ("accuracy", "val_accuracy"))):
        keys = tuple(k if any(h.get(k) is not None for h in history) else k.replace("accuracy", "agreement")
                     for k in keys)
        series = [(k, [(e, float(h[k])) for e, h in zip(epochs, history) if h.get(k) is not None]) for k in keys]
        series = [(k, pts) for k, pts in series if pts]
        if series:
            panels.append((title, series))
    body: list[str] = []
    colors = {0: "#1f77b4", 1: "#d62728"}
    for i, (title, series) in enumerate(panels):
        xs = epochs if len(epochs) > 1 else [epochs[0] - 0.5, epochs[0] + 0.5]
        ys = [y for _, pts in series for _, y in pts]
        panel = _Panel(PANEL_W * i, xs, ys)
        body += panel.axes(title, "epoch", title.split(" ")[0])
        for j, (key, pts) in enumerate(series):
            color = colors[j % 2]
            coords = " ".join(f"{panel.px(x):.1f},{panel.py(y):.1f}" for x, y in pts)
            body.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>')
            body += [f'<circle cx="{panel.px(x):.1f}" cy="{panel.py(y):.1f}" r="3" fill="{color}"/>'
                     for x, y in pts]
            label = ("validation " if key.startswith("val_") else "training ") + key.removeprefix("val_")
            body.append(f'<text x="{PANEL_W * i + LEFT + 8}" y="{TOP + 16 + 14 * j}" fill="{color}">'
                        f"{escape(label)}</text>")
    width = PANEL_W * max(1, len(panels))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{PANEL_H}" '
            f'viewBox="0 0 {width} {PANEL_H}" font-family="sans-serif" font-size="11">'
            f'<rect width="{width}" height="{PANEL_H}" fill="white"/>' + "".join(body) + "</svg>\n")
