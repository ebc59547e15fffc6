"""``device_bench``: the command line (this host, ``--android`` over adb, ``--ssh HOST``, ``--compare``, ``--parse``).

    device_bench model.tflite --num-threads 2 --num-runs 200 --json out.json
    device_bench model.tflite --android --benchmark-binary android_aarch64_benchmark_model --use-gpu
    device_bench model.tflite --ssh rpi.local --ssh-user pi --remote-python python3
    device_bench --compare fp32=m.tflite int8=m_int8.tflite --plot cmp.png --accuracy fp32=0.91 int8=0.90
    device_bench --parse benchmark_output.txt --json parsed.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys

from .runner import BenchError, add_runner_arguments, format_table, options_from_args, write_json


def build_parser():
    """The argparse parser of ``device_bench``."""
    parser = argparse.ArgumentParser(prog="device_bench", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="*", help="the .tflite file; with --compare, LABEL=PATH pairs")
    parser.add_argument("--json", metavar="FILE", help="write the result as JSON ('-' for stdout)")
    parser.add_argument("--parse", metavar="FILE", help="parse a saved benchmark_model or benchmark_litert_model "
                                                        "output instead of running")
    parser.add_argument("--list-delegates", action="store_true", help="which standard delegate libraries load here")
    add_runner_arguments(parser)
    android = parser.add_argument_group("Android over adb")
    android.add_argument("--android", action="store_true", help="run benchmark_model on a phone over adb")
    android.add_argument("--benchmark-binary", metavar="PATH", help="benchmark_model built for the phone")
    android.add_argument("--adb", metavar="PATH", help="adb executable (default: adb on PATH)")
    android.add_argument("--serial", help="device serial (adb -s)")
    android.add_argument("--use-nnapi", action="store_true", help="benchmark_model --use_nnapi=true")
    android.add_argument("--use-hexagon", action="store_true", help="benchmark_model --use_hexagon=true")
    android.add_argument("--enable-op-profiling", action="store_true", help="per-operator timings")
    board = parser.add_argument_group("Linux board over ssh")
    board.add_argument("--ssh", metavar="HOST", help="run runner.py on HOST over ssh")
    board.add_argument("--ssh-user", metavar="USER")
    board.add_argument("--ssh-port", type=int, default=22, metavar="PORT")
    board.add_argument("--identity", metavar="KEY", help="private key file (ssh -i)")
    board.add_argument("--known-hosts", metavar="FILE", help="known_hosts file the host key must match")
    board.add_argument("--remote-python", default="python3", metavar="EXE", help="python on the board")
    board.add_argument("--remote-dir", default="/tmp/device_bench", metavar="DIR")
    comparison = parser.add_argument_group("comparison on this host")
    comparison.add_argument("--compare", action="store_true", help="interleaved runs of LABEL=PATH models")
    comparison.add_argument("--rounds", type=int, default=5)
    comparison.add_argument("--runs-per-round", type=int, default=10)
    comparison.add_argument("--plot", metavar="PNG", help="write a latency/accuracy/size plot")
    comparison.add_argument("--accuracy", nargs="+", metavar="LABEL=VALUE", help="accuracies for the plot")
    return parser


def _pairs(items, /, *, what, convert=str):
    pairs = {}
    for item in items or []:
        label, sep, value = item.partition("=")
        if not sep or not label:
            raise BenchError(f"{what} must be LABEL=VALUE, got {item!r}")
        try:
            pairs[label] = convert(value)
        except ValueError as exc:
            raise BenchError(f"bad value in {item!r}: {exc}") from exc
    return pairs


def _single_model(args, /):
    if len(args.model) != 1:
        raise BenchError(f"expected one model path, got {len(args.model)}")
    return args.model[0]


def dispatch(args, /):
    """Run what the flags ask for and return the result dict."""
    if args.parse:
        return parse_file(args.parse)
    if args.list_delegates:
        from .delegates import probe

        return probe()
    if args.compare:
        from .compare import compare, plot_comparison

        result = compare(_pairs(args.model, what="--compare models"), rounds=args.rounds,
                         runs_per_round=args.runs_per_round, num_threads=args.num_threads,
                         warmup_runs=args.warmup_runs, use_xnnpack=args.use_xnnpack, seed=args.seed)
        if args.plot:
            accuracy = _pairs(args.accuracy, what="--accuracy", convert=float) or None
            result["plot"] = str(plot_comparison(result, accuracy=accuracy, out_png=args.plot))
        return result
    model = _single_model(args)
    if args.android:
        from .adb import run_android

        if not args.benchmark_binary:
            raise BenchError("--android needs --benchmark-binary (a benchmark_model built for the phone)")
        return run_android(model, benchmark_binary=args.benchmark_binary, adb=args.adb, serial=args.serial,
                           num_threads=args.num_threads, warmup_runs=args.warmup_runs, num_runs=args.num_runs,
                           use_gpu=args.use_gpu, use_nnapi=args.use_nnapi, use_xnnpack=args.use_xnnpack,
                           use_hexagon=args.use_hexagon, external_delegate_path=args.external_delegate_path,
                           external_delegate_options=args.external_delegate_options,
                           enable_op_profiling=args.enable_op_profiling)
    options = options_from_args(args)
    if args.ssh:
        from .ssh import run_remote

        if options.pop("input_data"):
            raise BenchError("--input-data is not supported with --ssh (only the model is copied)")
        return run_remote(args.ssh, model, user=args.ssh_user, port=args.ssh_port, identity=args.identity,
                          known_hosts=args.known_hosts, python=args.remote_python, remote_dir=args.remote_dir,
                          **options)
    from .runner import benchmark

    return benchmark(model, **options)


def print_result(result, /, *, stream):
    """A table for a benchmark result (rich when installed, plain text otherwise); JSON for other results."""
    if "latency_ms" not in result or "timings_ms" not in result:
        stream.write(json.dumps({k: v for k, v in result.items() if k != "raw_output"}, indent=2) + "\n")
        return
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        stream.write(format_table(result) + "\n")
        return
    table = Table(title=f"{result['model']['name']} ({result['source']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for line in format_table(result).splitlines():
        key, _, value = line.partition("  ")
        table.add_row(key.strip(), value.strip())
    Console(file=stream).print(table)


def parse_file(path, /):
    """Parse a saved benchmark_model / benchmark_litert_model output; BenchError when it holds no results.

    >>> parse_file("tests/data/benchmark_model/03_tf1_15_gpu_explicit.txt")["latency_ms"]["count"]   # doctest: +SKIP
    50
    """
    from .parse_benchmark_model import parse

    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            parsed = parse(handle.read())
    except OSError as exc:
        raise BenchError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if parsed["inference_avg_us"] is None and parsed["init_us"] is None:
        if parsed["errors"]:
            raise BenchError(f"{path}: the benchmark did not finish: {'; '.join(parsed['errors'][:3])}")
        raise BenchError(f"{path}: no benchmark results found",
                         hint="give the output of benchmark_model (its `count=... avg=...` and `Inference timings` "
                              "lines) or of LiteRT's benchmark_litert_model (its BENCHMARK RESULTS block)")
    return parsed


def describe(args, /):
    """What a run is doing, for a progress line: ``benchmarking m.tflite on this host``.

    >>> describe(build_parser().parse_args(["m.tflite", "--ssh", "rpi.local"]))
    'benchmarking m.tflite on rpi.local over ssh'
    """
    if args.parse:
        return f"parsing {args.parse}"
    if args.list_delegates:
        return "probing delegate libraries"
    if args.compare:
        return f"timing {len(args.model)} models interleaved"
    model = args.model[0] if args.model else "the model"
    where = ("on the phone over adb" if args.android else f"on {args.ssh} over ssh" if args.ssh else "on this host")
    return f"benchmarking {model} {where}"


def run(argv=None, /, *, busy=None):
    """Parse the flags, benchmark (or parse), write the JSON and print the table; returns the exit code (argparse's
    for a bad flag or --help) and raises :class:`BenchError` for every other problem. ``busy(message)``, when
    given, is a context manager shown while the work runs (edgeopt passes its spinner)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        with busy(describe(args)) if busy is not None else contextlib.nullcontext():
            result = dispatch(args)
        if args.json:
            write_json(result, args.json)
        print_result(result, stream=sys.stderr if args.json == "-" else sys.stdout)
    except (OSError, RuntimeError, ValueError) as exc:  # a runtime, file system or device failure not named above
        text = str(exc).strip()
        raise BenchError(f"{describe(args)} failed: {type(exc).__name__}: {text.splitlines()[0] if text else ''}",
                         hint="check the model with `edgeopt inspect`; try --use-xnnpack false or fewer threads")
    return 0


def main(argv=None):
    """Entry point of ``device_bench``; returns the exit code (2 for user mistakes, 130 on Ctrl-C; no traceback)."""
    try:
        return run(argv)
    except BenchError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
