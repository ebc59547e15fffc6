"""The ``train.finetune`` stage: fine-tune the imported model on labeled data, or on its own outputs."""
from __future__ import annotations

from edgeopt.artifact import Artifact
from edgeopt.context import Context
from edgeopt.params import TrainParams
from edgeopt.registry import stage


@stage("train.finetune", TrainParams)
def finetune(artifact: Artifact, params: TrainParams, ctx: Context) -> Artifact:
    """Fine-tune a Keras model on --data (labels, or the original model's outputs as targets)."""
    from edgeopt.analyze.keras_summary import keras_summary
    from edgeopt.stages import _keras_source, _save_keras

    from .setup import checkpoint_folder, needs_teacher, objective_for, prepare_data
    from .teacher import teacher_for
    from .trainer import train

    model = _keras_source(artifact, "train.finetune")
    meta = artifact.meta
    split = ctx.training(meta["inputs"][0]) if len(meta["inputs"]) == 1 else None
    has_labels = split is not None and split.labels is not None
    teacher = teacher_for(meta, model)
    want_teacher = needs_teacher(params, has_labels=has_labels)
    objective = objective_for(model, meta, params, has_labels=has_labels)
    if params.patience and ctx.data.val is None and has_labels:
        ctx.warn("early stopping chooses the best epoch on the validation split that the report's accuracy is "
                 "also measured on, so that accuracy is optimistic; give --val DATA for an independent figure")
    data = prepare_data(ctx, meta, params, teacher=teacher, needs_teacher=want_teacher)
    result = train(model, data, params, objective=objective,
                   checkpoint_dir=checkpoint_folder(ctx, params, "train.finetune"), title="fine-tuning")
    ctx.chief = ctx.chief and result.chief
    path = ctx.workdir / f"{artifact.path.stem}_finetuned.keras"
    _save_keras(result.model, path)
    summary = keras_summary(result.model)
    training = {**result.summary, "data": data.info, "history": result.history}
    return Artifact(path=path, format="keras", model=result.model,
                    metrics={**artifact.metrics, "params": summary["params"], "macs": summary["macs"],
                             "training": training},
                    meta=dict(meta), lineage=artifact.lineage)
