"""The ``prune.structured`` stage: remove whole channels to a MACs or channel target, fine-tuning through the
shared trainer after each step (on labels, or on the original model's outputs)."""
from __future__ import annotations

from edgeopt.artifact import Artifact
from edgeopt.context import Context
from edgeopt.params import PruneParams
from edgeopt.registry import stage


@stage("prune.structured", PruneParams)
def prune_structured(artifact: Artifact, params: PruneParams, ctx: Context) -> Artifact:
    """Structured channel pruning to a MACs or channel target, with fine-tuning after each step."""
    from edgeopt.analyze.keras_summary import keras_summary
    from edgeopt.stages import _keras_source, _save_keras

    from .run import prune_in_steps

    model = _keras_source(artifact, "prune.structured")
    result = prune_in_steps(model, artifact.meta, params, ctx)
    path = ctx.workdir / f"{artifact.path.stem}_pruned.keras"
    _save_keras(result.model, path)
    summary = keras_summary(result.model)
    metrics = {**artifact.metrics, "params": summary["params"], "macs": summary["macs"], "pruning": result.report}
    if result.training is not None:
        metrics["training"] = result.training
    return Artifact(path=path, format="keras", model=result.model, metrics=metrics, meta=dict(artifact.meta),
                    lineage=artifact.lineage)
