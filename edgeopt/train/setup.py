"""From a run's context to what :func:`edgeopt.train.trainer.train` takes: the training data with its targets,
the validation set, the objective and the checkpoint folder. Every training stage prepares its run here."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeopt.errors import DataError, RecipeError
from edgeopt.params import TrainParams

from . import losses as L
from .data import BatchReader, TrainData, ValData
from .trainer import Objective


def prepare_data(ctx, meta: dict, params: TrainParams, *, teacher, needs_teacher: bool) -> TrainData:
    """The run's ``--data`` as a :class:`TrainData`: labels from ``--labels`` or the data itself, teacher outputs
    computed once (or per batch when augmenting), validation on ``--val`` or the held-back split."""
    from edgeopt.console import track
    from edgeopt.data import check_classes, image_geometry, load_labels, load_samples

    inputs, outputs = meta["inputs"], meta["outputs"]
    if len(inputs) != 1:
        raise DataError(f"training reads one input per sample; this model has {len(inputs)} inputs "
                        f"({', '.join(s.name for s in inputs)}).")
    spec = inputs[0]
    split = ctx.training(spec)
    source = ctx.open_training(spec)
    labels = split.labels
    from edgeopt.accuracy import classifier_output

    chosen = classifier_output(outputs)
    if labels is not None and chosen is not None:
        width = int(np.prod([d for d in outputs[chosen[0]].keras_shape[1:]]))
        check_classes(labels, classes=width if width > 0 else 0, output=outputs[chosen[0]].name)
    layout = "NCHW"
    if params.augment:
        layout = image_geometry(spec, preprocess=ctx.preprocess()).layout  # augmentations need an image input
    reader = BatchReader(source, spec, labels.values if labels is not None else None, augment=params.augment,
                         padding=params.crop_padding, seed=params.seed, layout=layout)
    if needs_teacher:
        if params.augment:
            reader.teacher = teacher  # the teacher sees each augmented batch
        else:
            from .teacher import teacher_table

            indices = np.concatenate([split.train, split.val])
            reader.teacher_tables = teacher_table(
                teacher, source.read, indices, count=len(source), workdir=ctx.workdir,
                progress=lambda chunks: track(chunks, f"teacher outputs ({teacher.name}) for {len(indices)} "
                                                      "training samples"))
    val = None
    if ctx.data.val is not None:
        with _status(f"reading --val {Path(ctx.data.val).name}"):
            x = load_samples(ctx.data.val, spec, preprocess=ctx.preprocess(), limit=None)
            found = load_labels(ctx.data.val, spec, labels=ctx.data.val_labels, limit=None)
        val = ValData(spec.to_keras(x).astype(np.float32), None if found is None else found.values,
                      teacher(x) if needs_teacher else None, f"all {len(x)} samples of --val `{ctx.data.val}`")
        if found is None and not needs_teacher:
            raise DataError(f"{ctx.data.val}: has no labels to validate on.", hint="give --val-labels FILE")
    elif len(split.val):
        x = source.read(split.val)
        val = ValData(spec.to_keras(x).astype(np.float32),
                      None if labels is None else labels.values[split.val],
                      [t[split.val] for t in reader.teacher_tables] if reader.teacher_tables is not None
                      else (teacher(x) if needs_teacher else None), split.described)
    info = {"source": split.source, "samples": int(len(split.train)), "labels": None if labels is None
            else labels.source, "classes": list(labels.classes) if labels is not None else [],
            "targets": "labels" if labels is not None else f"the original model's outputs ({teacher.name})",
            "validation": None if val is None else val.described, "augment": list(params.augment),
            # preprocessing is part of the data: a resume with other normalization is another run
            "preprocess": {k: getattr(ctx.data, k) for k in ("size", "mean", "std", "channel_order", "value_range",
                                                               "resize")}}
    if labels is not None and needs_teacher:
        info["targets"] = f"labels and the original model's outputs ({teacher.name})"
    return TrainData(reader, split.train, val, info)


def _status(message: str):
    from edgeopt.console import status

    return status(message, step="data")


def objective_for(model, meta: dict, params: TrainParams, *, has_labels: bool) -> Objective:
    """The loss terms (the user's, else the default for the data), the classifier output they act on, and whether
    that output is already a softmax (then its log serves as logits)."""
    from edgeopt.accuracy import classifier_output

    outputs = meta["outputs"]
    chosen = classifier_output(outputs)
    terms = L.parse_loss(params.loss) or L.default_loss(has_labels=has_labels, has_classifier=chosen is not None)
    names = [n for n, _ in terms]
    if "ce" in names and not has_labels:
        raise DataError("the ce loss term needs labels, and the training data has none.",
                        hint="give --labels FILE (or class folders), or train on the original model's outputs: "
                             "--loss kd (a classifier) or --loss mse")
    if chosen is None and any(n in ("ce", "kd") for n in names):
        raise RecipeError("ce and kd loss terms need a classifier output (a single output, or a 2-D [N, classes] "
                          f"one); this model's outputs are {', '.join(f'{s.name} {list(s.onnx_shape)}' for s in outputs)}",
                          hint="use --loss mse (the original model's outputs as targets)")
    index = chosen[0] if chosen is not None else None
    classes = 0
    probabilities = False
    if index is not None:
        classes = int(np.prod(model.outputs[index].shape[1:]))
        probabilities = _is_softmax(model, index)
    return Objective(terms, index, classes, probabilities, params.temperature, params.label_smoothing)


def _is_softmax(model, index: int) -> bool:
    """Whether the model's output ``index`` is produced by a softmax (a Softmax layer or activation)."""
    history = getattr(model.outputs[index], "_keras_history", None)
    if history is None:
        return False
    layer = history.layer
    name = type(layer).__name__
    activation = getattr(layer, "activation", None)
    return name == "Softmax" or getattr(activation, "__name__", "") == "softmax"


def needs_teacher(params: TrainParams, *, has_labels: bool) -> bool:
    terms = L.parse_loss(params.loss)
    if not terms:
        return not has_labels
    return any(n in ("kd", "mse") for n, _ in terms)


def checkpoint_folder(ctx, params: TrainParams, stage_name: str, part: str | None = None) -> Path:
    """``--checkpoint-dir``, else the run's folder beside the output (one subfolder per training stage), else
    the run's work folder (no resume possible); ``part`` names a subfolder for a stage that trains several times
    (one per pruning step)."""
    if params.checkpoint_dir:
        return Path(params.checkpoint_dir) / part if part else Path(params.checkpoint_dir)
    if ctx.checkpoint_root is not None:
        return ctx.checkpoint_root / stage_name / part if part else ctx.checkpoint_root / stage_name
    if params.resume:
        raise RecipeError("--resume needs a checkpoint folder", hint="give --checkpoint-dir DIR, or an output path")
    return ctx.workdir / "checkpoints" / stage_name / (part or "")
