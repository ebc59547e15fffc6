"""Latency statistics shared by the runner, comparisons and repeatability checks.

``summarize`` is the runner's own function (the runner must stay one file, so it lives there); this module adds
the comparisons between two sets of runs.
"""
from __future__ import annotations

from .runner import latency_stats as summarize

__all__ = ["summarize", "median_ratio", "relative_spread"]


def median_ratio(first, second, /):
    """Ratio of the larger to the smaller median of two results' ``latency_ms`` (1.0 means identical).

    >>> median_ratio({"latency_ms": {"median": 1.0}}, {"latency_ms": {"median": 1.05}})
    1.05
    """
    a, b = first["latency_ms"]["median"], second["latency_ms"]["median"]
    if not a or not b:
        raise ValueError("both results need a positive median latency")
    return max(a, b) / min(a, b)


def relative_spread(values, /):
    """(max - min) / median of per-round medians: how much the rounds of a comparison drifted.

    >>> relative_spread([1.0, 1.1, 0.9])
    0.2
    """
    ordered = sorted(values)
    mid = ordered[len(ordered) // 2] if len(ordered) % 2 else (ordered[len(ordered) // 2 - 1]
                                                                + ordered[len(ordered) // 2]) / 2
    return round((ordered[-1] - ordered[0]) / mid, 12)
