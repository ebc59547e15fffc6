"""The built-in stages. Each is ``fn(artifact, params, ctx) -> Artifact`` registered by name.

- ``import``: ONNX or Keras file → trainable Keras graph, checked against onnxruntime.
- ``convert.tflite``: Keras → FP32 / FP16 / dynamic-range `.tflite`.
- ``quantize.ptq``: Keras → full-integer INT8 `.tflite`, calibrated on the run's data.
"""
from __future__ import annotations

from pathlib import Path

from .artifact import Artifact
from .context import Context
from .errors import EdgeoptError, RecipeError
from .params import ConvertParams, ImportParams, PTQParams
from .registry import stage


def parse_input_shapes(items) -> dict[str, list[int]]:
    """``("input:1,3,320,320",)`` → ``{"input": [1, 3, 320, 320]}``.

    >>> parse_input_shapes(["x:1,3,32,32"])
    {'x': [1, 3, 32, 32]}
    """
    shapes: dict[str, list[int]] = {}
    for item in items:
        name, sep, dims = str(item).rpartition(":")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = [int(d) for d in dims.split(",")]
            if any(d < 1 for d in shapes[name]):
                raise ValueError
        except ValueError:
            raise RecipeError(f"bad input shape {item!r}", hint="use NAME:DIM,DIM,... e.g. input:1,3,320,320") from None
    return shapes


@stage("import", ImportParams)
def import_model(artifact: Artifact, params: ImportParams, ctx: Context) -> Artifact:
    """Import an ONNX or Keras model as a trainable Keras graph and check parity with onnxruntime."""
    from .console import status
    from .frontends import load_model
    from .frontends.parity import check_parity

    with status(f"importing {artifact.path.name}"):
        imported = load_model(artifact.path, input_shapes=parse_input_shapes(params.input_shape))
    parity = {"reference": None}
    if imported.source_format == "onnx":
        samples = ctx.samples(imported.inputs)  # read once here (with its own spinner), cached for later stages
        real = None if samples.is_random else [a[: params.parity_samples] for a in samples.holdout]
        if real is not None and len(real[0]) == 0:
            real = None
        with status("checking parity with onnxruntime", step="parity"):
            parity = check_parity(imported, samples=real, num_random=params.parity_samples,
                                  tolerance=params.parity_tolerance)
        if parity.get("inconclusive"):
            ctx.warn(f"parity: {parity['note']}")
    ctx.evaluation(imported.inputs, imported.outputs)  # labeled data: read and checked before any conversion
    path = ctx.workdir / f"{artifact.path.stem}.keras"
    _save_keras(imported.model, path)
    from .analyze.keras_summary import keras_summary

    summary = keras_summary(imported.model)
    return Artifact(
        path=path,
        format="keras",
        model=imported.model,
        metrics={"params": summary["params"], "macs": summary["macs"], "parity": parity},
        meta={
            "source": str(artifact.path),
            "source_format": imported.source_format,
            "inputs": imported.inputs,
            "outputs": imported.outputs,
            "notes": list(imported.notes),
        },
        lineage=artifact.lineage,
    )


def _save_keras(model, path: Path) -> None:
    try:
        model.save(path)
    except Exception as exc:  # a layer that cannot serialize is a bug to report, not a user error
        raise EdgeoptError(f"the imported Keras model cannot be saved to {path}: {exc}") from None


def _keras_source(artifact: Artifact, stage_name: str):
    if artifact.format != "keras":
        raise RecipeError(
            f"stage {stage_name!r} needs a Keras model but got a {artifact.format} artifact",
            hint="put an `import` stage before it",
        )
    if artifact.model is not None:
        return artifact.model
    from .frontends import load_model

    return load_model(artifact.path).model


def _io_names(artifact: Artifact) -> tuple[list[str], list[str]]:
    from .converter import unique_safe_names

    return (unique_safe_names([s.name for s in artifact.meta["inputs"]]),
            unique_safe_names([s.name for s in artifact.meta["outputs"]]))


def _tflite_artifact(artifact: Artifact, data: bytes, path: Path, precision: str, **meta) -> Artifact:
    path.write_bytes(data)
    ins, outs = _io_names(artifact)
    return Artifact(
        path=path,
        format="tflite",
        metrics={"size_bytes": len(data)},
        meta={**artifact.meta, "precision": precision, "tflite_inputs": ins, "tflite_outputs": outs,
              "keras_source": str(artifact.path), **meta},
        lineage=artifact.lineage,
    )


