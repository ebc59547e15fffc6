"""The run report: ``<output>.report.json`` and ``<output>.report.md`` beside the output model.

It compares the output with its FP32 `.tflite` reference: size, params, MACs, import parity, fidelity on held-back
samples, local latency, op histogram, delegate compatibility, the lineage of every stage and where the time went.

The report never costs the model: the pipeline writes the output first, and a measurement that fails (latency
timing, the plot, the delegate analysis, ...) is named under ``incomplete`` and at the top of report.md while the
other sections are still measured; the run then ends with :class:`edgeopt.errors.ReportIncompleteError`.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from .artifact import Artifact, jsonable
from .context import Context
from .params import ReportParams
from .profiling import Profile


def _last(history: list[Artifact], fmt: str, **meta) -> Artifact | None:
    for a in reversed(history):
        if a.format == fmt and all(a.meta.get(k) == v for k, v in meta.items()):
            return a
    return None


def _fp32_reference(ctx: Context, keras_art: Artifact, report: dict) -> Artifact | None:
    """The run's FP32 `.tflite`, converted now (the ``convert.tflite`` stage) when the run made none; None when that
    conversion fails (recorded in the report)."""
    found = _last(ctx.history, "tflite", precision="fp32")
    if found is not None:
        return found
    from .params import ConvertParams
    from .profiling import step
    from .stages import convert_tflite

    converted = None
    with measuring(report, "convert.tflite (fp32 reference)", None), step("convert.tflite (fp32 reference)"):
        converted = convert_tflite(keras_art, ConvertParams(precision="fp32"), ctx)  # shows its own spinner
    return converted


def _teacher_reference(ctx: Context, report: dict) -> Artifact | None:
    """The FP32 `.tflite` of the teacher a ``distill`` stage learned from (the Keras model it was given), converted
    now; None for a run without distillation or when that conversion fails (recorded in the report)."""
    at = next((i for i, a in enumerate(ctx.history) if "distillation" in a.metrics), None)
    teacher = _last(ctx.history[:at], "keras") if at else None
    if teacher is None:
        return None
    from .params import ConvertParams
    from .profiling import step
    from .stages import convert_tflite

    converted = None
    with measuring(report, "convert.tflite (teacher fp32)", None), step("convert.tflite (teacher fp32)"):
        converted = convert_tflite(teacher, ConvertParams(precision="fp32"), ctx)
    return converted


def build_report(ctx: Context, *, params: ReportParams) -> dict[str, Any]:
    """Measure the last `.tflite` of the run against its FP32 reference; returns the JSON-able report.

    A measurement that fails (the reference conversion, fidelity, the static analysis, latency, delegates) does not
    stop the others: the report records it under ``incomplete`` and ``complete`` is False.

    >>> rep = build_report(ctx, params=ReportParams(latency_runs=50))   # doctest: +SKIP
    >>> rep["complete"], rep["models"]["int8"]["latency"]["median_ms"]  # doctest: +SKIP
    (True, 0.41)
    """
    final = ctx.history[-1]
    keras_art = _last(ctx.history, "keras")
    report = _skeleton(ctx, final, keras_art, params)
    fp32 = _fp32_reference(ctx, keras_art, report)
    models = {"fp32": fp32, final.meta["precision"]: final} if fp32 is not None else {final.meta["precision"]: final}
    if final.meta.get("qat"):  # quantization-aware training: plain PTQ of the same float model beside it
        report["qat"] = dict(final.meta["qat"])
        models["int8 ptq"] = Artifact(path=Path(final.meta["ptq_int8"]), format="tflite", meta=dict(final.meta))
    with measuring(report, "fidelity", "measuring fidelity on held-back samples"):
        _fidelity(report, ctx, keras_art, models, final)
    if final.meta.get("granularity"):
        report["granularity"] = final.meta["granularity"]
    if final.meta.get("ptq_repair"):
        report["ptq_repair"] = final.meta["ptq_repair"]
    if final.meta.get("budget"):  # the accuracy budget's choice, and the table it followed
        report["budget"] = final.meta["budget"]
        report["sensitivity"] = final.meta["sensitivity"]
    if params.sensitivity and final.meta.get("precision") == "int8" and "sensitivity" not in report:
        from .profiling import step

        with measuring(report, "sensitivity", None), step("sensitivity"):
            _sensitivity(report, ctx, keras_art, final)
    evaluation = ctx.evaluation(keras_art.meta["inputs"], keras_art.meta["outputs"])  # loaded (and checked) at import
    if evaluation is not None:
        with measuring(report, "accuracy", f"measuring accuracy on {len(evaluation.labels)} labeled samples"):
            _accuracy(report, evaluation, keras_art, models)
    columns: dict[str, dict[str, Any]] = {label: {"size_bytes": art.path.stat().st_size} for label, art in models.items()}
    report["models"] = columns
    parsed = {}
    with measuring(report, "analysis", "reading the .tflite files"):
        parsed = _analysis(columns, models)
    if "fp32" in columns and final.meta["precision"] in columns and final.meta["precision"] != "fp32":
        report["size_ratio"] = columns[final.meta["precision"]]["size_bytes"] / columns["fp32"]["size_bytes"]
    if final.meta.get("every_op_int8"):  # what the ops kept in float cost: the every-op INT8 model beside it
        every = Artifact(path=Path(final.meta["every_op_int8"]), format="tflite", meta=dict(final.meta))
        models["int8 every op"] = every
        columns["int8 every op"] = {"size_bytes": every.path.stat().st_size}
        with measuring(report, "analysis", "reading the every-op INT8 .tflite"):
            parsed.update(_analysis(columns, {"int8 every op": every}))
    teacher = _teacher_reference(ctx, report)  # a distilled student is timed beside its teacher
    if teacher is not None:
        models["teacher fp32"] = teacher
        columns["teacher fp32"] = {"size_bytes": teacher.path.stat().st_size}
        with measuring(report, "analysis", "reading the teacher's .tflite"):
            parsed.update(_analysis(columns, {"teacher fp32": teacher}))
    runs = f"{params.latency_runs} runs each, {params.num_threads} thread"
    with measuring(report, "latency", f"timing {' and '.join(models)} interleaved ({runs})"):
        _latency(report, columns, models, params)
    if params.delegates and parsed:
        from .analyze.delegates import analyze_delegates

        with measuring(report, "delegates", "analysing delegate compatibility"):
            for label, summary in parsed.items():
                columns[label]["delegates"] = _delegate_summary(analyze_delegates(summary))  # no second read
    report["complete"] = not report["incomplete"]
    return jsonable(report)


@contextlib.contextmanager
def measuring(report: dict, step: str, message: str | None) -> Iterator[None]:
    """Run one measurement behind a spinner showing ``message`` (None: the code inside shows its own), timed as
    ``step``; a failure is recorded in the report, not raised (the model is already converted: a failed
    measurement must not cost it). Ctrl-C still stops the run."""
    from .console import status

    try:
        with status(message, step=step) if message is not None else contextlib.nullcontext():
            yield
    except Exception as exc:  # any failure of a measuring library: recorded, shown, and the run exits non-zero
        report["incomplete"].append({"step": step, "error": describe_error(exc)})


def describe_error(exc: BaseException) -> str:
    """One line: the exception's type and first line, e.g. ``RuntimeError: tensor 3 is not allocated``.

    >>> describe_error(ValueError("bad shape\\nmore"))
    'ValueError: bad shape'
    """
    from .errors import EdgeoptError

    text = exc.message if isinstance(exc, EdgeoptError) else str(exc)
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__


def _skeleton(ctx: Context, final: Artifact, keras_art: Artifact, params: ReportParams) -> dict[str, Any]:
    """What the report knows without measuring: source, tensors, import parity, notes, lineage, settings."""
    source = ctx.history[0]
    return {
        "complete": True,
        "incomplete": [],
        "source": {"path": str(source.path), "format": source.format, "size_bytes": source.metrics["size_bytes"]},
        "inputs": [s.to_dict() for s in keras_art.meta["inputs"]],
        "outputs": [s.to_dict() for s in keras_art.meta["outputs"]],
        "keras": {"params": keras_art.metrics.get("params"), "macs": keras_art.metrics.get("macs")},
        "import_parity": keras_art.metrics.get("parity"),
        "training": keras_art.metrics.get("training"),
        "pruning": keras_art.metrics.get("pruning"),
        "distillation": keras_art.metrics.get("distillation"),
        "conversion_parity": None,
        "fidelity": None,
        "accuracy": None,
        "evaluation_data": None,
        "precision": final.meta["precision"],
        "models": {},
        "size_ratio": None,
        "timing": None,
        "notes": list(keras_art.meta.get("notes", [])),
        "warnings": list(ctx.warnings),
        "lineage": [s.to_dict() for s in final.lineage],
        "settings": {"data": dataclasses.asdict(ctx.data), "report": dataclasses.asdict(params)},
    }


def _fidelity(report: dict, ctx: Context, keras_art: Artifact, models: dict[str, Artifact], final: Artifact) -> None:
    """Conversion parity (FP32 .tflite vs Keras) and fidelity (output vs FP32) on the held-back samples."""
    from .evaluate import compare_outputs, run_keras, run_tflite

    specs_in, specs_out = keras_art.meta["inputs"], keras_art.meta["outputs"]
    samples = ctx.samples(specs_in)
    x = [s.to_keras(a) for s, a in zip(specs_in, samples.holdout)]
    report["evaluation_data"] = {"source": samples.source, "heldback_samples": int(len(x[0])),
                                 "calibration_samples": int(len(samples.calib[0]))}
    io = dict(input_names=final.meta["tflite_inputs"], output_names=final.meta["tflite_outputs"])
    fp32 = models.get("fp32")
    if fp32 is None:
        return
    if len(x[0]) == 0:
        ctx.warn("no held-back samples (--holdout 0): conversion parity and fidelity are not measured")
        report["warnings"] = list(ctx.warnings)
        return
    ref = run_tflite(fp32.path, x, **io)
    report["conversion_parity"] = compare_outputs(run_keras(keras_art.model, x), ref, specs_out)
    if final is not fp32:
        report["fidelity"] = compare_outputs(ref, run_tflite(final.path, x, **io), specs_out)
    if "int8 ptq" in models and report.get("qat") is not None:
        report["qat"]["ptq_fidelity"] = compare_outputs(ref, run_tflite(models["int8 ptq"].path, x, **io), specs_out)


def _sensitivity(report: dict, ctx: Context, keras_art: Artifact, final: Artifact) -> None:
    """Per-op INT8 sensitivity of the model as calibrated by the run (:mod:`edgeopt.quantization.sensitivity`)."""
    from .quantization.sensitivity import analyse

    specs_in = keras_art.meta["inputs"]
    samples = ctx.samples(specs_in)
    calib = [s.to_keras(a) for s, a in zip(specs_in, samples.calib)]
    held = [s.to_keras(a) for s, a in zip(specs_in, samples.holdout)]
    report["sensitivity"] = analyse(keras_art.model, calib, held, input_names=final.meta["tflite_inputs"],
                                    output_names=final.meta["tflite_outputs"],
                                    output_specs=keras_art.meta["outputs"], workdir=ctx.workdir / "sensitivity",
                                    per_channel=final.meta.get("per_channel", True))


def _accuracy(report: dict, ev, keras_art: Artifact, models: dict[str, Artifact]) -> None:
    """Top-1 (top-5 above 10 classes) of the original model, the FP32 .tflite and the output on the labeled data."""
    from .accuracy import classifier_output, original_scores, scores_summary, tflite_scores

    specs_in, specs_out = keras_art.meta["inputs"], keras_art.meta["outputs"]
    index, rule = classifier_output(specs_out)
    x = ev.inputs[0]
    fmt = keras_art.meta["source_format"]
    acc = {
        "data": {"source": ev.source, "labels": ev.labels_source, "split": ev.split, "samples": int(len(ev.labels)),
                 "described": ev.described, "classes": list(ev.classes)},
        "output": {"name": specs_out[index].name, "index": index, "rule": rule},
        "interval": "95 % Wilson score interval",
        "reference": "onnxruntime" if fmt == "onnx" else "Keras",
        "models": {},
    }
    report["accuracy"] = acc
    scores = original_scores(keras_art.meta["source"], fmt, keras_art.model, x, specs_in[0], index)
    acc["output"]["classes"] = int(scores.shape[1])
    _check_width(ev, scores.shape[1], specs_out[index].name)
    acc["models"]["original"] = scores_summary(scores, ev.labels)
    x_keras = specs_in[0].to_keras(x)
    for label, art in models.items():
        out = tflite_scores(art.path, x_keras, input_name=art.meta["tflite_inputs"][0],
                            output_name=art.meta["tflite_outputs"][index])
        acc["models"][label] = scores_summary(out, ev.labels)


def _check_width(ev, width: int, output: str) -> None:
    """Labels against the classifier's actual width (a dynamic width is only known from its outputs)."""
    from .data import Labels, check_classes

    check_classes(Labels(ev.labels, ev.labels_source, ev.classes), classes=int(width), output=output)


