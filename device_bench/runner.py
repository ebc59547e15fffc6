#!/usr/bin/env python3
"""Benchmark one .tflite file on the machine this file runs on.

This file stands alone: it needs only numpy and ``ai_edge_litert`` (or the older ``tflite_runtime``), so it can be
copied by itself to a board and run there::

    python3 runner.py model.tflite --num-threads 2 --num-runs 100 --json out.json

The flags reuse TFLite ``benchmark_model``'s names in kebab-case. ``--json -`` writes the JSON result to stdout and
the table to stderr, which is how ``device_bench.ssh`` reads results from a remote board.

What is timed (all wall clock, ``time.perf_counter_ns``):

- ``init``: interpreter creation (model load, delegate application) plus ``allocate_tensors``.
- ``first_inference``: the first ``invoke`` after the inputs are set.
- ``warmup_mean``: mean of the ``warmup_runs`` invokes that follow.
- ``latency_ms``: the measured invokes, at least ``num_runs`` of them and for at least ``min_secs``, stopping early
  once ``max_secs`` have passed (after at least one run). Inputs are set once before the loop, as benchmark_model
  does, so only ``invoke`` is timed.

What ``memory_mb`` measures: ``ru_maxrss`` from ``resource.getrusage(RUSAGE_SELF)``, the high-water mark of this
process's resident set. ``baseline_peak_rss`` is read just before the interpreter is created (Python, numpy and
the runtime are loaded by then), ``peak_rss`` after the last run, and ``peak_rss_increase`` is their difference:
the extra resident memory the model, its arena and the delegates pushed the process to. Because it is a high-water
mark, the increase reads 0 if the process had already peaked higher before the model was loaded (run it in a
fresh process, as the CLI does, for a meaningful number).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import resource
import sys
import time

import numpy as np

SCHEMA = "device_bench/1"

# Standard library names of the delegates benchmark_model knows; `--use-gpu` loads the GPU one by this name.
KNOWN_DELEGATE_LIBRARIES = {
    "gpu": "libtensorflowlite_gpu_delegate.so",
    "edgetpu": "libedgetpu.so.1",
    "qnn": "libQnnTFLiteDelegate.so",
}

# benchmark_model's default for --max_secs: stop a run that exceeds 150 seconds.
DEFAULT_MAX_SECS = 150.0


class BenchError(Exception):
    """A problem with the model, the inputs, a delegate, the device or a flag, explained in the message, with an
    optional hint saying what to do (exit code 2). ``edgeopt bench`` shows it as an edgeopt error.

    >>> str(BenchError("model file not found: m.tflite", hint="check the path"))
    'model file not found: m.tflite\\n  hint: check the path'
    """

    exit_code = 2

    def __init__(self, message, *, hint=None):
        self.message, self.hint = str(message), hint
        super().__init__(self.message if hint is None else f"{self.message}\n  hint: {hint}")


# ----------------------------------------------------------------------------------------------- runtime loading
def load_runtime():
    """Return ``(module, name, version)`` for ai_edge_litert, or tflite_runtime when LiteRT is absent."""
    try:
        from ai_edge_litert import interpreter as module

        import ai_edge_litert

        return module, "ai_edge_litert", getattr(ai_edge_litert, "__version__", "unknown")
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as module

        import tflite_runtime

        return module, "tflite_runtime", getattr(tflite_runtime, "__version__", "unknown")
    except ImportError as exc:
        raise BenchError(
            "no TFLite runtime found: install ai-edge-litert (pip install ai-edge-litert) or tflite-runtime"
        ) from exc


def parse_delegate_options(text):
    """Parse benchmark_model's ``"k1:v1;k2:v2"`` option string into a dict of strings.

    >>> parse_delegate_options("backend:htp;log_level:2")
    {'backend': 'htp', 'log_level': '2'}
    """
    if text is None or isinstance(text, dict):
        return dict(text or {})
    options = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        key, sep, value = item.partition(":")
        if not sep or not key.strip():
            raise BenchError(f"bad delegate option {item!r} in {text!r}: expected 'key:value' pairs joined by ';'")
        options[key.strip()] = value.strip()
    return options


def load_external_delegate(module, path, options, *, label):
    """Load a delegate library with ``load_delegate``; raise :class:`BenchError` naming the library and the reason."""
    try:
        # ctypes first: it raises the same OSError text, without the runtime's noisy half-built Delegate object.
        ctypes.CDLL(path)
        return module.load_delegate(path, options or {})
    except (OSError, ValueError, RuntimeError) as exc:
        raise BenchError(f"cannot load the {label} delegate from {path!r}: {exc}") from exc


# ----------------------------------------------------------------------------------------------- inputs
def random_inputs(details, *, seed=0):
    """Seeded random arrays, one per input, in each input's dtype and value range.

    Floats are uniform in [-1, 1); integers cover their type's full range (int8: -128..127); bools are coin flips.
    """
    rng = np.random.default_rng(seed)
    arrays = []
    for item in details:
        shape, dtype = tuple(int(d) for d in item["shape"]), np.dtype(item["dtype"])
        if dtype == np.bool_:
            arrays.append(rng.integers(0, 2, size=shape).astype(np.bool_))
        elif np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            arrays.append(rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype))
        elif np.issubdtype(dtype, np.floating):
            arrays.append(rng.uniform(-1.0, 1.0, size=shape).astype(dtype))
        else:
            raise BenchError(f"input {item['name']!r} has dtype {dtype}: give its values with --input-data")
    return arrays


def load_input_data(source, details):
    """Arrays for each input from an .npz/.npy path, a dict by input name, or a list in input order."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise BenchError(f"input data file not found: {path}")
        try:
            loaded = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise BenchError(f"cannot read input data {path}: {exc}") from exc
        source = dict(loaded) if hasattr(loaded, "files") else [loaded]
    if isinstance(source, dict):
        names = [d["name"] for d in details]
        if all(name in source for name in names):
            source = [source[name] for name in names]
        else:
            source = list(source.values())
    arrays = list(source) if isinstance(source, (list, tuple)) else [source]
    if len(arrays) != len(details):
        raise BenchError(f"input data has {len(arrays)} arrays but the model has {len(details)} inputs")
    fitted = []
    for array, item in zip(arrays, details):
        array = np.asarray(array)
        want = tuple(int(d) for d in item["shape"])
        if array.shape != want and array.size == int(np.prod(want)):
            array = array.reshape(want)
        if array.shape != want:
            raise BenchError(f"input {item['name']!r} expects shape {want}, the data has shape {array.shape}")
        fitted.append(array.astype(item["dtype"], copy=False))
    return fitted