@stage("convert.tflite", ConvertParams)
def convert_tflite(artifact: Artifact, params: ConvertParams, ctx: Context) -> Artifact:
    """Convert a Keras model to an FP32, FP16 or dynamic-range .tflite."""
    from .console import status
    from .converter import to_tflite

    model = _keras_source(artifact, "convert.tflite")
    ins, outs = _io_names(artifact)
    with status(f"converting to {params.precision} .tflite"):
        data = to_tflite(model, input_names=ins, output_names=outs, precision=params.precision)
    return _tflite_artifact(artifact, data, ctx.workdir / f"{artifact.path.stem}_{params.precision}.tflite",
                            params.precision)


@stage("quantize.ptq", PTQParams)
def quantize_ptq(artifact: Artifact, params: PTQParams, ctx: Context) -> Artifact:
    """Full-integer INT8 post-training quantization, calibrated on the run's data."""
    from .console import status
    from .quantization.compact import compact
    from .quantization.ptq import quantize_int8

    model = _keras_source(artifact, "quantize.ptq")
    samples, calib_keras = _calibration(ctx, artifact.meta["inputs"])
    ins, outs = _io_names(artifact)
    extra = {}
    # --auto-granularity spends the fidelity tolerance on the converter's per-channel model: not repaired
    repaired = None
    if params.ptq_repair == "auto" and not params.auto_granularity:
        repaired = _repaired(artifact, model, params, ctx, calib_keras, ins, outs, extra)
    if params.min_agreement is not None or params.max_accuracy_drop is not None:
        data, within = _int8_within_budget(artifact, model, params, ctx, calib_keras, ins, outs, repaired)
        extra.update(within)
    else:
        data = None if repaired is None else compact(repaired.data)
        if data is None:
            with status(f"converting to int8 .tflite ({len(calib_keras[0])} calibration samples)"):
                data = quantize_int8(model, calib_keras, input_names=ins, output_names=outs,
                                     io_type=params.io_type, per_channel=params.per_channel)
        if params.auto_granularity:
            data, chosen = _granularity(artifact, model, ctx, data, ins, outs)
            extra.update(chosen)
    return _tflite_artifact(artifact, data, ctx.workdir / f"{artifact.path.stem}_int8.tflite", "int8",
                            calibration={"source": samples.source, "samples": int(len(samples.calib[0]))},
                            per_channel=params.per_channel, **extra)


def _repaired(artifact: Artifact, model, params: PTQParams, ctx: Context, calib_keras, ins, outs, extra: dict):
    """The PTQ repairs (:mod:`edgeopt.quantization.repair`): their :class:`~edgeopt.quantization.repair.Repaired`,
    the record in ``extra``; None (with a warning) when no samples are held back to measure them on."""
    from .quantization.repair import repair

    specs = artifact.meta["inputs"]
    held = [s.to_keras(a) for s, a in zip(specs, ctx.samples(specs).holdout)]
    if len(held[0]) == 0 or len(calib_keras[0]) == 0:
        ctx.warn("PTQ repair skipped: it measures each repair on held-back samples and none are left; give more "
                 "--calib samples (a fifth is held back) or --ptq-repair none to silence this")
        return None
    from .profiling import step

    with step("PTQ repair"):
        repaired = repair(model, calib_keras, held, input_names=ins, output_names=outs,
                          output_specs=artifact.meta["outputs"], workdir=ctx.workdir / "repair",
                          io_type=params.io_type, per_channel=params.per_channel)
    repaired.record["measured_on"] = f"the {len(held[0])} held-back samples"
    extra["ptq_repair"] = repaired.record
    return repaired


def _calibration(ctx: Context, specs):
    """(the run's samples, the calibration part in the Keras layout, one array per input); warns when they are
    random inputs (no --calib or --data)."""
    samples = ctx.samples(specs)
    if samples.is_random:
        ctx.warn(
            "no calibration data: INT8 ranges are calibrated on random inputs in the value range "
            f"{ctx.preprocess().value_range}, which usually costs accuracy; pass --calib with real inputs"
        )
    return samples, [s.to_keras(a) for s, a in zip(specs, samples.calib)]


