"""The mutable state of one run that stages share: work folder, data, warnings, the artifacts made so far.

Artifacts stay immutable; the context only caches what is expensive to redo (decoded calibration samples) and
collects what the report needs (warnings, the history of artifacts).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .artifact import Artifact
from .frontends.spec import TensorSpec
from .params import DataParams

if TYPE_CHECKING:  # the data package imports PIL; the context is imported before any data is read
    from .data.labels import Labels

RANDOM_SAMPLES = 64


@dataclass(frozen=True)
class Samples:
    """Calibration and held-back samples, one array per model input, in the original model's layout."""

    calib: tuple[np.ndarray, ...]
    holdout: tuple[np.ndarray, ...]
    source: str  # the data path, or "random"
    labels: Labels | None = None  # labels of the held-back samples (same order), when the data has labels

    @property
    def is_random(self) -> bool:
        return self.source == "random"


@dataclass(frozen=True)
class Evaluation:
    """Labeled samples for accuracy: one array per model input (original layout) and one label per sample."""

    inputs: tuple[np.ndarray, ...]
    labels: np.ndarray
    source: str  # the data path
    labels_source: str  # the label file, or the class-folder root
    split: str  # "val" (every --val sample) or "held-back" (the held-back split of --calib)
    classes: tuple[str, ...] = ()  # class folder names, sorted, when the labels come from class folders
    total: int = 0  # samples the data source was drawn from (held-back: the --calib samples read)
    description: str = ""  # how the samples were chosen, when the split says too little

    @property
    def described(self) -> str:
        if self.description:
            return self.description
        if self.split == "val":
            return f"all {len(self.labels)} samples of --val `{self.source}`"
        return (f"the {len(self.labels)} samples held back from calibration (a seeded split of the {self.total} "
                f"--calib samples read from `{self.source}`)")


@dataclass(frozen=True)
class TrainingSet:
    """The ``--data`` samples split for training: which indices train, which validate, and their labels."""

    source: str
    count: int
    labels: Labels | None  # one per sample of the source
    train: np.ndarray  # indices into the source
    val: np.ndarray  # the held-back indices (empty when --val is given or val_split is 0)
    val_split: float
    seed: int

    @property
    def described(self) -> str:
        return (f"the {len(self.val)} samples held back from training (a {self.val_split:g} split of the "
                f"{self.count} --data samples of `{self.source}`, seed {self.seed})")