def _analysis(columns: dict[str, dict], models: dict[str, Artifact]) -> dict:
    """Params, MACs and op histogram of each .tflite (each file read once); returns the parsed summaries."""
    from .analyze.tflite import read_tflite

    parsed = {}
    for label, art in models.items():
        parsed[label] = read_tflite(art.path)
        summary = parsed[label].to_dict()
        columns[label].update(params=summary["params"], macs=summary["macs"], op_histogram=summary["op_histogram"])
    return parsed


def _latency(report: dict, columns: dict[str, dict], models: dict[str, Artifact], params: ReportParams) -> None:
    from .evaluate import interleaved_latency, latency_summary

    timing = interleaved_latency({k: str(a.path) for k, a in models.items()}, num_threads=params.num_threads,
                                 warmup_runs=params.warmup_runs, num_runs=params.latency_runs)
    report["timing"] = timing
    for label in models:
        columns[label]["latency"] = latency_summary(timing["models"][label]["latency_ms"],
                                                    num_threads=params.num_threads)


def _delegate_summary(result: dict) -> dict:
    """Keep per delegate the figures a reader compares: ops delegated, partitions, ops left on the CPU."""
    out = {}
    for name, r in result.items():
        cpu = [op["op"] for op in r["ops"] if not op["delegated"]]
        out[name] = {
            "delegated_ops": r["delegated_ops"],
            "total_ops": r["total_ops"],
            "partitions": r["num_partitions"],
            "macs_fraction": r["macs_fraction"],
            "model_reason": r["model_reason"],
            "cpu_ops": dict(sorted(Counter(cpu).items())),
        }
    return out


