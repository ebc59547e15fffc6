"""Pruning in steps: graph, importance, widths, surgery, then fine-tuning through the shared trainer.

With ``prune_steps`` = n, step s keeps ``prune_macs ** (s/n)`` of the original MACs (or removes
``1 - (1 - prune_ratio) ** (1/n)`` of the channels left), so the model shrinks geometrically and is fine-tuned
``epochs`` epochs after every step. Without ``--data`` only the importance criterion decides, and nothing is
fine-tuned.
"""
from __future__ import annotations

from dataclasses import dataclass

from edgeopt.params import PruneParams

from .graph import build_graph
from .select import choose_macs, choose_ratio, importance, macs_estimator, removed_units
from .surgery import prune_model


@dataclass
class PruneResult:
    model: object
    report: dict
    training: dict | None


def prune_in_steps(model, meta: dict, params: PruneParams, ctx) -> PruneResult:
    from edgeopt.analyze.keras_summary import keras_summary
    from edgeopt.console import status

    base = keras_summary(model)
    if not base["macs"]:
        from edgeopt.errors import RecipeError

        raise RecipeError("the model has no convolution or Dense layer to prune (0 MACs counted)")
    if params.importance == "taylor" and ctx.data.data is None:
        from edgeopt.errors import RecipeError

        raise RecipeError("--importance taylor weighs channels by activation x gradient on training data, and there "
                          "is no --data", hint="give --data (labels optional), or a data-free criterion: l1, l2, bn")
    data, objective = _training(model, meta, params, ctx)
    accuracy = {}
    if data is not None and data.val is not None:
        from edgeopt.train.trainer import evaluate

        accuracy["before_pruning"] = evaluate(model, data.val, objective)
    steps, training = [], None
    floors: dict[str, int] | None = None  # minimum widths from the unpruned model (max_layer_ratio)
    current = model
    for step in range(1, params.prune_steps + 1):
        with status(f"pruning step {step}/{params.prune_steps}", step="pruning"):
            graph = build_graph(current)
            if floors is None:
                import math

                floors = {g.name: int(math.ceil(g.width * (1.0 - params.max_layer_ratio))) for g in graph.groups}
            if params.importance == "taylor":
                from .taylor import taylor_importance

                scores = taylor_importance(graph, data, objective, batch_size=params.batch_size, seed=params.seed)
            else:
                scores = importance(graph, criterion=params.importance)
            summary = keras_summary(current)
            fraction = step / params.prune_steps
            if params.prune_macs:
                target = base["macs"] * params.prune_macs ** fraction
                keep = choose_macs(graph, scores, macs_estimator(graph, summary["macs_by_layer"]), target=target,
                                   max_ratio=params.max_layer_ratio, round_to=params.round_to,
                                   skip=params.skip_layers, floors=floors)
            else:
                ratio = min(1.0 - (1.0 - params.prune_ratio) ** (1.0 / params.prune_steps), params.max_layer_ratio)
                keep = choose_ratio(graph, scores, ratio=ratio, round_to=params.round_to, skip=params.skip_layers)
            removed = removed_units(graph, keep)
            pruned = prune_model(current, graph, removed)
        after = keras_summary(pruned)
        record = {"step": step, "macs_before": summary["macs"], "macs_after": after["macs"],
                  "params_before": summary["params"], "params_after": after["params"],
                  "groups": [{"name": g.name, "layers": list(g.sources), "width": g.width,
                              "kept": len(keep[g.name]) if g.name in keep else g.width,
                              "fixed": g.fixed} for g in graph.groups]}
        if data is not None and data.val is not None:
            from edgeopt.train.trainer import evaluate

            record["after_pruning"] = evaluate(pruned, data.val, objective)
        if data is not None and params.epochs:
            from edgeopt.train.setup import checkpoint_folder
            from edgeopt.train.trainer import train

            result = train(pruned, data, params, objective=objective,
                           checkpoint_dir=checkpoint_folder(ctx, params, "prune.structured", f"step-{step}"),
                           title=f"pruning step {step}/{params.prune_steps}, fine-tuning")
            ctx.chief = ctx.chief and result.chief
            pruned = result.model
            training = {**result.summary, "data": data.info, "history": result.history}
            if result.history and result.history[-1].get("val_loss") is not None:
                record["after_finetuning"] = {k: v for k, v in result.history[-1].items() if k.startswith("val_")}
        steps.append(record)
        current = pruned
    final = keras_summary(current)
    if params.prune_macs and final["macs"] > params.prune_macs * base["macs"]:
        fixed = sum(1 for g in steps[0]["groups"] if g["fixed"])
        ctx.warn(f"pruning: the MACs target was not reached: {100 * final['macs'] / base['macs']:.1f} % of the MACs "
                 f"remain, not {100 * params.prune_macs:g} % ({fixed} channel groups are kept whole and no group "
                 f"loses more than {100 * params.max_layer_ratio:g} % of its channels); the report lists the groups")
    report = {
        "target": {"macs": params.prune_macs or None, "ratio": params.prune_ratio or None},
        "importance": params.importance, "round_to": params.round_to, "steps": steps,
        "macs_before": base["macs"], "macs_after": final["macs"], "macs_ratio": final["macs"] / base["macs"],
        "params_before": base["params"], "params_after": final["params"],
        "layers": [{"layer": name, "macs_before": int(m), "macs_after": int(final["macs_by_layer"].get(name, 0))}
                   for name, m in base["macs_by_layer"].items()],
        "accuracy": accuracy,
        "fine_tuned": data is not None and params.epochs > 0,
        "fixed": [{"group": g["name"], "reason": g["fixed"]} for g in steps[0]["groups"] if g["fixed"]],
    }
    return PruneResult(current, report, training)


def _training(model, meta: dict, params: PruneParams, ctx):
    """The fine-tuning data and objective, or (None, None) without --data (with a warning saying what it costs)."""
    if ctx.data.data is None:
        ctx.warn(f"pruning without --data: channels are chosen by {params.importance} importance alone and the "
                 "pruned model is not fine-tuned, which usually costs much accuracy; give --data (with --labels, or "
                 "unlabeled: the original model's outputs are the targets) to fine-tune")
        return None, None
    from edgeopt.train.setup import needs_teacher, objective_for, prepare_data
    from edgeopt.train.teacher import teacher_for

    split = ctx.training(meta["inputs"][0])
    has_labels = split.labels is not None
    objective = objective_for(model, meta, params, has_labels=has_labels)
    data = prepare_data(ctx, meta, params, teacher=teacher_for(meta, model),
                        needs_teacher=needs_teacher(params, has_labels=has_labels))
    return data, objective