# ----------------------------------------------------------------------------------------------- statistics
def latency_stats(samples_ms):
    """Mean, median, p90, p99, std, min, max and count of latencies in milliseconds.

    Percentiles interpolate linearly between order statistics (numpy's default), so p90 of 200 runs lies between
    the 180th and 181st fastest.

    >>> latency_stats([1.0, 2.0, 3.0])["median"]
    2.0
    """
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise BenchError("no runs were measured")
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "mean": float(values.mean()), "median": float(p50), "p90": float(p90), "p99": float(p99),
        "std": float(values.std()), "min": float(values.min()), "max": float(values.max()),
        "count": int(values.size),
    }


def peak_rss_mb():
    """The process's resident-set high-water mark in MB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


# ----------------------------------------------------------------------------------------------- session
class Session:
    """One interpreter with its delegates applied and inputs set; ``run(n)`` returns n invoke latencies in ms."""

    def __init__(self, model_path, *, num_threads=1, use_xnnpack=True, xnnpack_fp16=False, use_gpu=False,
                 external_delegate_path=None, external_delegate_options=None, allow_fallback=False,
                 input_data=None, seed=0):
        model_path = os.fspath(model_path)
        if not os.path.isfile(model_path):
            raise BenchError(f"model file not found: {model_path}")
        self.module, self.runtime_name, self.runtime_version = load_runtime()
        self.model_path = model_path
        self.allow_fallback = allow_fallback
        self.fallback = None
        self.delegates = []
        self.baseline_peak_rss_mb = peak_rss_mb()
        loaded = self._external_delegates(use_gpu, external_delegate_path, external_delegate_options)
        resolver = self._resolver(use_xnnpack, xnnpack_fp16)
        start = time.perf_counter_ns()
        self.interpreter = self._create(loaded, num_threads, resolver)
        try:
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BenchError(f"cannot allocate tensors for {model_path}: {exc}") from exc
        self.init_ms = (time.perf_counter_ns() - start) / 1e6
        self.partitions = self._count_delegate_nodes()
        self.input_details = self.interpreter.get_input_details()
        arrays = (load_input_data(input_data, self.input_details) if input_data is not None
                  else random_inputs(self.input_details, seed=seed))
        for item, array in zip(self.input_details, arrays):
            self.interpreter.set_tensor(item["index"], array)

    def _external_delegates(self, use_gpu, path, options_text, /):
        wanted = []
        if use_gpu:
            wanted.append(("GPU", KNOWN_DELEGATE_LIBRARIES["gpu"], {}))
        if path:
            wanted.append(("external", os.fspath(path), parse_delegate_options(options_text)))
        loaded = []
        for label, lib, options in wanted:
            try:
                loaded.append(load_external_delegate(self.module, lib, options, label=label))
                self.delegates.append({"name": label, "kind": "external", "path": lib, "options": options})
            except BenchError as exc:
                self._fallback_or_raise(exc)
        return loaded

    def _fallback_or_raise(self, exc, /):
        if not self.allow_fallback:
            raise BenchError(exc.message, hint="pass --allow-fallback to run on the CPU instead") from exc
        self.fallback = str(exc) if self.fallback is None else f"{self.fallback}; {exc}"

    def _resolver(self, use_xnnpack, xnnpack_fp16, /):
        if xnnpack_fp16:
            # The Python Interpreter takes no XNNPACK options (benchmark_model's --xnnpack_force_fp16 has no
            # counterpart here), so fp16 XNNPACK cannot be asked for from this runtime.
            self._fallback_or_raise(BenchError(
                f"XNNPACK fp16 is not supported by {self.runtime_name} {self.runtime_version}: "
                "its Python Interpreter exposes no XNNPACK options"))
        if use_xnnpack:
            self.delegates.append({"name": "XNNPACK", "kind": "default", "path": None, "options": {}})
            return None
        resolver_type = getattr(self.module, "OpResolverType", None)
        if resolver_type is None:
            raise BenchError(f"{self.runtime_name} {self.runtime_version} cannot turn XNNPACK off "
                             "(no OpResolverType); use ai-edge-litert")
        return resolver_type.BUILTIN_WITHOUT_DEFAULT_DELEGATES

    def _create(self, loaded, num_threads, resolver, /):
        kwargs = {"model_path": self.model_path, "num_threads": num_threads}
        if resolver is not None:
            kwargs["experimental_op_resolver_type"] = resolver
        try:
            return self.module.Interpreter(experimental_delegates=loaded or None, **kwargs)
        except (ValueError, RuntimeError) as exc:
            if not loaded:
                raise BenchError(f"cannot load model {self.model_path}: {exc}") from exc
            names = ", ".join(d["path"] for d in self.delegates if d["kind"] == "external")
            self._fallback_or_raise(BenchError(f"cannot apply the delegate(s) {names}: {exc}"))
            self.delegates = [d for d in self.delegates if d["kind"] != "external"]
            return self._create([], num_threads, resolver)

    def _count_delegate_nodes(self):
        # Each delegated partition appears as one DELEGATE node in the execution plan.
        try:
            return sum(1 for op in self.interpreter._get_ops_details() if op.get("op_name") == "DELEGATE")
        except (AttributeError, ValueError, RuntimeError):
            return None

    def run(self, count, /):
        """Invoke ``count`` times; return the latencies in milliseconds (BenchError when an invoke fails)."""
        times = []
        for _ in range(count):
            start = time.perf_counter_ns()
            try:
                self.interpreter.invoke()
            except (RuntimeError, ValueError) as exc:
                raise BenchError(f"{self.model_path}: the interpreter failed while running the model: "
                                 f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
                                 hint="check the model with `edgeopt inspect`; with a delegate, try --allow-fallback "
                                      "or --use-xnnpack false") from exc
            times.append((time.perf_counter_ns() - start) / 1e6)
        return times

    def run_for(self, *, num_runs, min_secs, max_secs):
        """At least ``num_runs`` runs and at least ``min_secs``; stop after ``max_secs`` (one run at least)."""
        times, start = [], time.perf_counter()
        while True:
            times.extend(self.run(1))
            elapsed = time.perf_counter() - start
            if elapsed >= max_secs or (len(times) >= num_runs and elapsed >= min_secs):
                return times


# ----------------------------------------------------------------------------------------------- benchmark
def host_info():
    """Platform, machine, CPU count and Python version of this host."""
    return {"platform": platform.platform(), "system": platform.system(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version()}


def benchmark(model_path, *, num_threads=1, warmup_runs=1, num_runs=50, min_secs=0.0, max_secs=DEFAULT_MAX_SECS,
              use_xnnpack=True, xnnpack_fp16=False, use_gpu=False, external_delegate_path=None,
              external_delegate_options=None, allow_fallback=False, input_data=None, seed=0):
    """Time a .tflite model on this machine; return a JSON-able dict (schema in device_bench/README.md).

    >>> result = benchmark("model.tflite", num_runs=100)          # doctest: +SKIP
    >>> result["latency_ms"]["median"]                              # doctest: +SKIP
    1.42
    """
    if num_runs < 1 or warmup_runs < 0 or num_threads < 1 and num_threads != -1:
        raise BenchError("--num-runs must be >= 1, --warmup-runs >= 0, --num-threads >= 1 (or -1 for the default)")
    settings = {k: v for k, v in locals().items() if k != "model_path"}
    settings["input_data"] = input_data if input_data is None or isinstance(input_data, str) else "<arrays>"
    session = Session(model_path, num_threads=num_threads, use_xnnpack=use_xnnpack, xnnpack_fp16=xnnpack_fp16,
                      use_gpu=use_gpu, external_delegate_path=external_delegate_path,
                      external_delegate_options=external_delegate_options, allow_fallback=allow_fallback,
                      input_data=input_data, seed=seed)
    first = session.run(1)[0]
    warmup = session.run(warmup_runs)
    measured = session.run_for(num_runs=num_runs, min_secs=min_secs, max_secs=max_secs)
    peak = peak_rss_mb()
    size = os.path.getsize(session.model_path)
    return {
        "schema": SCHEMA,
        "source": "runner",
        "model": {"path": session.model_path, "name": os.path.basename(session.model_path),
                  "size_bytes": size, "size_mb": size / 1e6},
        "runtime": {"name": session.runtime_name, "version": session.runtime_version},
        "host": host_info(),
        "settings": settings,
        "threads": num_threads,
        "delegates": session.delegates,
        "delegate_partitions": session.partitions,
        "delegate_fallback": session.fallback,
        "inputs": [{"name": d["name"], "shape": [int(x) for x in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
                   for d in session.input_details],
        "timings_ms": {"init": session.init_ms, "first_inference": first,
                       "warmup_mean": float(np.mean(warmup)) if warmup else None},
        "latency_ms": latency_stats(measured),
        "memory_mb": {"peak_rss": peak, "baseline_peak_rss": session.baseline_peak_rss_mb,
                      "peak_rss_increase": max(0.0, peak - session.baseline_peak_rss_mb)},
    }


# ----------------------------------------------------------------------------------------------- command line
def _bool(text):
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_runner_arguments(parser):
    """Add the benchmark flags (benchmark_model's names in kebab-case) to an argparse parser."""
    parser.add_argument("--num-threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--warmup-runs", type=int, default=1, help="untimed runs after the first (default 1)")
    parser.add_argument("--num-runs", type=int, default=50, help="minimum number of timed runs (default 50)")
    parser.add_argument("--min-secs", type=float, default=0.0, help="minimum seconds of timed runs (default 0)")
    parser.add_argument("--max-secs", type=float, default=DEFAULT_MAX_SECS,
                        help="stop timed runs after this many seconds (default 150)")
    parser.add_argument("--use-xnnpack", type=_bool, default=True, metavar="BOOL",
                        help="apply LiteRT's default XNNPACK CPU delegate (default true)")
    parser.add_argument("--xnnpack-fp16", action="store_true", help="ask XNNPACK for fp16 inference")
    parser.add_argument("--use-gpu", action="store_true",
                        help=f"load the GPU delegate ({KNOWN_DELEGATE_LIBRARIES['gpu']})")
    parser.add_argument("--external-delegate-path", metavar="SO",
                        help="delegate library, e.g. libedgetpu.so.1 or libQnnTFLiteDelegate.so")
    parser.add_argument("--external-delegate-options", metavar="'K:V;K:V'", help="options for that delegate")
    parser.add_argument("--allow-fallback", action="store_true",
                        help="run on the CPU when a delegate cannot be used (recorded in the JSON)")
    parser.add_argument("--input-data", metavar="NPZ_OR_NPY", help="input arrays (default: seeded random)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    return parser


def options_from_args(args):
    """The keyword arguments of :func:`benchmark` from parsed flags."""
    return {"num_threads": args.num_threads, "warmup_runs": args.warmup_runs, "num_runs": args.num_runs,
            "min_secs": args.min_secs, "max_secs": args.max_secs, "use_xnnpack": args.use_xnnpack,
            "xnnpack_fp16": args.xnnpack_fp16, "use_gpu": args.use_gpu,
            "external_delegate_path": args.external_delegate_path,
            "external_delegate_options": args.external_delegate_options, "allow_fallback": args.allow_fallback,
            "input_data": args.input_data, "seed": args.seed}


def format_table(result):
    """A plain-text summary of a result, for terminals without rich."""
    lat, times, mem = result["latency_ms"], result["timings_ms"], result["memory_mb"]

    def ms(value):
        return "-" if value is None else f"{value:.3f} ms"

    rows = [("model", result["model"]["name"]), ("runtime", f"{result['runtime']['name']} "
                                                             f"{result['runtime']['version']}"),
            ("delegates", ", ".join(d["name"] for d in result["delegates"]) or "none (builtin kernels)"),
            ("init", ms(times["init"])), ("first inference", ms(times["first_inference"])),
            ("warmup mean", ms(times["warmup_mean"]))]
    rows += [(key, ms(lat.get(key))) for key in ("mean", "median", "p90", "p99", "std", "min", "max")]
    rows.append(("runs", str(lat.get("count"))))
    if mem.get("peak_rss") is not None:
        rows.append(("peak RSS", f"{mem['peak_rss']:.1f} MB (+{mem.get('peak_rss_increase') or 0:.1f} MB)"))
    if result.get("delegate_fallback"):
        rows.append(("FALLBACK", result["delegate_fallback"]))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def write_json(result, target):
    """Write the result to a path (atomically: temp name, then rename) or to stdout for ``-``."""
    text = json.dumps(result, indent=2)
    if target == "-":
        sys.stdout.write(text + "\n")
        return
    tmp = f"{target}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.replace(tmp, target)
    except OSError as exc:
        raise BenchError(f"cannot write {target}: {exc}") from exc


def main(argv=None):
    """``python3 runner.py MODEL [flags] [--json FILE|-]``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="runner.py", description="Benchmark a .tflite model on this machine.")
    parser.add_argument("model", help="path of the .tflite file")
    parser.add_argument("--json", metavar="FILE", help="write the result as JSON ('-' for stdout)")
    add_runner_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        result = benchmark(args.model, **options_from_args(args))
        if args.json:
            write_json(result, args.json)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(format_table(result), file=sys.stderr if args.json == "-" else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
