"""Learning rate per step: a linear warm-up from 0 to the peak, then cosine decay to 0 (or the peak held).

>>> [round(learning_rate(s, peak=0.1, warmup=2, total=10, cosine=True), 4) for s in (0, 1, 2, 6, 9)]
[0.05, 0.1, 0.1, 0.0345, 0.0]
"""
from __future__ import annotations

import math


def learning_rate(step: int, *, peak: float, warmup: int, total: int, cosine: bool) -> float:
    """The rate used by step ``step`` (0-based; what the optimizer applies on its ``step + 1``-th update)."""
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    if not cosine:
        return peak
    span = max(total - warmup - 1, 1)
    done = min(step - warmup, span) / span
    return peak * 0.5 * (1.0 + math.cos(math.pi * done))


def make_schedule(*, peak: float, warmup: int, total: int, cosine: bool):
    """The same rule as :func:`learning_rate`, as a tf_keras ``LearningRateSchedule`` driven by the optimizer's
    step counter (restored with the optimizer, so a resumed run continues on the same curve)."""
    from edgeopt._tf import keras, tf

    tf_, k = tf(), keras()

    class WarmupCosine(k.optimizers.schedules.LearningRateSchedule):
        def __init__(self, peak, warmup, total, cosine):
            self.peak, self.warmup, self.total, self.cosine = float(peak), int(warmup), int(total), bool(cosine)

        def __call__(self, step):
            step = tf_.cast(step, tf_.float32)
            peak = tf_.constant(self.peak, tf_.float32)
            warm = peak * (step + 1.0) / float(max(self.warmup, 1))
            if self.cosine:
                span = float(max(self.total - self.warmup - 1, 1))
                done = tf_.minimum(tf_.maximum(step - self.warmup, 0.0), span) / span
                after = peak * 0.5 * (1.0 + tf_.cos(math.pi * done))
            else:
                after = peak
            return tf_.where(step < float(self.warmup), warm, after) if self.warmup else after

        def get_config(self):
            return {"peak": self.peak, "warmup": self.warmup, "total": self.total, "cosine": self.cosine}

    return WarmupCosine(peak, warmup, total, cosine)