@dataclass
class Context:
    workdir: Path
    data: DataParams = field(default_factory=DataParams)
    history: list[Artifact] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    quiet: bool = False
    split: tuple[float, int] = (0.1, 0)  # (val_split, seed) of the run's first training stage
    checkpoint_root: Path | None = None  # default checkpoint folder of the training stages (beside the output)
    chief: bool = True  # False on a multi-worker run's other workers: they write no output
    _samples: Samples | None = None
    _evaluation: tuple[Evaluation | None] | None = None
    _training: TrainingSet | None = None

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

            given = self.data.calib or self.data.data
            what = f"reading {Path(given).name}" if given else "drawing random inputs (no --calib)"
            with status(what, step="data"):
                self._samples = self._load(specs)
        return self._samples

    def _load(self, specs: Sequence[TensorSpec]) -> Samples:
        from . import data as D

        pre = self.preprocess()
        if self.data.calib is None and self.data.data is not None and len(specs) == 1:
            # no --calib: a seeded pick of the training part of --data (never of its validation split)
            training = self.training(specs[0])
            pick = D._pick(len(training.train), limit=self.data.calib_samples, seed=0)
            arrays = [self.open_training(specs[0]).read(training.train[pick])]
            source = str(self.data.data)
        elif self.data.calib is None:
            arrays = [D.random_samples(s, RANDOM_SAMPLES, preprocess=pre, seed=i) for i, s in enumerate(specs)]
            source = "random"
        else:
            arrays = [D.load_samples(self.data.calib, s, preprocess=pre, limit=self.data.calib_samples)
                      for s in specs]
            source = str(self.data.calib)
        n = min(len(a) for a in arrays)
        idx_cal, idx_hold = D.split_holdout(np.arange(n), holdout=self.data.holdout)
        labels = None
        if self.data.calib is not None and len(specs) == 1 and self.data.data is None:
            from .errors import DataError

            try:
                found = D.load_labels(self.data.calib, specs[0], labels=self.data.labels,
                                      limit=self.data.calib_samples)
            except DataError as exc:
                if self.data.labels is not None:
                    raise
                # labels the data seemed to carry (class folders, an .npz 'y') but nobody asked for: calibrate anyway
                self.warn(f"accuracy not measured: {exc.message}")
                found = None
            if found is not None:
                labels = D.Labels(found.values[idx_hold], found.source, found.classes)
        return Samples(
            calib=tuple(a[idx_cal] for a in arrays),
            holdout=tuple(a[idx_hold] for a in arrays),
            source=source,
            labels=labels,
        )

    def open_training(self, spec: TensorSpec):
        """The ``--data`` samples for ``spec``, read on demand (:class:`edgeopt.data.source.SampleSource`)."""
        from .data.source import open_source
        from .errors import DataError

        if self.data.data is None:
            raise DataError("this stage trains, and needs training data.",
                            hint="give --data DATA (an image folder with one subfolder per class, an idx file or "
                                 ".npy/.npz) and, unless the data carries them, --labels FILE")
        return open_source(self.data.data, spec, preprocess=self.preprocess())

    def training(self, spec: TensorSpec) -> TrainingSet:
        """The split of ``--data`` (once per run): every sample trains when ``--val`` is given, else a seeded
        ``val_split`` is held back for validation (and for the report's accuracy)."""
        if self._training is None:
            from . import data as D

            source = self.open_training(spec)
            labels = D.source_labels(self.data.data, self.data.labels, count=lambda: len(source))
            val_split, seed = self.split
            everything = np.arange(len(source))
            if self.data.val is not None or val_split == 0:
                train, val = everything, everything[:0]
            else:
                n_val = max(1, int(round(val_split * len(source))))
                if n_val >= len(source):
                    from .errors import DataError

                    raise DataError(f"{self.data.data}: {len(source)} samples are too few to hold back {n_val} "
                                    "for validation.", hint="give more data, --val DATA, or --val-split 0")
                held = np.zeros(len(source), bool)
                held[np.random.default_rng([seed, 1]).choice(len(source), size=n_val, replace=False)] = True
                train, val = everything[~held], everything[held]
            self._training = TrainingSet(str(self.data.data), len(source), labels, train, val, val_split, seed)
        return self._training

    def evaluation(self, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> Evaluation | None:
        """Load (once) and check the labeled evaluation data: every sample of ``--val``, else the held-back split
        of ``--calib`` when it has labels; None when there are no labels. Bad labels are a DataError."""
        if self._evaluation is None:
            self._evaluation = (self._load_evaluation(inputs, outputs),)
        return self._evaluation[0]

    def _load_evaluation(self, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> Evaluation | None:
        from . import data as D
        from .accuracy import classifier_output
        from .console import status
        from .errors import DataError

        d = self.data
        asked = d.val is not None or d.labels is not None
        if d.val is None and d.calib is None and d.data is None:
            return None
        if len(inputs) != 1:
            if asked:
                raise DataError(f"accuracy needs a model with one input; this one has {len(inputs)}.")
            return None
        if d.val is not None:
            with status(f"reading {Path(d.val).name}", step="data"):
                x = D.load_samples(d.val, inputs[0], preprocess=self.preprocess(), limit=None)
                labels = D.load_labels(d.val, inputs[0], labels=d.val_labels, limit=None)
            if labels is None:
                raise DataError(f"{d.val}: has no labels, so accuracy cannot be measured on it.",
                                hint="give --val-labels FILE (idx, .npy, .npz 'y'), or a folder with one subfolder "
                                     "per class")
            ev = Evaluation((x,), labels.values, d.val, labels.source, "val", labels.classes, len(x))
        elif d.data is not None:
            training = self.training(inputs[0])
            if training.labels is None or len(training.val) == 0:
                return None
            with status(f"reading the {len(training.val)} validation samples of {Path(d.data).name}", step="data"):
                x = self.open_training(inputs[0]).read(training.val)
            ev = Evaluation((x,), training.labels.values[training.val], d.data, training.labels.source,
                            "held-back-train", training.labels.classes, training.count)
            ev = _with_description(ev, training.described)
        else:
            samples = self.samples(inputs)
            if samples.labels is None or len(samples.labels.values) == 0:  # no labels, or --holdout 0
                return None
            ev = Evaluation(samples.holdout, samples.labels.values, samples.source, samples.labels.source,
                            "held-back", samples.labels.classes, len(samples.calib[0]) + len(samples.holdout[0]))
        chosen = classifier_output(outputs)
        if chosen is None:
            if not asked:
                return None  # class folders given for calibration only, to a model that is no classifier
            shapes = ", ".join(f"{s.name} {list(s.onnx_shape)}" for s in outputs)
            raise DataError(f"labels were given but the model has no classifier output (outputs: {shapes}).",
                            hint="accuracy needs a single output, or a 2-D [N, classes] output")
        index, _ = chosen
        try:
            D.check_classes(D.Labels(ev.labels, ev.labels_source, ev.classes), classes=_width(outputs[index]),
                            output=outputs[index].name)
        except DataError as exc:
            if asked:
                raise
            self.warn(f"accuracy not measured: the labels --calib carries do not fit the model ({exc.message})")
            return None
        return ev


def _with_description(ev: Evaluation, text: str) -> Evaluation:
    import dataclasses

    return dataclasses.replace(ev, description=text)


def _width(spec: TensorSpec) -> int:
    """The number of classes of a classifier output (0 when dynamic)."""
    dims = [int(d) for d in spec.onnx_shape[1:]]
    return 0 if any(d <= 0 for d in dims) else int(np.prod(dims))
