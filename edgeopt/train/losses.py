"""The trainer's loss terms: cross-entropy on labels, soft-target KL at a temperature, MSE to a teacher's outputs,
the relative error of a hint feature map (distillation), and their weighted sum.

Each term returns one loss per example; the trainer divides their sum by the *global* batch size, so one replica
and N replicas of a mirrored strategy compute the same gradient.

>>> parse_loss(("ce=0.3", "kd=0.7"))
(('ce', 0.3), ('kd', 0.7))
>>> parse_loss(("mse",))
(('mse', 1.0),)
"""
from __future__ import annotations

from typing import Sequence

TERMS = ("ce", "kd", "mse")


def parse_loss(items: Sequence[str]) -> tuple[tuple[str, float], ...]:
    """``("ce=0.3", "kd=0.7")`` → ``(("ce", 0.3), ("kd", 0.7))``; a ValueError names a bad term."""
    out: list[tuple[str, float]] = []
    for item in items:
        for part in str(item).split(","):
            name, _, weight = part.strip().partition("=")
            if name not in TERMS:
                raise ValueError(f"unknown loss term {name!r}: choose {', '.join(TERMS)} (e.g. ce=0.3,kd=0.7)")
            try:
                w = float(weight) if weight else 1.0
            except ValueError:
                raise ValueError(f"loss term {part!r}: the weight must be a number") from None
            if w <= 0:
                raise ValueError(f"loss term {part!r}: the weight must be positive")
            if any(n == name for n, _ in out):
                raise ValueError(f"loss term {name!r} is given twice")
            out.append((name, w))
    return tuple(out)


def default_loss(*, has_labels: bool, has_classifier: bool) -> tuple[tuple[str, float], ...]:
    """ce with labels; without them the teacher's outputs are the targets: kd on a classifier, mse otherwise."""
    if has_labels:
        return (("ce", 1.0),)
    return (("kd", 1.0),) if has_classifier else (("mse", 1.0),)


def to_logits(tf, y, probabilities: bool):
    """Scores as logits: a softmax output becomes log-probabilities (softmax(log p) = p, so nothing is lost)."""
    return tf.math.log(tf.clip_by_value(y, 1e-7, 1.0)) if probabilities else y


def cross_entropy(tf, logits, labels, *, classes: int, smoothing: float):
    """Per-example cross-entropy with label smoothing ``smoothing`` (targets (1-s)·onehot + s/classes)."""
    onehot = tf.one_hot(tf.cast(labels, tf.int32), classes, dtype=logits.dtype)
    if smoothing:
        onehot = onehot * (1.0 - smoothing) + smoothing / classes
    return -tf.reduce_sum(onehot * tf.nn.log_softmax(logits, axis=-1), axis=-1)


def soft_kl(tf, logits, teacher_logits, *, temperature: float):
    """Per-example KL(teacher_T || student_T) · T², Hinton's scaling, so the gradient size does not depend on T."""
    t = temperature
    p = tf.nn.softmax(teacher_logits / t, axis=-1)
    log_p = tf.nn.log_softmax(teacher_logits / t, axis=-1)
    log_q = tf.nn.log_softmax(logits / t, axis=-1)
    return tf.reduce_sum(p * (log_p - log_q), axis=-1) * (t * t)


def mse(tf, outputs, targets):
    """Per-example mean squared error, averaged over every output's values and over the outputs."""
    terms = [tf.reduce_mean(tf.reshape(tf.square(o - t), [tf.shape(o)[0], -1]), axis=-1)
             for o, t in zip(outputs, targets)]
    return tf.add_n(terms) / float(len(terms))


def feature_error(tf, features, targets):
    """Per-example squared error of a feature map relative to the target's mean square: scale-free, so one weight
    suits teachers whose features are small or large (1.0 for a zero map, 0.0 for a perfect one)."""
    n = tf.shape(features)[0]
    diff = tf.reduce_mean(tf.reshape(tf.square(features - targets), [n, -1]), axis=-1)
    scale = tf.reduce_mean(tf.reshape(tf.square(targets), [n, -1]), axis=-1)
    return diff / (scale + 1e-6)
