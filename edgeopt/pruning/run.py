"""Pruning in steps: graph, importance, widths, surgery, then fine-tuning through the shared trainer.

With ``prune_steps`` = n, step s keeps ``prune_macs ** (s/n)`` of the original MACs (or removes
``1 - (1 - prune_ratio) ** (1/n)`` of the channels left), so the model shrinks geometrically and is fine-tuned
``epochs`` epochs after every step. Without ``--data`` only the importance criterion decides, and nothing is
fine-tuned.
With ``prune_latency`` = f, step s keeps ``f ** (s/n)`` of the unpruned model's latency measured on the target
(``latency.py``: a per-layer latency table, widths chosen against it, the result measured).
With ``channels`` (a report.json of an earlier pruning), each step keeps exactly the channels that run kept.
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
    replay = _replay_steps(params.channels, params.prune_steps) if params.channels else None
    latency = _LatencyRun(model, params, ctx) if params.prune_latency and replay is None else None
    for step in range(1, params.prune_steps + 1):
        latency_record = None
        with status(f"pruning step {step}/{params.prune_steps}", step="pruning"):
            graph = build_graph(current)
            if floors is None:
                import math

                floors = {g.name: int(math.ceil(g.width * (1.0 - params.max_layer_ratio))) for g in graph.groups}
            if replay is None and params.importance == "taylor":
                from .taylor import taylor_importance

                scores = taylor_importance(graph, data, objective, batch_size=params.batch_size, seed=params.seed)
            elif replay is None:
                scores = importance(graph, criterion=params.importance)
            summary = keras_summary(current)
            fraction = step / params.prune_steps
            if replay is not None:
                keep = _replayed(graph, replay[step - 1], step)
            elif latency is not None:
                keep, latency_record = latency.choose(current, graph, scores, floors=floors, fraction=fraction)
            elif params.prune_macs:
                target = base["macs"] * params.prune_macs ** fraction
                keep = choose_macs(graph, scores, macs_estimator(graph, summary["macs_by_layer"]), target=target,
                                   max_ratio=params.max_layer_ratio, round_to=params.round_to,
                                   skip=params.skip_layers, floors=floors)
            else:
                ratio = min(1.0 - (1.0 - params.prune_ratio) ** (1.0 / params.prune_steps), params.max_layer_ratio)
                keep = choose_ratio(graph, scores, ratio=ratio, round_to=params.round_to, skip=params.skip_layers)
            removed = removed_units(graph, keep)
            pruned = prune_model(current, graph, removed) if latency_record is None else latency_record.pop("model")
        after = keras_summary(pruned)
        record = {"step": step, "macs_before": summary["macs"], "macs_after": after["macs"],
                  "params_before": summary["params"], "params_after": after["params"],
                  "groups": [{"name": g.name, "layers": list(g.sources), "width": g.width,
                              "kept": len(keep[g.name]) if g.name in keep else g.width,
                              "fixed": g.fixed} for g in graph.groups],
                  "channels": kept_channels(current, graph, removed)}
        if latency_record is not None:
            record["latency"] = latency_record
        if data is not None and data.val is not None:
            from edgeopt.train.trainer import evaluate

            record["after_pruning"] = evaluate(pruned, data.val, objective)
        if data is not None and params.epochs:
            from edgeopt.train.setup import checkpoint_folder
            from edgeopt.train.trainer import train

            if params.restore_bn:
                from .batchnorm import with_batchnorm

                pruned, record["batchnorm_inserted"] = with_batchnorm(
                    pruned, _sample_batches(data, params), reference=current,
                    kept=_kept_outputs(current, graph, removed))

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
    if latency is not None:
        with status("measuring the latency of the unpruned and the pruned model", step="pruning"):
            latency_report = latency.final(current, steps)
        if latency_report["measured_ratio"] > params.prune_latency:
            ctx.warn(f"pruning: the latency target was not reached: {latency_report['measured_ms']:.3f} ms measured "
                     f"after fine-tuning, {100 * latency_report['measured_ratio']:.1f} % of the unpruned "
                     f"{latency_report['before_ms']:.3f} ms, not {100 * params.prune_latency:g} %")
    else:
        from edgeopt.errors import EdgeoptError

        try:
            with status("measuring the latency of the unpruned and the pruned model", step="pruning"):
                latency_report = _before_after(model, current, params, ctx)
        except (EdgeoptError, OSError, RuntimeError, ValueError) as exc:  # the pruning stands without it
            latency_report = None
            ctx.warn(f"pruning: the latency before and after could not be measured: {exc}")
    report = {
        "target": {"macs": params.prune_macs or None, "ratio": params.prune_ratio or None,
                   "latency": params.prune_latency or None, "replay": params.channels},
        "importance": params.importance, "round_to": params.round_to, "steps": steps,
        "macs_before": base["macs"], "macs_after": final["macs"], "macs_ratio": final["macs"] / base["macs"],
        "params_before": base["params"], "params_after": final["params"],
        "layers": [{"layer": name, "macs_before": int(m), "macs_after": int(final["macs_by_layer"].get(name, 0)),
                    "params_before": _params(model, name), "params_after": _params(current, name)}
                   for name, m in base["macs_by_layer"].items()],
        "accuracy": accuracy,
        "fine_tuned": data is not None and params.epochs > 0,
        "fixed": [{"group": g["name"], "reason": g["fixed"]} for g in steps[0]["groups"] if g["fixed"]],
    }
    report["latency"] = latency_report
    return PruneResult(current, report, training)


def _sample_batches(data, params: PruneParams, batches: int = 8) -> list:
    """A seeded pick of training batches (the inputs only), for the BatchNorm statistics."""
    import numpy as np

    order = np.random.default_rng([params.seed, 7]).permutation(data.indices)
    size = max(1, min(params.batch_size, len(order)))
    return [data.reader.read(0, order[b * size:(b + 1) * size])[0]
            for b in range(min(batches, max(1, len(order) // size)))]


def _params(model, name: str) -> int:
    try:
        return int(model.get_layer(name).count_params())
    except ValueError:
        return 0


def kept_channels(model, graph, removed) -> dict[str, list[int]]:
    """Per conv or Dense layer that loses output channels, the indices of the channels it keeps (what a replay
    needs: the same indices of the same layers)."""
    from .graph import _outbound, _tensor_name

    out = {}
    for g in graph.groups:
        for name in g.sources:
            tensor = _tensor_name(_outbound(model.get_layer(name), model)[0])
            kept = graph.kept(tensor, set(removed))
            if len(kept) < graph.widths[tensor]:
                out[name] = [int(i) for i in kept]
    return out


def _kept_outputs(model, graph, removed) -> dict[str, list[int]]:
    """Per conv layer of ``model``, the indices of its output channels that the pruning keeps."""
    from .batchnorm import CONVS
    from .graph import _outbound, _tensor_name

    gone, out = set(removed), {}
    for layer in model.layers:
        if type(layer).__name__ in CONVS:
            tensor = _tensor_name(_outbound(layer, model)[0])
            if tensor in graph.widths:
                out[layer.name] = [int(i) for i in graph.kept(tensor, gone)]
    return out


def _replay_steps(path: str, steps: int) -> list[dict[str, list[int]]]:
    """The kept channels of each step of an earlier pruning, from its report.json (or a JSON list of them)."""
    import json
    from pathlib import Path

    from edgeopt.errors import RecipeError

    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise RecipeError(f"channels: {path} cannot be read as JSON: {exc}") from None
    if isinstance(doc, dict) and isinstance(doc.get("pruning"), dict):
        doc = [s.get("channels") for s in doc["pruning"].get("steps", [])]
    if not isinstance(doc, list) or not doc or not all(isinstance(s, dict) for s in doc):
        raise RecipeError(f"channels: {path} holds no pruning steps",
                          hint="give the report.json of an earlier `edgeopt prune`/`compress --prune-*` run")
    if len(doc) != steps:
        raise RecipeError(f"channels: {path} records {len(doc)} pruning step(s), and prune_steps is {steps}",
                          hint=f"replay with --prune-steps {len(doc)}")
    return doc


def _replayed(graph, recorded: dict[str, list[int]], step: int) -> dict[str, list[int]]:
    """The units kept per group when every recorded layer keeps its recorded channel indices."""
    from edgeopt.errors import RecipeError

    from .graph import _outbound, _tensor_name

    model = graph.model
    names = {layer.name for layer in model.layers}
    unknown = [n for n in recorded if n not in names]
    if unknown:
        raise RecipeError(f"channels (step {step}): the model has no layer {unknown[0]!r}",
                          hint="a pruning replays only on the model it was recorded on")
    keep = {}
    for g in graph.groups:
        kept_units: set[int] = set()
        gone_units: set[int] = set()
        for name in g.sources:
            if name not in recorded:
                continue
            tensor = _tensor_name(_outbound(model.get_layer(name), model)[0])
            indices = recorded[name]
            if any(not 0 <= i < graph.widths[tensor] for i in indices):
                raise RecipeError(f"channels (step {step}): {name} has {graph.widths[tensor]} channels, the record "
                                  f"keeps index {max(indices)}")
            units = graph.units_of(tensor)
            kept_here = {int(units[i]) for i in indices}
            kept_units |= kept_here
            gone_units |= {int(u) for u in units} - kept_here
        if kept_units & gone_units:
            raise RecipeError(f"channels (step {step}): the layers of group {g.name} record different channels "
                              "(one keeps what another removes)")
        if gone_units:
            if g.fixed:
                raise RecipeError(f"channels (step {step}): group {g.name} must stay whole here ({g.fixed})")
            keep[g.name] = [u for u in g.units if u not in gone_units]
    return keep


def latency_target(params: PruneParams):
    """The device of the latency measurements: a board over ssh, a phone over adb, or this host."""
    from .latency import LatencyTarget

    if params.ssh:
        return LatencyTarget("ssh", threads=params.latency_threads, runs=params.latency_runs, host=params.ssh,
                             user=params.ssh_user, port=params.ssh_port, identity=params.identity,
                             known_hosts=params.known_hosts, python=params.remote_python)
    if params.android:
        return LatencyTarget("android", threads=params.latency_threads, runs=params.latency_runs,
                             benchmark_binary=params.benchmark_binary, adb=params.adb, serial=params.serial)
    return LatencyTarget("local", threads=params.latency_threads, runs=params.latency_runs)


def _before_after(original, pruned, params: PruneParams, ctx, target=None) -> dict:
    """The latency of the unpruned and the pruned model, measured in one run on ``target`` (default: the one the
    params name); nothing predicted (a latency target adds its prediction)."""
    from .latency import convert

    target = target or latency_target(params)
    folder = ctx.workdir / "latency"
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for label, model in (("unpruned", original), ("pruned", pruned)):
        files[label] = folder / f"{label}.tflite"
        files[label].write_bytes(convert(model, params.latency_precision))
    measured = target.compare({k: str(v) for k, v in files.items()})
    return {"device": target.describe(), "interleaved": target.kind == "local",
            "precision": params.latency_precision, "threads": params.latency_threads, "target": None,
            "before_ms": measured["unpruned"], "measured_ms": measured["pruned"],
            "measured_ratio": measured["pruned"] / measured["unpruned"], "predicted_ratio": None, "table": None,
            "layers": []}


# Interleaved medians of the same two files differ by about 1 % between runs on one host; a step's measurement
# must come within its target by twice that, so that a later measurement of the same model meets it too.
LATENCY_MARGIN = 0.02


class _LatencyRun:
    """The latency target across the steps: the device, the table, the unpruned model's measured latency."""

    def __init__(self, model, params: PruneParams, ctx):
        from .latency import LatencyTable

        self.params, self.ctx, self.original = params, ctx, model
        self.target = target = latency_target(params)
        self.table = LatencyTable(target, precision=params.latency_precision)
        self.folder = ctx.workdir / "latency"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.before_ms = target.measure(self._file(model, "unpruned"))

    def _file(self, model, name: str):
        from .latency import convert

        path = self.folder / f"{name}.tflite"
        path.write_bytes(convert(model, self.params.latency_precision))
        return path

    def choose(self, current, graph, scores, *, floors, fraction):
        """The widths of one step, and its record (predicted and measured latency per round); the record's
        ``model`` is the pruned model."""
        from edgeopt.console import status

        from .latency import LatencyModel, choose_latency, grids_for, layer_specs
        from .surgery import prune_model

        p = self.params
        specs = layer_specs(graph)
        grids = grids_for(graph, round_to=p.round_to, skip=p.skip_layers)
        before = self.table.measured_now
        with status(f"latency table: timing {len(specs)} layers at their candidate widths on "
                    f"{self.target.describe()} (cached)", step="latency table"):
            tables = self.table.fill(specs, grids)
        current_file = self._file(current, "current")
        current_ms = self.before_ms if current is self.original else self.target.measure(current_file)
        # this step's goal as a fraction of the current model's latency
        wanted = p.prune_latency ** fraction * self.before_ms / current_ms
        share = min(1.0, wanted)
        lm = LatencyModel(graph, specs, tables, current_ms)
        aim = min(1.0, wanted * (1.0 - LATENCY_MARGIN))  # met with room for the spread between measuring runs
        rounds, goal, start = [], current_ms * aim, None
        for _ in range(5):
            keep = choose_latency(graph, scores, lm, target_ms=goal, round_to=p.round_to,
                                  max_ratio=p.max_layer_ratio, skip=p.skip_layers, floors=floors, start=start)
            removed = removed_units(graph, keep)
            pruned = prune_model(current, graph, removed)
            predicted = lm.predict(removed)
            measured = self.target.compare({"before": str(current_file), "pruned": str(self._file(pruned, "pruned"))})
            ratio = measured["pruned"] / measured["before"]  # both in one interleaved run
            rounds.append({"goal_ratio": goal / current_ms, "predicted_ratio": predicted / current_ms,
                           "measured_ratio": ratio, "measured_before_ms": measured["before"],
                           "measured_ms": measured["pruned"]})
            if ratio <= aim or predicted <= 0:
                break
            goal = predicted * aim / ratio  # the prediction was short by ratio / predicted share: aim lower
            counts = {name: len(units) for name, units in keep.items()}
            if counts == start:
                break  # every group at its floor: narrower widths are not allowed
            start = counts
        per_layer_before, per_layer_after = lm.per_layer(frozenset()), lm.per_layer(removed)
        record = {"target_ratio": share, "aim_ratio": aim, "before_ms": current_ms,
                  "predicted_ratio": rounds[-1]["predicted_ratio"],
                  "measured_ratio": rounds[-1]["measured_ratio"], "rounds": rounds,
                  "table": {"layers": len(specs), "measured_now": self.table.measured_now - before,
                            "entries": len(self.table.entries), "cache": str(self.table.path)},
                  "layers": [{"layer": s.name, "predicted_before_ms": per_layer_before[s.name],
                              "predicted_after_ms": per_layer_after[s.name]} for s in specs],
                  "model": pruned}
        return keep, record

    def final(self, model, steps) -> dict:
        """The unpruned and the final model measured in one interleaved run, beside the last step's prediction."""
        last = steps[-1]["latency"]
        # the last step's prediction, in ms of the model it started from, as a share of the unpruned model
        predicted = last["predicted_ratio"] * last["before_ms"] / self.before_ms
        return {**_before_after(self.original, model, self.params, self.ctx, self.target),
                "target": self.params.prune_latency, "predicted_ratio": predicted, "table": last["table"],
                "layers": last["layers"]}


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