def report_paths(output: Path) -> tuple[Path, Path]:
    return output.with_name(output.stem + ".report.json"), output.with_name(output.stem + ".report.md")


def write_report(report: dict, output: Path, *, profile: Profile | None = None) -> tuple[Path, ...]:
    """Write the latency plot (report.svg), report.md and report.json beside ``output``; returns the paths written.

    A plot that cannot be written is recorded under ``incomplete`` like any failed measurement; ``profile`` (the
    run's step timings so far) is stored under ``profile``.
    """
    import json

    from .outputs import write_text

    pj, pm = report_paths(output)
    svg = output.with_name(output.stem + ".report.svg")
    written = []
    if report.get("timing"):
        with measuring(report, "plot", "drawing the latency plot"):
            write_text(svg, latency_plot(report))
            report["plot"] = svg.name
            written.append(svg)
    history = (report.get("training") or {}).get("history") or []
    if history:
        curves = output.with_name(output.stem + ".training.svg")
        with measuring(report, "training_plot", "drawing the learning curves"):
            from .report_plot import training_svg

            write_text(curves, training_svg(history))
            report["training_plot"] = curves.name
            written.append(curves)
    report["complete"] = not report["incomplete"]
    if profile is not None:
        report["profile"] = profile.to_dict()
    write_text(pm, to_markdown(report))
    write_text(pj, json.dumps(jsonable(report), indent=2) + "\n")
    return (pj, pm, *written)


def latency_plot(report: dict) -> str:
    """SVG of latency against size, and against top-1 agreement with FP32 when the model is a classifier."""
    from .report_plot import latency_svg

    agree = [r["top1_agreement"] for r in report["fidelity"] or [] if "top1_agreement" in r]
    accuracy = None
    if agree and len(report["timing"]["models"]) > 1:
        # only the FP32 reference and the output have an agreement figure (not a teacher, not other variants)
        accuracy = {label: 1.0 for label in report["timing"]["models"] if label == "fp32"}
        accuracy[report["precision"]] = min(agree)
    return latency_svg(report["timing"], accuracy=accuracy, accuracy_label="top-1 agreement with FP32")


def _mb(n: int) -> str:
    return f"{n / 1e6:.3f} MB"


def _g(x: float) -> str:
    return f"{x:.3g}"


def _cell(column: dict, key: str, fmt) -> str:
    """A summary cell, or "-" for a figure that was not measured."""
    value = column.get(key)
    return "-" if value is None else fmt(value)


