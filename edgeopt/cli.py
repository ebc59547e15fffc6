"""The `edgeopt` command line: a thin layer over the pipeline, the stage registry and the analysers.

Heavy libraries (TensorFlow, onnxruntime) are imported inside the commands, so `edgeopt --help` stays instant.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import EdgeoptError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Compile ONNX or Keras models into small, fast, checked `.tflite` files for phones and boards.\n\n"
    "Example: `edgeopt compress model.onnx --int8 --calib images/ -o model_int8.tflite`",
)

PRE = "Calibration data and preprocessing"
IMP = "Import"
QNT = "Precision and quantization"
REP = "Report"


def _data_params(calib, calib_samples, holdout, size, mean, std, channel_order, value_range, resize):
    """DataParams from the preprocessing flags (strings such as "224", "240x320", "0.485,0.456,0.406")."""
    from .data import parse_preprocess_args
    from .params import DataParams

    pre = parse_preprocess_args(size=size, mean=mean, std=std, channel_order=channel_order,
                                value_range=value_range, resize=resize)
    return _checked(DataParams, dict(calib=None if calib is None else str(calib), calib_samples=calib_samples,
                                     holdout=holdout, size=tuple(pre.size or ()), mean=pre.mean, std=pre.std,
                                     channel_order=pre.channel_order, value_range=pre.value_range,
                                     resize=pre.resize))


def _checked(cls, values):
    from .errors import RecipeError

    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise RecipeError(str(exc)) from None


@app.command(no_args_is_help=True)
def compress(
    model: Path = typer.Argument(..., help="ONNX file, tf_keras .h5/.keras file or SavedModel folder"),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="output .tflite (default: ./<model>_<precision>.tflite); "
                                               "the report is written beside it"),
    int8: bool = typer.Option(False, "--int8", help="full-integer INT8 post-training quantization", rich_help_panel=QNT),
    fp16: bool = typer.Option(False, "--fp16", help="float16 weights", rich_help_panel=QNT),
    dynamic_range: bool = typer.Option(False, "--dynamic-range", help="int8 weights, float activations",
                                       rich_help_panel=QNT),
    io_type: str = typer.Option("int8", "--io-type", help="INT8 model input/output type: int8, uint8 or float32",
                                rich_help_panel=QNT),
    per_channel: bool = typer.Option(True, "--per-channel/--per-tensor", help="weight scales per output channel "
                                     "or one per tensor", rich_help_panel=QNT),
    calib: Optional[Path] = typer.Option(None, "--calib", help="image folder, .npy/.npz (preprocessed, original "
                                         "layout) or idx file", rich_help_panel=PRE),
    calib_samples: int = typer.Option(256, "--calib-samples", help="samples to read (a seeded random choice when there are more)",
                                       rich_help_panel=PRE),
    holdout: float = typer.Option(0.2, "--holdout", help="fraction held back to measure fidelity",
                                  rich_help_panel=PRE),
    size: Optional[str] = typer.Option(None, "--size", help="resize images to H or H,W", rich_help_panel=PRE),
    mean: Optional[str] = typer.Option(None, "--mean", help="per-channel mean, e.g. 0.485,0.456,0.406",
                                       rich_help_panel=PRE),
    std: Optional[str] = typer.Option(None, "--std", help="per-channel std, e.g. 0.229,0.224,0.225",
                                      rich_help_panel=PRE),
    channel_order: str = typer.Option("rgb", "--channel-order", help="rgb or bgr", rich_help_panel=PRE),
    resize: str = typer.Option("center-crop", "--resize", help="center-crop (keep the aspect ratio) or stretch",
                               rich_help_panel=PRE),
    value_range: Optional[str] = typer.Option(None, "--value-range", help="map pixels 0..255 onto LO,HI "
                                              "(default 0,1)", rich_help_panel=PRE),
    input_shape: List[str] = typer.Option([], "--input-shape", help="fix dynamic dims: NAME:1,3,320,320 "
                                          "(repeatable)", rich_help_panel=IMP),
    parity_tolerance: float = typer.Option(1e-4, "--parity-tolerance", help="max import error relative to each "
                                           "output's scale", rich_help_panel=IMP),
    parity_samples: int = typer.Option(4, "--parity-samples", help="inputs the parity check runs",
                                       rich_help_panel=IMP),
    latency_runs: int = typer.Option(50, "--latency-runs", help="timed runs per model", rich_help_panel=REP),
    warmup_runs: int = typer.Option(5, "--warmup-runs", help="untimed runs before timing", rich_help_panel=REP),
    num_threads: int = typer.Option(1, "--num-threads", help="interpreter threads for latency", rich_help_panel=REP),
    delegates: bool = typer.Option(True, "--delegates/--no-delegates", help="delegate-compatibility analysis",
                                   rich_help_panel=REP),
    recipe_out: Optional[Path] = typer.Option(None, "--recipe-out", help="also write the equivalent recipe (TOML)"),
):
    """Import, check, quantize and convert a model to `.tflite`, with a report beside it.

    Examples:

    * `edgeopt compress model.onnx` (FP32 .tflite)

    * `edgeopt compress model.onnx --int8 --calib images/ --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225`

    * `edgeopt compress mnist.onnx --int8 --calib t10k-images-idx3-ubyte.gz --value-range 0,255 -o mnist_int8.tflite`
    """
    from .params import ImportParams, ReportParams
    from .pipeline import StageCall, run

    chosen = [n for n, on in (("int8", int8), ("fp16", fp16), ("dynamic-range", dynamic_range)) if on]
    if len(chosen) > 1:
        raise typer.BadParameter("choose one of --int8, --fp16, --dynamic-range")
    precision = chosen[0] if chosen else "fp32"
    data = _data_params(calib, calib_samples, holdout, size, mean, std, channel_order, value_range, resize)
    imp = _checked(ImportParams, dict(input_shape=tuple(input_shape), parity_tolerance=parity_tolerance,
                                      parity_samples=parity_samples))
    rep = _checked(ReportParams, dict(latency_runs=latency_runs, warmup_runs=warmup_runs, num_threads=num_threads,
                                      delegates=delegates))
    calls = [StageCall("import", {k: getattr(imp, k) for k in ("input_shape", "parity_tolerance", "parity_samples")})]
    if precision == "int8":
        calls.append(StageCall("quantize.ptq", {"io_type": io_type, "per_channel": per_channel}))
    else:
        calls.append(StageCall("convert.tflite", {"precision": precision}))
    out = output or Path(f"{model.stem if model.suffix else model.name}_{precision}.tflite")
    if recipe_out is not None:
        from .outputs import write_text
        from .recipe import dump_recipe

        write_text(recipe_out, dump_recipe(calls, data=data, report=rep))
    result = run(model, calls, output=out, data=data, report=rep)
    _print_result(result)


@app.command("run", no_args_is_help=True)
def run_recipe(
    recipe: Path = typer.Argument(..., help="recipe TOML file ([[stage]] tables)"),
    model: Path = typer.Argument(..., help="model to run it on"),
    output: Path = typer.Option(..., "-o", "--output", help="output .tflite (or .keras for import-only recipes)"),
    calib: Optional[Path] = typer.Option(None, "--calib", help="calibration data (overrides the recipe's [data])"),
):
    """Run a recipe on a model.

    Example: `edgeopt run recipes/int8_ptq.toml model.onnx --calib images/ -o model_int8.tflite`
    """
    from .pipeline import run
    from .recipe import load_recipe

    r = load_recipe(recipe)
    data = r.data_params(calib=None if calib is None else str(calib))
    result = run(model, r.calls, output=output, data=data, report=r.report_params())
    _print_result(result)


def _print_result(result) -> None:
    from rich.console import Console
    from rich.table import Table

    from .report import fidelity_rows, summary_rows

    con = Console()
    rep = result.report
    if rep is not None:
        for title, rows in (("edgeopt: FP32 vs " + rep["precision"], summary_rows(rep)),
                            (f"fidelity on {rep['evaluation_data']['heldback_samples']} held-back samples",
                             fidelity_rows(rep) if rep["fidelity"] else None)):
            if rows is None:
                continue
            t = Table(title=title)
            for i, h in enumerate(rows[0]):
                t.add_column(h or "", justify="left" if i == 0 else "right")
            for r in rows[1:]:
                t.add_row(*r)
            con.print(t)
    con.print(f"wrote {result.output}" + "".join(f"\nwrote {p}" for p in result.report_paths))


@app.command()
def stages():
    """List every stage, with the recipe keys (and CLI flags) it accepts."""
    from rich.console import Console
    from rich.table import Table

    from .params import DataParams, ReportParams
    from .registry import StageSpec, all_stages, field_info

    con = Console()
    extra = [StageSpec("[data]", DataParams, None, DataParams.__doc__),
             StageSpec("[report]", ReportParams, None, ReportParams.__doc__)]
    for spec in all_stages() + extra:
        from rich.markup import escape

        t = Table(title=escape(f"{spec.name}: {spec.doc}"), title_justify="left")
        for col in ("key", "type", "default", "flag / meaning"):
            t.add_column(col)
        for name, typ, default, help_ in field_info(spec.params):
            t.add_row(name, typ, repr(default), f"--{name.replace('_', '-')}  {help_}")
        con.print(t)


@app.command(no_args_is_help=True)
def inspect(
    model: Path = typer.Argument(..., help=".onnx or .tflite file"),
    delegates: bool = typer.Option(False, "--delegates", help="which ops GPU/NNAPI/Edge TPU/Hexagon/Core ML run"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the summary as JSON"),
):
    """Show inputs/outputs, op histogram, params, MACs and tensor quantization of a model.

    Example: `edgeopt inspect model_int8.tflite --delegates`
    """
    import json

    from rich.console import Console

    from .analyze.delegates import analyze_delegates
    from .analyze.render import render_inspect, summarize
    from .artifact import jsonable

    from .errors import RecipeError

    summary = summarize(model)
    if delegates and model.suffix.lower() != ".tflite":
        raise RecipeError("--delegates analyses .tflite files", hint=f"compress first: edgeopt compress {model}")
    dele = analyze_delegates(model) if delegates else None
    Console().print(render_inspect(summary, delegates=dele))
    if json_out is not None:
        from .outputs import write_text

        doc = {"summary": summary, "delegates": dele}
        write_text(json_out, json.dumps(jsonable(doc), indent=2) + "\n")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             add_help_option=False)
def bench(ctx: typer.Context):
    """Measure a `.tflite` on this host, a phone (adb) or a board (ssh); `edgeopt bench --help` for flags.

    Example: `edgeopt bench model_int8.tflite --num-threads 1 --num-runs 100 --json latency.json`
    """
    from device_bench.cli import main as bench_main

    raise typer.Exit(bench_main(list(ctx.args)))


def main() -> None:
    try:
        app()
    except EdgeoptError as exc:
        from .console import err_console

        from rich.markup import escape

        # soft_wrap: an error line stays one line in logs, whatever the terminal width
        err_console().print(f"[red]error:[/red] {escape(exc.message)}", highlight=False, soft_wrap=True)
        if exc.hint:
            err_console().print(f"  hint: {exc.hint}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
