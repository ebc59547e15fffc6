"""The run report: ``<output>.report.json`` and ``<output>.report.md`` beside the output model.

It compares the output with its FP32 `.tflite` reference: size, params, MACs, import parity, fidelity on held-back
samples, local latency, op histogram, delegate compatibility, and the lineage of every stage.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

from .artifact import Artifact, jsonable
from .context import Context
from .params import ReportParams


def _last(history: list[Artifact], fmt: str, **meta) -> Artifact | None:
    for a in reversed(history):
        if a.format == fmt and all(a.meta.get(k) == v for k, v in meta.items()):
            return a
    return None


def _fp32_reference(ctx: Context, keras_art: Artifact) -> Artifact:
    found = _last(ctx.history, "tflite", precision="fp32")
    if found is not None:
        return found
    from .params import ConvertParams
    from .stages import convert_tflite

    return convert_tflite(keras_art, ConvertParams(precision="fp32"), ctx)


def build_report(ctx: Context, *, params: ReportParams) -> dict[str, Any]:
    """Measure the last `.tflite` of the run against its FP32 reference; returns the JSON-able report."""
    from .analyze.delegates import analyze_delegates
    from .analyze.tflite import read_tflite
    from .console import status
    from .evaluate import compare_outputs, interleaved_latency, latency_summary, run_keras, run_tflite

    final = ctx.history[-1]
    keras_art = _last(ctx.history, "keras")
    fp32 = _fp32_reference(ctx, keras_art)
    specs_in, specs_out = keras_art.meta["inputs"], keras_art.meta["outputs"]
    samples = ctx.samples(specs_in)
    x = [s.to_keras(a) for s, a in zip(specs_in, samples.holdout)]
    io = dict(input_names=final.meta["tflite_inputs"], output_names=final.meta["tflite_outputs"])

    with status("measuring fidelity on held-back samples"):
        ref = run_tflite(fp32.path, x, **io)
        conversion = compare_outputs(run_keras(keras_art.model, x), ref, specs_out)
        fidelity = compare_outputs(ref, run_tflite(final.path, x, **io), specs_out) if final is not fp32 else None

    models = {"fp32": fp32, final.meta["precision"]: final}
    with status(f"timing {' and '.join(models)} interleaved ({params.latency_runs} runs each, "
                f"{params.num_threads} thread)"):
        timing = interleaved_latency({k: str(a.path) for k, a in models.items()}, num_threads=params.num_threads,
                                     warmup_runs=params.warmup_runs, num_runs=params.latency_runs)
    columns: dict[str, dict[str, Any]] = {}
    for label, art in models.items():
        parsed = read_tflite(art.path)
        summary = parsed.to_dict()
        columns[label] = {
            "size_bytes": art.path.stat().st_size,
            "params": summary["params"],
            "macs": summary["macs"],
            "op_histogram": summary["op_histogram"],
            "latency": latency_summary(timing["models"][label]["latency_ms"], num_threads=params.num_threads),
        }
        if params.delegates:
            columns[label]["delegates"] = _delegate_summary(analyze_delegates(parsed))  # no second read
    source = ctx.history[0]
    report = {
        "source": {"path": str(source.path), "format": source.format, "size_bytes": source.metrics["size_bytes"]},
        "inputs": [s.to_dict() for s in specs_in],
        "outputs": [s.to_dict() for s in specs_out],
        "keras": {"params": keras_art.metrics.get("params"), "macs": keras_art.metrics.get("macs")},
        "import_parity": keras_art.metrics.get("parity"),
        "conversion_parity": conversion,
        "fidelity": fidelity,
        "evaluation_data": {"source": samples.source, "heldback_samples": int(len(x[0])),
                            "calibration_samples": int(len(samples.calib[0]))},
        "precision": final.meta["precision"],
        "models": columns,
        "size_ratio": columns[final.meta["precision"]]["size_bytes"] / columns["fp32"]["size_bytes"],
        "timing": timing,
        "notes": list(keras_art.meta.get("notes", [])),
        "warnings": list(ctx.warnings),
        "lineage": [s.to_dict() for s in final.lineage],
        "settings": {"data": dataclasses.asdict(ctx.data), "report": dataclasses.asdict(params)},
    }
    return jsonable(report)


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


def write_report(report: dict, output: Path) -> tuple[Path, ...]:
    """Write report.json, report.md and the latency plot (report.png) beside ``output``."""
    import json

    from .outputs import atomic_path, write_text

    pj, pm = report_paths(output)
    png = output.with_name(output.stem + ".report.png")
    with atomic_path(png) as tmp:
        plot_latency(report, tmp)
    report["plot"] = png.name
    write_text(pj, json.dumps(report, indent=2) + "\n")
    write_text(pm, to_markdown(report))
    return pj, pm, png


def plot_latency(report: dict, out_png: Path) -> None:
    """Latency against size, and against top-1 agreement with FP32 when the model is a classifier."""
    from device_bench.compare import plot_comparison

    agree = [r["top1_agreement"] for r in report["fidelity"] or [] if "top1_agreement" in r]
    accuracy = None
    if agree:
        accuracy = {label: 1.0 for label in report["models"]}
        accuracy[report["precision"]] = min(agree)
    plot_comparison(report["timing"], accuracy=accuracy, out_png=out_png,
                    accuracy_label="top-1 agreement with FP32")


def _mb(n: int) -> str:
    return f"{n / 1e6:.3f} MB"


def _g(x: float) -> str:
    return f"{x:.3g}"


def summary_rows(report: dict) -> list[tuple[str, ...]]:
    """The headline table: one row per figure, one column per model (FP32 and the output precision)."""
    labels = list(report["models"])
    cols = [report["models"][k] for k in labels]
    rows = [("", *labels)]
    rows.append(("size", *(_mb(c["size_bytes"]) for c in cols)))
    rows.append(("params", *(f"{c['params']:,}" for c in cols)))
    rows.append(("MACs", *(f"{c['macs']:,}" for c in cols)))
    rows.append(("ops", *(str(sum(c["op_histogram"].values())) for c in cols)))
    rows.append((f"median latency ({cols[0]['latency']['threads']} thread)",
                 *(f"{c['latency']['median_ms']:.3f} ms" for c in cols)))
    return rows


def fidelity_rows(report: dict) -> list[tuple[str, ...]]:
    rows = [("output", "top-1 agreement", "cosine (mean)", "max abs error", "mean abs error")]
    for r in report["fidelity"] or []:
        agree = f"{100 * r['top1_agreement']:.2f} %" if "top1_agreement" in r else "-"
        rows.append((r["name"], agree, f"{r['cosine_mean']:.5f}", _g(r["max_abs_error"]), _g(r["mean_abs_error"])))
    return rows


def _md_table(rows: list[tuple[str, ...]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def to_markdown(report: dict) -> str:
    prec = report["precision"]
    out = [f"# edgeopt report: {Path(report['source']['path']).name} → {prec}", ""]
    if report.get("output"):
        out += [f"Output: `{report['output']}` ({100 * report['size_ratio']:.1f} % of the FP32 .tflite).", ""]
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
        out += [f"## Import parity (vs {par['reference']}, tolerance {par['tolerance']:g})", ""]
        out += [_md_table([("output", "max abs error", "max rel error")] + [
            (o["name"], _g(o["max_abs_error"]), _g(o["max_rel_error"])) for o in par["outputs"]]), ""]
    out += ["## Conversion parity (FP32 .tflite vs Keras)", "", _md_table(
        [("output", "max abs error", "max rel error")]
        + [(o["name"], _g(o["max_abs_error"]), _g(o["max_rel_error"])) for o in report["conversion_parity"]]), ""]
    ev = report["evaluation_data"]
    if report["fidelity"] is not None:
        out += [f"## Fidelity of {prec} vs FP32", "",
                f"On {ev['heldback_samples']} held-back samples from `{ev['source']}` "
                f"(calibration used {ev['calibration_samples']} others).", "", _md_table(fidelity_rows(report)), ""]
    out += ["## Op histogram", ""]
    labels = list(report["models"])
    ops = sorted({op for m in report["models"].values() for op in m["op_histogram"]})
    out += [_md_table([("op", *labels)] + [
        (op, *(str(report["models"][m]["op_histogram"].get(op, 0)) for m in labels)) for op in ops]), ""]
    if all("delegates" in m for m in report["models"].values()):
        out += ["## Delegate compatibility (static analysis)", ""]
        rows = [("delegate", *(f"{m}: delegated ops / partitions" for m in labels))]
        for d in report["models"][labels[0]]["delegates"]:
            cells = []
            for m in labels:
                r = report["models"][m]["delegates"][d]
                cells.append(f"{r.get('delegated_ops', 0)}/{r.get('total_ops', 0)} in {r.get('partitions', 0)}")
            rows.append((d, *cells))
        out += [_md_table(rows), ""]
    if report["warnings"] or report["notes"]:
        out += ["## Warnings and notes", ""] + [f"- {w}" for w in report["warnings"] + report["notes"]] + [""]
    out += ["## Lineage", "", _md_table([("stage", "seconds", "input", "output", "params")] + [
        (s["stage"], f"{s['seconds']:.2f}", str(s["input_hash"]), s["output_hash"],
         ", ".join(f"{k}={v}" for k, v in s["params"].items())) for s in report["lineage"]]), ""]
    return "\n".join(out)