def summary_rows(report: dict) -> list[tuple[str, ...]]:
    """The headline table: one row per figure, one column per model (FP32 and the output precision); "-" marks
    what was not measured (see ``incomplete``)."""
    labels = list(report["models"])
    cols = [report["models"][k] for k in labels]
    threads = report["settings"]["report"]["num_threads"]
    rows = [("", *labels)]
    rows.append(("size", *(_cell(c, "size_bytes", _mb) for c in cols)))
    rows.append(("params", *(_cell(c, "params", "{:,}".format) for c in cols)))
    rows.append(("MACs", *(_cell(c, "macs", "{:,}".format) for c in cols)))
    rows.append(("ops", *(_cell(c, "op_histogram", lambda h: str(sum(h.values()))) for c in cols)))
    rows.append((f"median latency ({threads} thread)",
                 *(_cell(c, "latency", lambda lat: f"{lat['median_ms']:.3f} ms") for c in cols)))
    return rows


def fidelity_rows(report: dict) -> list[tuple[str, ...]]:
    rows = [("output", "top-1 agreement", "cosine (mean)", "max abs error", "mean abs error")]
    for r in report["fidelity"] or []:
        agree = f"{100 * r['top1_agreement']:.2f} %" if "top1_agreement" in r else "-"
        rows.append((r["name"], agree, f"{r['cosine_mean']:.5f}", _g(r["max_abs_error"]), _g(r["mean_abs_error"])))
    return rows


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def accuracy_rows(report: dict) -> list[tuple[str, ...]]:
    """One row per model (the original, FP32, the output): top-1 with its 95 % interval, and top-5 when measured."""
    acc = report["accuracy"]
    five = any("top5" in m for m in acc["models"].values())
    head = ("model", "top-1", "95 % CI", "correct") + (("top-5", "95 % CI (top-5)") if five else ())
    rows = [head]
    for label, m in acc["models"].items():
        name = f"original ({acc['reference']})" if label == "original" else label
        t1 = m["top1"]
        row = (name, _pct(t1["accuracy"]), f"{_pct(t1['ci95'][0])} – {_pct(t1['ci95'][1])}",
               f"{t1['correct']}/{t1['samples']}")
        if five:
            t5 = m.get("top5")
            row += ((_pct(t5["accuracy"]), f"{_pct(t5['ci95'][0])} – {_pct(t5['ci95'][1])}") if t5 else ("-", "-"))
        rows.append(row)
    return rows


def training_rows(training: dict) -> list[tuple[str, ...]]:
    """One row per epoch: loss and top-1 on the training batches, validation loss and top-1, speed. Without labels
    the top-1 columns are the agreement with the original model's top-1 (the header says so)."""
    rows = list(training["history"])
    first = training.get("initial")
    agreement = any(r.get("agreement") is not None or r.get("val_agreement") is not None for r in rows + [first or {}])
    name = "agreement" if agreement else "accuracy"
    out = [("epoch", "loss", name, "val loss", f"val {name}", "samples/s", "seconds")]

    def top1(r: dict, prefix: str) -> str:
        value = r.get(f"{prefix}accuracy")
        value = r.get(f"{prefix}agreement") if value is None else value
        return "" if value is None else _pct(value)

    def loss(value) -> str:
        return "" if value is None else f"{max(value, 0.0):.4f}"  # a KL of -1e-9 is rounding, shown as 0

    if first:
        out.append(("0 (before)", "", "", loss(first.get("val_loss")), top1(first, "val_"), "", ""))
    for r in rows:
        out.append((str(r["epoch"]), loss(r["loss"]), top1(r, ""), loss(r.get("val_loss")), top1(r, "val_"),
                    f"{r['samples_per_second']:.0f}", f"{r['seconds']:.1f}"))
    return out


def pruning_summary(p: dict) -> str:
    """One line: MACs and params before and after, and how many groups were kept whole."""
    fixed = len(p["fixed"])
    line = (f"MACs {p['macs_before']:,} → {p['macs_after']:,} ({100 * p['macs_ratio']:.1f} %), params "
            f"{p['params_before']:,} → {p['params_after']:,}; {len(p['steps'][0]['groups'])} channel groups, "
            f"{fixed} kept whole")
    lat = p.get("latency")
    if lat:
        predicted = (f", predicted {100 * lat['predicted_ratio']:.1f} %" if lat.get("predicted_ratio") is not None
                     else "")
        line += (f"; latency {lat['before_ms']:.3f} → {lat['measured_ms']:.3f} ms measured "
                 f"({100 * lat['measured_ratio']:.1f} %{predicted})")
    return line


def distillation_lines(report: dict) -> list[str]:
    d = report.get("distillation")
    if not d:
        return []

    def pct(v):
        return "—" if v is None else f"{100 * v:.2f} %"

    lines = ["## Distillation", "",
             f"Student `{d['student']}` built for {'x'.join(map(str, d['input']))} inputs and {d['classes']} "
             f"classes{' with the stem that keeps resolution' if d['small_input_stem'] else ''}, trained on "
             f"{d['mode']}: loss {', '.join(d['loss'])}, temperature {d['temperature']:g}; teacher run by "
             f"{d['teacher']}.", "",
             _md_table([("", "params", "MACs", "validation top-1"),
                        ("teacher", f"{d['teacher_params']:,}", f"{d['teacher_macs']:,}",
                         pct(d["teacher_val_accuracy"])),
                        ("student", f"{d['student_params']:,}", f"{d['student_macs']:,}",
                         pct(d["student_val_accuracy"]))]),
             "", f"The student has {100 * d['macs_ratio']:.1f} % of the teacher's MACs. The accuracy and "
                 "fidelity tables above compare the original model (the teacher) with the student's .tflite "
                 "files; the training section has the learning curves.", ""]
    if d.get("hint"):
        h = d["hint"]
        lines[-1:-1] = [f"Hint: the student's `{h['student_layer']}` {h['student_shape']} learns the teacher's "
                        f"`{h['teacher_layer']}` {h['teacher_shape']} through a 1x1 adapter"
                        + (f" after {h['pool']}x{h['pool']} average pooling" if h["pool"] > 1 else "")
                        + f" (weight {h['weight']:g}; the adapter is dropped after training).", ""]
    timed = {k: m["latency"]["median_ms"] for k, m in report.get("models", {}).items() if m.get("latency")}
    if "teacher fp32" in timed:
        mine = [(k, v) for k, v in timed.items() if k != "teacher fp32"]
        t = timed["teacher fp32"]
        lines += ["Latency on this host, the teacher's FP32 .tflite timed in the same interleaved run: teacher "
                  f"{t:.3f} ms, " + ", ".join(f"student {k} {v:.3f} ms ({t / v:.1f}x faster)" if v < t else
                                              f"student {k} {v:.3f} ms ({v / t:.1f}x slower)" for k, v in mine)
                  + ".", ""]
    return lines


