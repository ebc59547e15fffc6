"""The `edgeopt` command line: a thin layer over the pipeline, the stage registry and the analysers.

Heavy libraries (TensorFlow, onnxruntime) are imported inside the commands, so `edgeopt --help` stays instant.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Literal, Optional

import typer
import typer.core

from .errors import EdgeoptError


def _flags_take_no_value(params) -> None:
    """Plain flags (``--int8``, ``--per-channel/--per-tensor``) take no value, so ``--help`` shows none for them."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class _PlainFlags:
    """Mixed into a click command or group: its ``--help`` shows no ``<bool>`` after a plain flag."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _flags_take_no_value(self.params)

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        _flags_take_no_value([option] if option is not None else [])
        return option


class _Command(_PlainFlags, typer.core.TyperCommand):
    """An edgeopt command."""


class _Group(_PlainFlags, typer.core.TyperGroup):
    """The ``edgeopt`` group, with the same flag display as its commands."""


app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True, rich_markup_mode="markdown")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        from . import __version__

        try:
            number = version("edgeopt")
        except PackageNotFoundError:  # running from a source tree that was never installed
            number = __version__
        typer.echo(f"edgeopt {number}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", help="print the edgeopt version and exit",
                                       callback=_version, is_eager=True)):
    """Compile ONNX or Keras models into small, fast, checked `.tflite` files for phones and boards.

    Example: `edgeopt compress model.onnx --int8 --calib images/ -o model_int8.tflite`
    """


PRE = "Calibration data and preprocessing"
IMP = "Import"
QNT = "Precision and quantization"
REP = "Report"
ACC = "Accuracy (labeled data)"


def _data_params(calib, calib_samples, holdout, size, mean, std, channel_order, value_range, resize,
                 labels=None, val=None, val_labels=None):
    """DataParams from the preprocessing flags (strings such as "224", "240x320", "0.485,0.456,0.406")."""
    from .data import parse_preprocess_args
    from .params import DataParams

    pre = parse_preprocess_args(size=size, mean=mean, std=std, channel_order=channel_order,
                                value_range=value_range, resize=resize)
    def text(p):
        return None if p is None else str(p)

    return _checked(DataParams, dict(calib=text(calib), labels=text(labels), val=text(val),
                                     val_labels=text(val_labels), calib_samples=calib_samples,
                                     holdout=holdout, size=tuple(pre.size or ()),
                                     mean=pre.mean if "mean" in pre.stated else (),
                                     std=pre.std if "std" in pre.stated else (),
                                     channel_order=pre.channel_order,
                                     value_range=pre.value_range if "value_range" in pre.stated else (),
                                     resize=pre.resize))


def _checked(cls, values):
    from .errors import RecipeError

    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise RecipeError(str(exc)) from None


@app.command(cls=_Command, no_args_is_help=True)
def compress(
    model: Path = typer.Argument(..., help="ONNX file, tf_keras .h5/.keras file or SavedModel folder"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", metavar="OUT.tflite",
                                          help="output .tflite; default: `MODEL_PRECISION.tflite` in the current "
                                               "folder, e.g. `mnist_int8.tflite` for `mnist.onnx --int8`, "
                                               "`mnist_fp32.tflite` without a precision flag. The report "
                                               "(`OUT.report.json`, `.md`, `.svg`) is written beside it"),
    int8: bool = typer.Option(False, "--int8", help="full-integer INT8 post-training quantization",
                              rich_help_panel=QNT),
    fp16: bool = typer.Option(False, "--fp16", help="float16 weights", rich_help_panel=QNT),
    dynamic_range: bool = typer.Option(False, "--dynamic-range", help="int8 weights, float activations. "
                                       "At most one of --int8, --fp16, --dynamic-range; none: FP32",
                                       rich_help_panel=QNT),
    io_type: Literal["int8", "uint8", "float32"] = typer.Option("int8", "--io-type", help="type of the INT8 "
                                                                "model's inputs and outputs", rich_help_panel=QNT),
    per_channel: bool = typer.Option(True, "--per-channel/--per-tensor", help="weight scales per output channel "
                                     "or one per tensor", rich_help_panel=QNT),
    calib: Optional[Path] = typer.Option(None, "--calib", metavar="DATA", help="image folder, .npy/.npz "
                                         "(preprocessed, original layout) or idx file", rich_help_panel=PRE),
    labels: Optional[Path] = typer.Option(None, "--labels", metavar="FILE", help="labels of the --calib samples: "
                                          "idx label file, .npy integers or an .npz holding `y` (class folders "
                                          "and an .npz with `y` carry their own); accuracy is then measured on "
                                          "the held-back split", rich_help_panel=ACC),
    val: Optional[Path] = typer.Option(None, "--val", metavar="DATA", help="evaluation data for accuracy "
                                       "(folder of class folders, .npy/.npz, idx), every sample read",
                                       rich_help_panel=ACC),
    val_labels: Optional[Path] = typer.Option(None, "--val-labels", metavar="FILE", help="labels of --val "
                                              "(idx, .npy, .npz `y`)", rich_help_panel=ACC),
    calib_samples: int = typer.Option(256, "--calib-samples", help="samples to read (a seeded random choice when "
                                      "there are more)", rich_help_panel=PRE),
    holdout: float = typer.Option(0.2, "--holdout", help="fraction held back to measure fidelity",
                                  rich_help_panel=PRE),
    size: Optional[str] = typer.Option(None, "--size", metavar="H[,W]", help="resize images to H or H,W "
                                       "(default: the model input's size)", rich_help_panel=PRE),
    mean: Optional[str] = typer.Option(None, "--mean", metavar="M[,M,M]", help="per-channel mean, e.g. "
                                       "0.485,0.456,0.406 (default 0)", rich_help_panel=PRE),
    std: Optional[str] = typer.Option(None, "--std", metavar="S[,S,S]", help="per-channel std, e.g. "
                                      "0.229,0.224,0.225 (default 1)", rich_help_panel=PRE),
    channel_order: Literal["rgb", "bgr"] = typer.Option("rgb", "--channel-order", help="channel order the model "
                                                        "expects", rich_help_panel=PRE),
    resize: Literal["center-crop", "stretch"] = typer.Option("center-crop", "--resize", help="center-crop keeps "
                                                             "the aspect ratio; stretch resizes the whole image",
                                                             rich_help_panel=PRE),
    value_range: Optional[str] = typer.Option(None, "--value-range", metavar="LO,HI", help="map pixels 0..255 "
                                              "onto LO,HI (default 0,1)", rich_help_panel=PRE),
    input_shape: List[str] = typer.Option([], "--input-shape", metavar="NAME:DIMS", help="fix dynamic dims, e.g. "
                                          "`input:1,3,320,320` (repeatable; a dynamic batch becomes 1)",
                                          rich_help_panel=IMP),
    parity_tolerance: float = typer.Option(1e-4, "--parity-tolerance", help="max import error relative to each "
                                           "output's scale", rich_help_panel=IMP),
    parity_samples: int = typer.Option(4, "--parity-samples", help="inputs the parity check runs",
                                       rich_help_panel=IMP),
    latency_runs: int = typer.Option(50, "--latency-runs", help="timed runs per model", rich_help_panel=REP),
    warmup_runs: int = typer.Option(5, "--warmup-runs", help="untimed runs before timing", rich_help_panel=REP),
    num_threads: int = typer.Option(1, "--num-threads", help="interpreter threads for latency", rich_help_panel=REP),
    delegates: bool = typer.Option(True, "--delegates/--no-delegates", help="delegate-compatibility analysis",
                                   rich_help_panel=REP),
    profile: bool = typer.Option(False, "--profile", help="print the seconds of each step (import, parity, "
                                 "conversions, calibration, fidelity, latency, ...) as a table; report.json "
                                 "always records them", rich_help_panel=REP),
    recipe_out: Optional[Path] = typer.Option(None, "--recipe-out", metavar="RECIPE.toml",
                                              help="also write the equivalent recipe (TOML)"),
):
    """Import, check, quantize and convert a model to `.tflite`, with a report beside it.

    Examples:

    * `edgeopt compress model.onnx` (FP32, writes `model_fp32.tflite`)

    * `edgeopt compress model.onnx --int8 --calib images/ --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225`

    * `edgeopt compress mnist.onnx --int8 --calib t10k-images-idx3-ubyte.gz --value-range 0,255 -o mnist_int8.tflite`

    * `edgeopt compress mnist.onnx --int8 --calib t10k-images-idx3-ubyte.gz --value-range 0,255 --val
    t10k-images-idx3-ubyte.gz --val-labels t10k-labels-idx1-ubyte.gz` (top-1 accuracy of the original, FP32 and
    INT8 on all 10,000 images; `--labels t10k-labels-idx1-ubyte.gz` instead of `--val`: on the held-back split)

    Exit codes: 0 done; 2 a problem with the input, data or flags; 3 the import does not match onnxruntime;
    4 the model was written but its report is incomplete (a measurement failed; the report says which).
    """
    from .outputs import check_not_input, default_output
    from .params import ImportParams, ReportParams
    from .pipeline import StageCall

    chosen = [n for n, on in (("int8", int8), ("fp16", fp16), ("dynamic-range", dynamic_range)) if on]
    if len(chosen) > 1:
        raise typer.BadParameter("choose one of --int8, --fp16, --dynamic-range")
    precision = chosen[0] if chosen else "fp32"
    data = _data_params(calib, calib_samples, holdout, size, mean, std, channel_order, value_range, resize,
                        labels=labels, val=val, val_labels=val_labels)
    imp = _checked(ImportParams, dict(input_shape=tuple(input_shape), parity_tolerance=parity_tolerance,
                                      parity_samples=parity_samples))
    rep = _checked(ReportParams, dict(latency_runs=latency_runs, warmup_runs=warmup_runs, num_threads=num_threads,
                                      delegates=delegates))
    calls = [StageCall("import", {k: getattr(imp, k) for k in ("input_shape", "parity_tolerance", "parity_samples")})]
    if precision == "int8":
        calls.append(StageCall("quantize.ptq", {"io_type": io_type, "per_channel": per_channel}))
    else:
        calls.append(StageCall("convert.tflite", {"precision": precision}))
    out = output or default_output(model, precision)
    if recipe_out is not None:
        from .outputs import write_text
        from .recipe import dump_recipe

        check_not_input(recipe_out, model, suggestion=out.with_suffix(".toml"))
        write_text(recipe_out, dump_recipe(calls, data=data, report=rep))
    _run_and_print(model, calls, output=out, data=data, report=rep, profile=profile)


@app.command("run", cls=_Command, no_args_is_help=True)
def run_recipe(
    recipe: Path = typer.Argument(..., help="recipe TOML file ([[stage]] tables)"),
    model: Path = typer.Argument(..., help="model to run it on"),
    output: Path = typer.Option(..., "-o", "--output", metavar="OUT", help="output .tflite (or .keras for "
                                "import-only recipes)"),
    calib: Optional[Path] = typer.Option(None, "--calib", metavar="DATA", help="calibration data (overrides the "
                                         "recipe's [data])"),
    profile: bool = typer.Option(False, "--profile", help="print the seconds of each step as a table"),
):
    """Run a recipe on a model.

    Example: `edgeopt run recipes/int8_ptq.toml model.onnx --calib images/ -o model_int8.tflite`
    """
    from .recipe import load_recipe

    r = load_recipe(recipe)
    data = r.data_params(calib=None if calib is None else str(calib))
    _run_and_print(model, r.calls, output=output, data=data, report=r.report_params(), profile=profile)


def _run_and_print(model: Path, calls, *, output: Path, data, report, profile: bool) -> None:
    """Run the pipeline and print its tables; a run whose report is incomplete still prints what there is and
    the files written, then ends with the error (exit code 4)."""
    from .errors import ReportIncompleteError
    from .pipeline import run

    try:
        result = run(model, calls, output=output, data=data, report=report)
    except ReportIncompleteError as exc:
        if exc.result is not None:
            _print_result(exc.result, profile=profile)
        raise
    _print_result(result, profile=profile)


def _print_result(result, *, profile: bool = False) -> None:
    from rich.console import Console

    from .report import accuracy_rows, fidelity_rows, profile_rows, summary_rows

    con = Console()
    rep = result.report
    if rep is not None and rep["models"]:
        con.print(_table("edgeopt: FP32 vs " + rep["precision"], summary_rows(rep)))
    if rep is not None and rep["fidelity"]:
        con.print(_table(f"fidelity on {rep['evaluation_data']['heldback_samples']} held-back samples",
                         fidelity_rows(rep)))
    if rep is not None and rep.get("accuracy") and rep["accuracy"]["models"]:
        acc = rep["accuracy"]
        where = "--val" if acc["data"]["split"] == "val" else "held-back"
        con.print(_table(f"accuracy on {acc['data']['samples']} labeled {where} samples, output "
                         f"{acc['output']['name']}", accuracy_rows(rep)))
    if profile and result.profile is not None:
        con.print(_table("where the time went (seconds)", profile_rows(result.profile)))
    con.print(f"wrote {result.output}" + "".join(f"\nwrote {p}" for p in result.report_paths), markup=False)


def _table(title: str, rows):
    """A rich table from rows whose first row is the header; the first column left-aligned, the others right."""
    from rich.table import Table

    t = Table(title=title)
    for i, h in enumerate(rows[0]):
        t.add_column(h or "", justify="left" if i == 0 else "right")
    for r in rows[1:]:
        t.add_row(*r)
    return t


@app.command(cls=_Command)
def stages():
    """List every stage, with the recipe keys it accepts and the `compress` flags that set them."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .params import DataParams, ReportParams
    from .registry import StageSpec, all_stages, field_info

    con = Console()
    flags = compress_flags()
    extra = [StageSpec("[data]", DataParams, None, DataParams.__doc__),
             StageSpec("[report]", ReportParams, None, ReportParams.__doc__)]
    for spec in all_stages() + extra:
        t = Table(title=escape(f"{spec.name}: {spec.doc}"), title_justify="left")
        for col in ("key", "type", "default", "compress flag", "meaning"):
            t.add_column(col)
        for name, typ, default, help_ in field_info(spec.params):
            t.add_row(name, typ, repr(default), flags.get(name, "(recipe only)"), help_)
        con.print(t)


