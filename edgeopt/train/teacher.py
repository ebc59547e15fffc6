"""The original model as a teacher: its outputs are the training targets where there are no labels (and the soft
targets of a kd loss term).

ONNX models run in onnxruntime (the same session the parity check uses), in batches; a model exported with a fixed
batch of 1 runs one sample at a time. Keras models run as they are. Outputs come back in the Keras layout, ready to
compare with the trained model's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeopt.frontends.spec import TensorSpec

BATCH = 64


@dataclass
class Teacher:
    """``teacher(x_onnx)`` → one array per model output, Keras layout, float32."""

    source: Path | None  # the ONNX file, or None for a Keras teacher
    model: Any  # the Keras teacher (None for ONNX)
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    _step: int | None = None

    @property
    def name(self) -> str:
        return "onnxruntime" if self.source is not None else "Keras"

    def __call__(self, x_onnx: np.ndarray) -> list[np.ndarray]:
        if self.source is None:  # in batches: a whole validation set (with hint feature maps) at once may not fit
            x = self.inputs[0].to_keras(x_onnx)
            parts = []
            for s in range(0, len(x), BATCH):
                outs = self.model(x[s:s + BATCH], training=False)
                parts.append([np.asarray(o, np.float32) for o in (outs if isinstance(outs, (list, tuple))
                                                                   else [outs])])
            return [np.concatenate(column, axis=0) for column in zip(*parts)]
        from edgeopt.frontends.parity import reference_session

        sess = reference_session(self.source)
        feed = self.inputs[0].name
        x = np.asarray(x_onnx, np.float32)
        if self._step is None and len(x) < 2:  # one sample tells nothing about the batch size
            return self._run(sess, feed, x, 1)
        if self._step is None:
            try:
                sess.run(None, {feed: x[:2]})
                self._step = BATCH
            except Exception:  # a fixed batch of 1
                self._step = 1
        return self._run(sess, feed, x, self._step)

    def _run(self, sess, feed: str, x: np.ndarray, step: int) -> list[np.ndarray]:
        parts = [sess.run(None, {feed: x[s:s + step]}) for s in range(0, len(x), step)]
        return [spec.to_keras(np.concatenate([p[i] for p in parts], axis=0).astype(np.float32))
                for i, spec in enumerate(self.outputs)]


def teacher_for(meta: dict, model) -> Teacher:
    """The teacher of an imported artifact: onnxruntime on its ONNX source, else the Keras model given."""
    onnx = meta.get("source_format") == "onnx"
    return Teacher(Path(meta["source"]) if onnx else None, None if onnx else model,
                   tuple(meta["inputs"]), tuple(meta["outputs"]))


def teacher_table(teacher: Teacher, read, indices: Sequence[int], *, count: int, workdir: Path,
                  progress=None) -> list[np.ndarray]:
    """The teacher's outputs for the samples ``indices`` of a source of ``count`` samples, computed once, in
    batches, into arrays indexed by sample (memory-mapped in ``workdir`` beyond 1 GiB)."""
    indices = np.asarray(indices, np.int64)
    tables: list[np.ndarray] = []
    chunks = range(0, len(indices), 4 * BATCH)
    for start in (progress(chunks) if progress else chunks):
        part = indices[start:start + 4 * BATCH]
        outs = teacher(read(part))
        if not tables:
            for k, o in enumerate(outs):
                shape = (count, *o.shape[1:])
                if np.prod(shape) * 4 > 1 << 30:
                    tables.append(np.lib.format.open_memmap(workdir / f"teacher_{k}.npy", mode="w+",
                                                            dtype=np.float32, shape=shape))
                else:
                    tables.append(np.zeros(shape, np.float32))
        for table, o in zip(tables, outs):
            table[part] = o
    return tables