def sensitivity_rows(sens: dict) -> list[tuple[str, ...]]:
    """One row per quantized op, the most damaging first: its layers, local error, and the model's fidelity with
    that op alone in float."""
    e2e = sens.get("all_int8") is not None
    top1 = e2e and sens["all_int8"].get("top1_agreement") is not None
    head = ["#", "op", "layer", "RMSE (steps)", "rel. RMSE"]
    if e2e:
        head += ["cosine, op in float", "gain"] + (["top-1, op in float"] if top1 else [])
    rows = [tuple(head)]
    for i, r in enumerate(sens["layers"], 1):
        cells = [str(i), r["op"], sensitivity_layer(r), "-" if r["rmse_steps"] is None else f"{r['rmse_steps']:.3f}",
                 "-" if r["relative_rmse"] is None else f"{100 * r['relative_rmse']:.2f} %"]
        if e2e:
            cells += [f"{r['float_alone']['cosine']:.5f}", f"{r['gain_cosine']:+.5f}"]
            if top1:
                cells.append(f"{100 * r['float_alone']['top1_agreement']:.2f} %")
        rows.append(tuple(cells))
    return rows


REPAIR_NAMES = {"equalization": "cross-layer equalization", "rounding": "error-compensating weight rounding",
                "bias_correction": "bias correction", "ranges": "activation ranges"}


def _fid(f: dict) -> str:
    return f"{f['cosine']:.5f}" + ("" if f.get("top1_agreement") is None else f" ({100 * f['top1_agreement']:.1f} %)")


def repair_rows(rep: dict) -> list[tuple]:
    """One row per PTQ repair step: what it changed, the fidelity before and after, kept or not."""
    rows = [("step", "changed", "cosine before", "cosine after", "kept")]
    for s in rep["steps"]:
        name = REPAIR_NAMES.get(s["step"], s["step"])
        if s["step"] == "ranges":
            changed = (f"{s['tensors']} tensors; " + ", ".join(f"{k} {_fid(v)}" for k, v in s["tried"].items())
                       + f"; chosen: {s['chosen']}") if s["applicable"] else "no calibrated tensor"
        elif s["step"] == "equalization":
            changed = f"{s['pairs']} conv pairs, {s.get('channels_scaled', 0)} channel scales"
        elif s["step"] == "rounding":
            changed = (f"{s['layers']} layers, {s.get('weights_rounded_otherwise', 0):,} weights rounded the "
                       "other way")
        else:
            changed = f"{s['layers']} biases" + (f", largest shift {s['largest_shift']:.3g}"
                                                 if "largest_shift" in s else "")
        if not s["applicable"]:
            rows.append((name, s.get("why", "not applicable"), "-", "-", "no"))
        else:
            rows.append((name, changed, _fid(s["before"]), _fid(s["after"]), "yes" if s["kept"] else "no"))
    return rows


def repair_lines(report: dict) -> list[str]:
    rep = report.get("ptq_repair")
    if not rep:
        return []
    kept = ", ".join(REPAIR_NAMES.get(k.split(" ")[0], k) + (" " + k.split(" ", 1)[1] if " " in k else "")
                     for k in rep["kept"]) or "none"
    return ["## PTQ repair", "",
            f"Output cosine with FP32 (top-1 agreement) on {rep['measured_on']}: the converter's plain INT8 "
            f"{_fid(rep['plain'])}, repaired {_fid(rep['final'])}. Each step was tried on the model the steps before "
            f"kept, and kept when it raised the cosine without lowering the top-1 agreement. Kept: {kept}.", "",
            _md_table(repair_rows(rep)), ""]


def granularity_lines(report: dict) -> list[str]:
    g = report.get("granularity")
    if not g:
        return []
    fp32 = report.get("models", {}).get("fp32", {}).get("size_bytes")
    share = (lambda n: f" ({100 * n / fp32:.1f} % of FP32)") if fp32 else (lambda n: "")
    rows = [("weights", "op", "channels", "per-tensor weight error", "granularity")]
    rows += [(r["weights"], r["op"], str(r["channels"]), f"{100 * r['weight_error_per_tensor']:.3f} %",
              r["granularity"]) for r in g["layers"]]
    return ["## Weight granularity per layer", "",
            f"{g['per_tensor']} of {g['layers_total']} layers use one weight scale: output cosine with FP32 "
            f"{g['cosine']:.5f} against {g['cosine_per_channel']:.5f} with every layer per-channel (tolerance "
            f"{g['tolerance']:g}" + ("" if g.get("top1_agreement") is None else
                                     f"; top-1 agreement {100 * g['top1_agreement']:.2f} % against "
                                     f"{100 * g['top1_agreement_per_channel']:.2f} %, tolerance "
                                     f"{100 * g['agreement_tolerance']:.2g} points")
            + f", on {g['measured_on']}); size {g['size']:,} bytes{share(g['size'])} against "
            f"{g['size_per_channel']:,}{share(g['size_per_channel'])}. Layers were tried in the order of the "
            "error one scale gives their weights (the table's order).", "", _md_table(rows), ""]