def compress_flags() -> dict[str, str]:
    """Recipe key → the `compress` flag(s) that set it, read from the `compress` command itself, so `stages`
    never names a flag that does not exist.

    >>> compress_flags()["per_channel"], compress_flags()["precision"]
    ('--per-channel / --per-tensor', '--fp16 | --dynamic-range (neither: fp32)')
    """
    import typer.main

    from .params import ConvertParams
    from .registry import field_info

    command = typer.main.get_command(app).commands["compress"]
    flags = {}
    for param in command.params:
        names = [o for o in param.opts if o.startswith("--")] + list(param.secondary_opts)
        if names and param.name:
            flags[param.name] = " / ".join(names)
    choices = next(t for n, t, _, _ in field_info(ConvertParams) if n == "precision").split("|")
    given = [f"--{c}" for c in choices if f"--{c}" in flags.values()]
    unflagged = [c for c in choices if f"--{c}" not in flags.values()]
    flags["precision"] = " | ".join(given) + (f" (neither: {', '.join(unflagged)})" if unflagged else "")
    return flags


@app.command(cls=_Command, no_args_is_help=True)
def inspect(
    model: Path = typer.Argument(..., help=".onnx, .tflite, tf_keras .keras/.h5 file or SavedModel folder"),
    delegates: bool = typer.Option(False, "--delegates", help="which ops GPU/NNAPI/Edge TPU/Hexagon/Core ML run "
                                   "(.tflite files)"),
    json_out: Optional[Path] = typer.Option(None, "--json", metavar="FILE", help="also write the summary as JSON"),
):
    """Show inputs/outputs, op histogram (layers of a Keras file), params, MACs and tensor quantization of a model.

    Examples: `edgeopt inspect model_int8.tflite --delegates`, `edgeopt inspect model.keras`
    """
    import json

    from rich.console import Console

    from .analyze.keras_file import is_keras_file
    from .artifact import jsonable
    from .errors import RecipeError

    if delegates and model.suffix.lower() != ".tflite":
        raise RecipeError("--delegates analyses .tflite files", hint=f"compress first: edgeopt compress {model}")
    if is_keras_file(model):
        from .analyze.keras_file import render_keras, summarize_keras
        from .console import status

        with status(f"loading {model.name}"):
            summary = summarize_keras(model)
        rendered, dele = render_keras(summary), None
    else:
        from .analyze.delegates import analyze_delegates
        from .analyze.render import render_inspect, summarize

        summary = summarize(model)
        dele = analyze_delegates(model) if delegates else None
        rendered = render_inspect(summary, delegates=dele)
    Console().print(rendered)
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
    from device_bench.cli import run
    from device_bench.runner import BenchError

    from .console import status
    from .errors import DeviceError

    try:
        code = run(list(ctx.args), busy=status)
    except BenchError as exc:
        raise DeviceError(exc.message, hint=exc.hint) from None
    raise typer.Exit(code)


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
