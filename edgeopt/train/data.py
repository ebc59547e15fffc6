"""What the trainer trains on: a streamed training set (read a batch at a time) and an in-memory validation set,
each with its labels and/or the teacher's outputs as targets.

The batch plan is fixed by the seed: epoch ``e`` visits the training samples in the order of
``default_rng([seed, e]).permutation``, cut into global batches (the last partial batch is dropped, so every step
sees exactly ``batch_size`` samples on every strategy).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from edgeopt.data.source import SampleSource
from edgeopt.frontends.spec import TensorSpec

from .augment import augment_batch


@dataclass
class BatchReader:
    """Reads training batches: ``read(epoch, indices)`` → (Keras input, labels (-1: none), teacher outputs...)."""

    source: SampleSource
    spec: TensorSpec  # the model input
    labels: np.ndarray | None  # one per source sample
    teacher: Callable | None = None  # x_onnx -> outputs (Keras layout), run on the augmented batch
    teacher_tables: list[np.ndarray] | None = None  # precomputed teacher outputs by sample (no augmentation)
    augment: tuple[str, ...] = ()
    padding: int = 4
    seed: int = 0
    layout: str = "NCHW"
    error: Exception | None = field(default=None, repr=False)  # what failed inside the tf.data pipeline

    def read(self, epoch: int, indices: Sequence[int]) -> tuple[np.ndarray, ...]:
        try:
            return self._read(epoch, indices)
        except Exception as exc:  # tf.data wraps it in an OpError; the trainer raises this one instead
            self.error = exc
            raise

    def _read(self, epoch: int, indices: Sequence[int]) -> tuple[np.ndarray, ...]:
        idx = np.asarray(indices, np.int64)
        x = self.source.read(idx)
        if self.augment:
            x = augment_batch(x, idx, epoch=epoch, seed=self.seed, ops=self.augment, layout=self.layout,
                              padding=self.padding)
        labels = self.labels[idx] if self.labels is not None else np.full(len(idx), -1, np.int64)
        if self.teacher_tables is not None:
            targets = [t[idx] for t in self.teacher_tables]
        elif self.teacher is not None:
            targets = self.teacher(x)
        else:
            targets = []
        return (self.spec.to_keras(x).astype(np.float32), labels.astype(np.int64),
                *[np.asarray(t, np.float32) for t in targets])


@dataclass
class ValData:
    """The validation set, in memory: Keras-layout inputs with labels and/or teacher outputs."""

    x: np.ndarray
    labels: np.ndarray | None
    targets: list[np.ndarray] | None
    described: str


@dataclass
class TrainData:
    reader: BatchReader
    indices: np.ndarray  # the training samples (indices into the source)
    val: ValData | None
    info: dict = field(default_factory=dict)  # what the report says about the data


def epoch_plan(indices: np.ndarray, *, epoch: int, seed: int, batch_size: int) -> np.ndarray:
    """[steps, batch_size] sample indices of one epoch (a seeded permutation, the last partial batch dropped).

    >>> epoch_plan(np.arange(10), epoch=0, seed=0, batch_size=4).shape
    (2, 4)
    """
    order = np.random.default_rng([int(seed), int(epoch)]).permutation(np.asarray(indices, np.int64))
    steps = len(order) // batch_size
    return order[: steps * batch_size].reshape(steps, batch_size)


def pipeline_rows(plan: np.ndarray, *, pipeline: int, pipelines: int, replicas: int) -> np.ndarray:
    """The rows one input pipeline feeds: its share of each global batch, cut into one batch per local replica.

    Replica batches of step ``s`` follow each other (what ``distribute_datasets_from_function`` hands to the local
    replicas in turn). With 1 pipeline and 2 replicas, a batch [0..7] becomes rows [0..3], [4..7].

    >>> pipeline_rows(np.arange(8).reshape(1, 8), pipeline=1, pipelines=2, replicas=2).tolist()
    [[4, 5, 6, 7]]
    """
    steps, batch = plan.shape
    share = batch // pipelines
    local = replicas // pipelines
    mine = plan[:, pipeline * share:(pipeline + 1) * share]
    return mine.reshape(steps * local, share // local)


def from_arrays(x: np.ndarray, labels: np.ndarray | None = None, *, val: tuple | None = None,
                teacher_outputs: Sequence[np.ndarray] | None = None) -> TrainData:
    """Training data from in-memory arrays already in the model's (Keras) input layout, for the Python API.

    ``teacher_outputs`` (one array per model output, Keras layout) are the targets of kd/mse terms; ``val`` is
    ``(x, labels)`` or ``(x, labels, teacher_outputs)``.

    >>> data = from_arrays(np.zeros((64, 8, 8, 3), np.float32), np.zeros(64, np.int64))
    >>> len(data.indices)
    64
    """
    from edgeopt.data import Preprocess
    from edgeopt.data.source import SampleSource
    from pathlib import Path

    x = np.asarray(x)
    spec = TensorSpec("x", (1, *x.shape[1:]), (1, *x.shape[1:]), str(x.dtype), None)
    source = SampleSource(Path("<array>"), spec, Preprocess(), "array", len(x), x)
    tables = None if teacher_outputs is None else [np.asarray(t, np.float32) for t in teacher_outputs]
    reader = BatchReader(source, spec, None if labels is None else np.asarray(labels, np.int64),
                         teacher_tables=tables)
    val_data = None
    if val is not None:
        vx, vy, *vt = val
        val_data = ValData(np.asarray(vx, np.float32), None if vy is None else np.asarray(vy, np.int64),
                           [np.asarray(t, np.float32) for t in vt[0]] if vt else None,
                           f"{len(vx)} validation samples (arrays)")
    info = {"source": "arrays", "samples": int(len(x)), "labels": None if labels is None else "arrays",
            "targets": "labels" if labels is not None else "teacher outputs", "validation": None, "augment": []}
    return TrainData(reader, np.arange(len(x)), val_data, info)