def budget_lines(report: dict) -> list[str]:
    b = report.get("budget")
    if not b:
        return []
    from .quantization.budget import Budget

    budget = Budget(b["metric"], b["target"])
    goal = (f"at most {b['target']:g} points of top-1 below float" if b["metric"] == "accuracy_drop"
            else f"{budget.describe(b['target'])} or more")
    kept = ", ".join(f"`{sensitivity_layer(op)}` ({op['op']})" for op in b["float_ops"]) or "none"
    lines = ["## Accuracy budget", "",
             f"Budget: {goal}, measured on {b['measured_on']}. Every op in INT8: {budget.describe(b['all_int8'])}; "
             f"this model: {budget.describe(b['value'])}, with {len(b['float_ops'])} of {b['ops_total']} ops "
             f"({100 * b['float_fraction']:.1f} %) kept in float: {kept}. The ops were tried in the order of the "
             "sensitivity table below; the figures here are on the samples the choice was made on.", ""]
    models = report.get("models", {})
    mine, every = models.get(report["precision"]), models.get("int8 every op")
    if mine and every:
        cost = f"Cost: {mine['size_bytes']:,} bytes against {every['size_bytes']:,} with every op in INT8"
        if mine.get("latency") and every.get("latency"):
            cost += (f"; median latency {mine['latency']['median_ms']:.3f} ms against "
                     f"{every['latency']['median_ms']:.3f} ms (one interleaved run)")
        lines += [cost + ".", ""]
    return lines


def sensitivity_layer(row: dict) -> str:
    """The name a user knows an op by: its ONNX node, else its Keras layer, else the model output it computes.

    >>> sensitivity_layer({"onnx": [], "layers": ["StatefulPartitionedCall:0"], "tensor": "StatefulPartitionedCall:0"})
    'the output (StatefulPartitionedCall:0)'
    """
    if row["onnx"]:
        return row["onnx"][0].rsplit(" (", 1)[0]
    if "/" not in row["tensor"]:
        return f"the output ({row['tensor']})"
    return row["layers"][0]


def sensitivity_lines(report: dict) -> list[str]:
    sens = report.get("sensitivity")
    if not sens:
        return []
    base = sens.get("all_int8")
    text = (f"Each quantized op on the {sens['samples']} held-back samples "
            f"({'per-channel' if sens['per_channel'] else 'per-tensor'} weights"
            + (", before the per-layer granularity choice" if report.get("granularity") else "")
            + "). RMSE (steps): the op's INT8 "
            "output against the float op on the same inputs, in quantization steps (0.289 is the rounding floor); "
            "relative RMSE: the same over the float output's RMS.")
    if base is not None:
        agree = "" if base.get("top1_agreement") is None else \
            f", top-1 agreement {100 * base['top1_agreement']:.2f} %"
        text += (f" Every op in INT8: output cosine {base['cosine']:.5f}{agree}. The rows are sorted by the gain "
                 "in cosine when that op alone stays in float: the damage it does.")
    return ["## INT8 sensitivity per op", "", text, "", _md_table(sensitivity_rows(sens)), ""]


def pruning_lines(report: dict) -> list[str]:
    p = report.get("pruning")
    if not p:
        return []
    t = p["target"]
    if t.get("replay"):
        target = f"the channels recorded in `{t['replay']}` (a replay)"
    elif t.get("latency"):
        target = f"at most {100 * t['latency']:g} % of the measured latency"
    elif t["macs"]:
        target = f"at most {100 * t['macs']:g} % of the MACs"
    else:
        target = f"{100 * t['ratio']:g} % of each group's channels removed"
    lines = ["## Pruning", "", f"Target: {target}; importance {p['importance']}, widths rounded to multiples of "
             f"{p['round_to']}, {len(p['steps'])} step(s). {pruning_summary(p)}.", ""]
    lat = p.get("latency")
    if lat:
        how = "in one interleaved run" if lat.get("interleaved", True) else "one after the other"
        lines += [f"Latency on {lat['device']} ({lat['precision'].upper()}), the unpruned and the final model "
                  f"measured {how}: {lat['before_ms']:.3f} ms → {lat['measured_ms']:.3f} ms "
                  f"({100 * lat['measured_ratio']:.1f} %)" + (
                      "." if lat.get("table") is None else
                      f"; the per-layer table predicted {100 * lat['predicted_ratio']:.1f} % before fine-tuning. "
                      f"Table: {lat['table']['layers']} layers, {lat['table']['measured_now']} entries timed now, "
                      f"{lat['table']['entries']} cached in `{lat['table']['cache']}`."), ""]
        changed_lat = [r for r in lat["layers"] if abs(r["predicted_before_ms"] - r["predicted_after_ms"]) > 0]
        if changed_lat:
            lines += [_md_table([("layer", "predicted ms before", "predicted ms after")] + [
                (r["layer"], f"{r['predicted_before_ms']:.4f}", f"{r['predicted_after_ms']:.4f}")
                for r in changed_lat]), ""]
    if not p["fine_tuned"]:
        lines += ["Not fine-tuned (no --data, or --epochs 0): the accuracy below is that of the pruned weights as "
                  "they are.", ""]

    def top1(r):
        if not r:
            return ""
        v = r.get("val_accuracy")
        v = r.get("val_agreement") if v is None else v
        return "" if v is None else _pct(v)

    last = p["steps"][-1]
    rows = [("validation", "top-1")]
    if p["accuracy"].get("before_pruning"):
        rows.append(("before pruning", top1(p["accuracy"]["before_pruning"])))
    if last.get("after_pruning"):
        rows.append(("after pruning", top1(last["after_pruning"])))
    if last.get("after_finetuning"):
        rows.append(("after fine-tuning", top1(last["after_finetuning"])))
    acc = report.get("accuracy") or {}
    for label in ("int8", "fp16", "dynamic-range"):
        model = (acc.get("models") or {}).get(label)
        if model and len(rows) > 1:  # the report's accuracy data is the same validation data
            rows.append((f"after {label.upper()} ({model['top1']['samples']} samples)",
                         _pct(model["top1"]["accuracy"])))
    if len(rows) > 1:
        lines += [_md_table(rows), ""]
    groups = [("group", "layers", "channels", "kept", "why kept whole")] + [
        (g["name"], str(len(g["layers"])), str(g["width"]), str(g["kept"]), g["fixed"] or "")
        for g in p["steps"][0]["groups"]]
    lines += [_md_table(groups), ""]
    changed = [r for r in p["layers"] if r["macs_before"] != r["macs_after"]]
    if changed:
        lines += [_md_table([("layer", "MACs before", "MACs after", "params before", "params after")] + [
            (r["layer"], f"{r['macs_before']:,}", f"{r['macs_after']:,}", f"{r.get('params_before', 0):,}",
             f"{r.get('params_after', 0):,}") for r in changed]), ""]
    return lines


