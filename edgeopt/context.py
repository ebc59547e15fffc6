"""The mutable state of one run that stages share: work folder, data, warnings, the artifacts made so far.

Artifacts stay immutable; the context only caches what is expensive to redo (decoded calibration samples) and
collects what the report needs (warnings, the history of artifacts).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .artifact import Artifact
from .frontends.spec import TensorSpec
from .params import DataParams

RANDOM_SAMPLES = 64


@dataclass(frozen=True)
class Samples:
    """Calibration and held-back samples, one array per model input, in the original model's layout."""

    calib: tuple[np.ndarray, ...]
    holdout: tuple[np.ndarray, ...]
    source: str  # the data path, or "random"

    @property
    def is_random(self) -> bool:
        return self.source == "random"


@dataclass
class Context:
    workdir: Path
    data: DataParams = field(default_factory=DataParams)
    history: list[Artifact] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    quiet: bool = False
    _samples: Samples | None = None

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            if not self.quiet:
                from .console import warn

                warn(message)

    def preprocess(self):
        from .data import Preprocess

        d = self.data
        size = None if not d.size else (d.size[0], d.size[-1])
        stated = tuple(k for k in ("value_range", "mean", "std") if getattr(d, k))
        return Preprocess(size=size, mean=tuple(d.mean or (0.0,)), std=tuple(d.std or (1.0,)),
                          channel_order=d.channel_order, value_range=tuple(d.value_range or (0.0, 1.0)),
                          resize=d.resize, stated=stated)

    def samples(self, specs: Sequence[TensorSpec]) -> Samples:
        """Load (once) and split the run's data; random samples in the value range when no data was given."""
        if self._samples is None:
            from .console import status

            what = f"reading {Path(self.data.calib).name}" if self.data.calib else "drawing random inputs (no --calib)"
            with status(what, step="data"):
                self._samples = self._load(specs)
        return self._samples

    def _load(self, specs: Sequence[TensorSpec]) -> Samples:
        from . import data as D

        pre = self.preprocess()
        if self.data.calib is None:
            arrays = [D.random_samples(s, RANDOM_SAMPLES, preprocess=pre, seed=i) for i, s in enumerate(specs)]
            source = "random"
        else:
            arrays = [D.load_samples(self.data.calib, s, preprocess=pre, limit=self.data.calib_samples)
                      for s in specs]
            source = str(self.data.calib)
        n = min(len(a) for a in arrays)
        idx_cal, idx_hold = D.split_holdout(np.arange(n), holdout=self.data.holdout)
        return Samples(
            calib=tuple(a[idx_cal] for a in arrays),
            holdout=tuple(a[idx_hold] for a in arrays),
            source=source,
        )