def _granularity(artifact: Artifact, model, ctx: Context, data: bytes, ins, outs):
    """Per-tensor weights for the layers where the output cosine with FP32 on the held-back samples stays within
    the tolerance of all per-channel (:mod:`edgeopt.quantization.granularity`); (bytes, meta with the record)."""
    from .console import status
    from .errors import DataError
    from .evaluate import run_keras
    from .quantization.granularity import choose
    from .quantization.sensitivity import Judge

    specs, out_specs = artifact.meta["inputs"], artifact.meta["outputs"]
    held = [s.to_keras(a) for s, a in zip(specs, ctx.samples(specs).holdout)]
    if len(held[0]) == 0:
        raise DataError("--auto-granularity measures the output cosine on the held-back samples, and there are "
                        "none", hint="give more --calib samples or a larger --holdout")
    measured = Judge(held, run_keras(model, held), ctx.workdir / "granularity_candidate.tflite", input_names=ins,
                     output_names=outs, output_specs=out_specs)
    with status(f"choosing the weight granularity per layer on {len(held[0])} held-back samples"):
        chosen, record = choose(data, measured, samples=len(held[0]))
    record["measured_on"] = f"the {len(held[0])} held-back samples"
    return chosen, {"granularity": record}


def _int8_within_budget(artifact: Artifact, model, params: PTQParams, ctx: Context, calib_keras, ins, outs,
                        repaired=None):
    """INT8 with the fewest ops in float that meet --min-agreement or --max-accuracy-drop; (bytes, meta) where the
    meta holds the record, the sensitivity table it followed and the every-op-INT8 file for the report. With
    ``repaired`` (the PTQ repair's result) the ops are kept in float from the repaired model, its weights and
    activation ranges; the budget is still measured against ``model``, the original."""
    import numpy as np

    from .accuracy import classifier_output
    from .errors import AccuracyBudgetError, DataError
    from .evaluate import run_keras
    from .quantization.budget import Budget, accuracy_drop_measure, agreement_measure, choose_float_ops
    from .quantization.compact import compact
    from .quantization.sensitivity import analyse_calibrated, requantize

    specs, out_specs = artifact.meta["inputs"], artifact.meta["outputs"]
    samples = ctx.samples(specs)
    held = [s.to_keras(a) for s, a in zip(specs, samples.holdout)]
    io = dict(input_names=ins, output_names=outs)
    if params.max_accuracy_drop is not None:
        ev = ctx.evaluation(specs, out_specs)
        chosen = classifier_output(out_specs)
        if ev is None or chosen is None:
            raise RecipeError("--max-accuracy-drop measures top-1 accuracy against labels, and this run has "
                              + ("no classifier output" if chosen is None else "no labels"),
                              hint="give --labels (or --val with --val-labels), or use --min-agreement")
        x = [s.to_keras(a) for s, a in zip(specs, ev.inputs)]
        index = chosen[0]
        ref = run_keras(model, x)[index]
        float_top1 = float(np.mean(np.argmax(ref.reshape(len(ref), -1), axis=1) == ev.labels))
        budget = Budget("accuracy_drop", float(params.max_accuracy_drop))
        measure = accuracy_drop_measure(x, ev.labels, float_top1, index=index, **io)
        where = ev.described
    else:
        if len(held[0]) == 0:
            raise DataError("--min-agreement is measured on the held-back samples, and there are none",
                            hint="give more --calib samples or a larger --holdout")
        metric, measure = agreement_measure(held, run_keras(model, held), output_specs=out_specs, **io)
        budget = Budget(metric, float(params.min_agreement))
        where = f"the {len(held[0])} held-back samples"
    source = model if repaired is None else repaired.float_model
    sens, calibrated = analyse_calibrated(source, calib_keras, held, output_specs=out_specs,
                                          workdir=ctx.workdir / "sensitivity", per_channel=params.per_channel, **io)
    if repaired is not None:  # the same Keras layer names, so the same op names: the ranking applies
        calibrated = repaired.calibrated
    data, record = choose_float_ops(calibrated, sens["layers"], budget=budget, measure=measure,
                                    per_channel=params.per_channel, io_type=params.io_type,
                                    workdir=ctx.workdir / "budget")
    record["measured_on"] = where
    every = ctx.workdir / f"{artifact.path.stem}_int8_every_op.tflite"
    every.write_bytes(compact(requantize(calibrated, per_channel=params.per_channel, io_type=params.io_type)))
    if not record["met"]:
        best = budget.describe(record["value"])
        raise AccuracyBudgetError(
            f"the accuracy budget ({budget.metric} {budget.target:g}) is not met even with all "
            f"{record['ops_total']} ops in float: the best figure reached is {best} on {where}",
            hint="loosen the budget, or calibrate on samples closer to the real inputs (--calib)")
    return compact(data), {"budget": record, "sensitivity": sens, "every_op_int8": str(every)}