def training_lines(report: dict) -> list[str]:
    t = report.get("training")
    if not t:
        return []
    d = t["data"]
    lines = ["## Training", "",
             f"{t['title']} for {t['epochs_run']} of {t['epochs']} epochs ({t['steps_per_epoch']} steps of "
             f"{t['global_batch']} samples) on {d['samples']} samples of `{d['source']}`; targets: {d['targets']}; "
             f"loss {t['objective']}; optimizer {t['optimizer']}; {t['strategy']['replicas']} replica(s) on "
             f"{t['strategy']['workers']} worker(s) ({t['strategy']['name']})."]
    if d.get("validation"):
        lines.append(f"Validation: {d['validation']}.")
    if t.get("stopped_early"):
        lines.append(f"Stopped early; the weights are those of epoch {t['best_epoch']}, the lowest validation loss.")
    if t.get("resumed_from_epoch"):
        lines.append(f"Resumed after epoch {t['resumed_from_epoch']} from a checkpoint.")
    lines += ["", _md_table(training_rows(t)), ""]
    if report.get("training_plot"):
        lines += [f"![learning curves: loss and top-1 per epoch, training and validation]({report['training_plot']})",
                  ""]
    return lines


def qat_lines(report: dict) -> list[str]:
    """The QAT section: how each layer was wrapped, QAT against plain PTQ, and the training epochs."""
    q = report.get("qat")
    if not q:
        return []
    sch = q["schemes"]
    types = {}
    for p in q["edgeopt_configs"]:
        types.setdefault(p["scheme"], Counter())[p["type"]] += 1

    def listed(scheme: str) -> str:
        found = types.get(scheme)
        return f" ({', '.join(f'{t} x{n}' for t, n in sorted(found.items()))})" if found else ""

    calib = (report.get("evaluation_data") or {}).get("calibration_samples")
    lines = ["## Quantization-aware training", "",
             "`int8` is the quantization-aware trained file; `int8 ptq` is the same float model quantized "
             f"post-training on the same {calib if calib is not None else ''} calibration samples, for comparison.",
             "",
             f"{q['layers']} layers: {sch.get('default', 0)} with tensorflow-model-optimization's default 8-bit "
             "scheme, " + (f"{sch['weights']} with its weights but no output fake-quant (the next layer folds into "
                           "them), " if sch.get("weights") else "")
             + f"{sch.get('output', 0)} with an output fake-quant{listed('output')}, "
             f"{sch.get('pass-through', 0)} pass-through{listed('pass-through')}"
             + (f", {sch['calibrated']} without fake-quant, calibrated at conversion{listed('calibrated')}"
                if sch.get("calibrated") else "") + f". {q['ranges_from_calibration']} "
             "activation ranges started from the calibration samples, the weight ranges from the weights.", ""]
    rows = [("vs FP32 on the held-back samples", "top-1 agreement", "cosine (mean)", "max abs error")]
    for label, fid in (("int8 (QAT)", report.get("fidelity")), ("int8 ptq", q.get("ptq_fidelity"))):
        for r in fid or []:
            agree = f"{100 * r['top1_agreement']:.2f} %" if "top1_agreement" in r else "-"
            rows.append((f"{label}: {r['name']}", agree, f"{r['cosine_mean']:.5f}", _g(r["max_abs_error"])))
    if len(rows) > 1:
        lines += [_md_table(rows), ""]
    acc = (report.get("accuracy") or {}).get("models", {})
    if "int8" in acc and "int8 ptq" in acc:
        a, b = acc["int8"]["top1"]["accuracy"], acc["int8 ptq"]["top1"]["accuracy"]
        ref = acc.get("fp32", {}).get("top1", {}).get("accuracy")
        lines += [f"Top-1 accuracy: QAT {_pct(a)}, PTQ {_pct(b)} ({100 * (a - b):+.2f} points)"
                  + (f", FP32 {_pct(ref)}" if ref is not None else "") + ".", ""]
    t = q["training"]
    d = t["data"]
    lines += [f"{t['title']} for {t['epochs_run']} of {t['epochs']} epochs ({t['steps_per_epoch']} steps of "
              f"{t['global_batch']} samples) on {d['samples']} samples of `{d['source']}`; targets: "
              f"{d['targets']}; loss {t['objective']}; optimizer {t['optimizer']}; {t['strategy']['replicas']} "
              f"replica(s) ({t['strategy']['name']}). The fake-quantized model's epochs:", "",
              _md_table(training_rows(t)), ""]
    return lines


def accuracy_lines(report: dict) -> list[str]:
    """What the accuracy was measured on: the data, the labels, the classifier output and the interval."""
    acc = report["accuracy"]
    d, o = acc["data"], acc["output"]
    classes = f" ({o['classes']} classes)" if o.get("classes") else ""
    lines = [f"On {d['described']}; labels from `{d['labels']}`. Classifier output: `{o['name']}`, "
             f"{o['rule']}{classes}. Intervals: {acc['interval']}."]
    if d["classes"]:
        lines.append("Class folders, sorted (label i = i-th name): " + ", ".join(f"{i} `{c}`"
                                                                          for i, c in enumerate(d["classes"])) + ".")
    return lines


def incomplete_lines(report: dict) -> list[str]:
    """The statement an incomplete report opens with: what failed, and that the model itself was written.

    >>> incomplete_lines({"incomplete": [{"step": "latency", "error": "RuntimeError: boom"}], "output": "m.tflite"})[0]
    '**This report is incomplete.** The model was written to `m.tflite`, but these measurements failed:'
    """
    if not report.get("incomplete"):
        return []
    where = f" to `{report['output']}`" if report.get("output") else ""
    lines = [f"**This report is incomplete.** The model was written{where}, but these measurements failed:", ""]
    lines += [f"- {item['step']}: {item['error']}" for item in report["incomplete"]]
    return lines + ["", "The sections below hold what was measured; a missing figure is shown as `-`.", ""]


def profile_rows(profile: dict) -> list[tuple[str, str]]:
    """(step, seconds) rows of a profile dict, with the time outside named steps and the total.

    >>> profile_rows({"steps": [{"step": "import", "seconds": 1.25}], "other_seconds": 0.1, "total_seconds": 1.35})
    [('step', 'seconds'), ('import', '1.25'), ('other (hashing, lineage, writing the output)', '0.10'), ('total', '1.35')]
    """
    rows = [("step", "seconds")] + [(r["step"], f"{r['seconds']:.2f}") for r in profile["steps"]]
    rows.append(("other (hashing, lineage, writing the output)", f"{profile['other_seconds']:.2f}"))
    rows.append(("total", f"{profile['total_seconds']:.2f}"))
    return rows


def _md_table(rows: list[tuple[str, ...]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def _error_rows(rows: list[dict]) -> str:
    return _md_table([("output", "max abs error", "max rel error")]
                     + [(o["name"], _g(o["max_abs_error"]), _g(o["max_rel_error"])) for o in rows])


def to_markdown(report: dict) -> str:
    prec = report["precision"]
    out = [f"# edgeopt report: {Path(report['source']['path']).name} → {prec}", ""]
    out += incomplete_lines(report)
    if report.get("output"):
        ratio = report.get("size_ratio")
        share = f" ({100 * ratio:.1f} % of the FP32 .tflite)" if ratio is not None else ""
        out += [f"Output: `{report['output']}`{share}.", ""]
    if report["models"]:
        out += ["## Summary", "", _md_table(summary_rows(report)), ""]
    if report.get("plot"):
        t = report["timing"]
        out += [f"Latency: {t['rounds']} interleaved rounds of {t['runs_per_round']} runs per model on this host.",
                "", f"![latency]({report['plot']})", ""]
    out += ["## Inputs and outputs", "", _md_table(
        [("tensor", "original shape", "tflite shape", "layout")]
        + [(f"in: {s['name']}", str(s["onnx_shape"]), str(s["keras_shape"]), s["layout"]) for s in report["inputs"]]
        + [(f"out: {s['name']}", str(s["onnx_shape"]), str(s["keras_shape"]), s["layout"]) for s in report["outputs"]]
    ), ""]
    par = report["import_parity"] or {}
    if par.get("reference"):
        out += [f"## Import parity (vs {par['reference']}, tolerance {par['tolerance']:g})", "",
                _error_rows(par["outputs"]), ""]
    if report["conversion_parity"] is not None:
        out += ["## Conversion parity (FP32 .tflite vs Keras)", "", _error_rows(report["conversion_parity"]), ""]
    ev = report["evaluation_data"]
    if report["fidelity"] is not None:
        out += [f"## Fidelity of {prec} vs FP32", "",
                f"On {ev['heldback_samples']} held-back samples from `{ev['source']}` "
                f"(calibration used {ev['calibration_samples']} others).", "", _md_table(fidelity_rows(report)), ""]
    if report.get("accuracy") and report["accuracy"]["models"]:
        out += ["## Accuracy", "", *accuracy_lines(report), "", _md_table(accuracy_rows(report)), ""]
    out += budget_lines(report)
    out += repair_lines(report)
    out += granularity_lines(report)
    out += sensitivity_lines(report)
    out += qat_lines(report)
    out += distillation_lines(report)
    out += pruning_lines(report)
    out += training_lines(report)
    out += _op_histogram(report) + _delegates(report)
    if report["warnings"] or report["notes"]:
        out += ["## Warnings and notes", ""] + [f"- {w}" for w in report["warnings"] + report["notes"]] + [""]
    out += ["## Lineage", "", _md_table([("stage", "seconds", "input", "output", "params")] + [
        (s["stage"], f"{s['seconds']:.2f}", str(s["input_hash"]), s["output_hash"],
         ", ".join(f"{k}={v}" for k, v in s["params"].items())) for s in report["lineage"]]), ""]
    if report.get("profile"):
        out += ["## Where the time went", "", "Wall-clock seconds per step of this run, up to writing this report "
                "(`edgeopt compress --profile` prints the same).", "", _md_table(profile_rows(report["profile"])), ""]
    return "\n".join(out)


def _op_histogram(report: dict) -> list[str]:
    models = {k: m for k, m in report["models"].items() if "op_histogram" in m}
    if not models:
        return []
    labels = list(models)
    ops = sorted({op for m in models.values() for op in m["op_histogram"]})
    return ["## Op histogram", "", _md_table([("op", *labels)] + [
        (op, *(str(models[m]["op_histogram"].get(op, 0)) for m in labels)) for op in ops]), ""]


def _delegates(report: dict) -> list[str]:
    models = report["models"]
    if not models or not all("delegates" in m for m in models.values()):
        return []
    labels = list(models)
    rows = [("delegate", *(f"{m}: delegated ops / partitions" for m in labels))]
    for d in models[labels[0]]["delegates"]:
        cells = []
        for m in labels:
            r = models[m]["delegates"][d]
            cells.append(f"{r.get('delegated_ops', 0)}/{r.get('total_ops', 0)} in {r.get('partitions', 0)}")
        rows.append((d, *cells))
    return ["## Delegate compatibility (static analysis)", "", _md_table(rows), ""]
