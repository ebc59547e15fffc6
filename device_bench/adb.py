"""Benchmark a .tflite on an Android phone over adb with a ``benchmark_model`` binary the user supplies.

The binary (built for the phone's ABI, e.g. ``android_aarch64_benchmark_model``) and the model are pushed to
``/data/local/tmp``, run with benchmark_model's own flags, and its output is parsed into the same JSON schema as
the local runner (``source: "benchmark_model"``).
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess

from .parse_benchmark_model import parse
from .runner import SCHEMA, BenchError

REMOTE_DIR = "/data/local/tmp"


def resolve_adb(adb=None, /):
    """The adb executable: the given path, else ``adb`` from PATH; raise BenchError when there is none."""
    found = shutil.which(adb or "adb")
    if not found:
        raise BenchError(f"adb not found ({adb or 'adb'} is not an executable on PATH)")
    return found


def benchmark_flags(*, graph, num_threads=1, warmup_runs=1, num_runs=50, use_gpu=False, use_nnapi=False,
                    use_xnnpack=None, use_hexagon=False, external_delegate_path=None,
                    external_delegate_options=None, enable_op_profiling=False):
    """benchmark_model's command-line flags (its own snake_case names) for these settings.

    >>> benchmark_flags(graph="/data/local/tmp/m.tflite", num_runs=10)[:2]
    ['--graph=/data/local/tmp/m.tflite', '--num_threads=1']
    """
    flags = [f"--graph={graph}", f"--num_threads={num_threads}", f"--warmup_runs={warmup_runs}",
             f"--num_runs={num_runs}"]
    for name, on in (("use_gpu", use_gpu), ("use_nnapi", use_nnapi), ("use_hexagon", use_hexagon),
                     ("enable_op_profiling", enable_op_profiling)):
        if on:
            flags.append(f"--{name}=true")
    if use_xnnpack is not None:
        flags.append(f"--use_xnnpack={'true' if use_xnnpack else 'false'}")
    if external_delegate_path:
        flags.append(f"--external_delegate_path={external_delegate_path}")
    if external_delegate_options:
        flags.append(f"--external_delegate_options={external_delegate_options}")
    return flags


def _call(command, /, *, what):
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="replace", check=False)
    except OSError as exc:
        raise BenchError(f"cannot run {command[0]}: {exc}") from exc
    output = (done.stdout or "") + (done.stderr or "")
    if done.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise BenchError(f"adb failed to {what} (exit {done.returncode}):\n{tail}")
    return output


def run_android(model_path, /, *, benchmark_binary, adb=None, serial=None, keep_files=False, **options):
    """Push ``benchmark_binary`` and the model, run it on the phone, return the parsed result dict.

    ``options`` are the keyword arguments of :func:`benchmark_flags` other than ``graph``.

    >>> run_android("m.tflite", benchmark_binary="android_aarch64_benchmark_model", use_gpu=True)  # doctest: +SKIP
    """
    model_path, benchmark_binary = os.fspath(model_path), os.fspath(benchmark_binary)
    for label, path in (("model", model_path), ("benchmark_model binary", benchmark_binary)):
        if not os.path.isfile(path):
            raise BenchError(f"{label} not found: {path}")
    base = [resolve_adb(adb)] + (["-s", serial] if serial else [])
    remote_bin = f"{REMOTE_DIR}/benchmark_model"
    remote_model = f"{REMOTE_DIR}/{os.path.basename(model_path)}"
    _call(base + ["push", benchmark_binary, remote_bin], what="push the benchmark_model binary")
    _call(base + ["shell", "chmod", "755", remote_bin], what="make benchmark_model executable")
    _call(base + ["push", model_path, remote_model], what="push the model")
    flags = benchmark_flags(graph=remote_model, **options)
    try:
        # `adb shell` joins its arguments into one shell command line on the phone, so each one is quoted.
        output = _call(base + ["shell", " ".join(shlex.quote(a) for a in [remote_bin, *flags])],
                       what="run benchmark_model")
    finally:
        if not keep_files:
            _call(base + ["shell", "rm", "-f", remote_model, remote_bin], what="remove the pushed files")
    parsed = parse(output)
    if parsed["inference_avg_us"] is None:
        reason = "; ".join(parsed["errors"]) or "no timings in its output"
        raise BenchError(f"benchmark_model did not finish on the phone: {reason}")
    return to_result(parsed, model_path=model_path, settings={"serial": serial, **options}, raw_output=output)


def to_result(parsed, /, *, model_path, settings, raw_output=None):
    """The runner's JSON schema filled from a parsed benchmark_model output."""
    size = os.path.getsize(model_path)
    memory = parsed["memory_mb"]
    delegates = [{"name": d["name"], "kind": "benchmark_model", "execution": d["execution"]}
                 for d in parsed["delegate_applied"]]
    delegates += [{"name": d["delegate"], "kind": "benchmark_model", "nodes_replaced": d["nodes_replaced"],
                   "nodes_total": d["nodes_total"], "partitions": d["partitions"]} for d in parsed["delegates"]]
    return {
        "schema": SCHEMA,
        "source": "benchmark_model",
        "model": {"path": model_path, "name": os.path.basename(model_path), "size_bytes": size,
                  "size_mb": size / 1e6},
        "runtime": {"name": parsed["tool"], "version": None},
        "host": {"platform": "android", "serial": settings.get("serial")},
        "settings": settings,
        "threads": parsed["num_threads"] or settings.get("num_threads"),
        "delegates": delegates,
        "delegates_created": parsed["delegates_created"],
        "delegate_fallback": None,
        "timings_ms": {"init": parsed["init_ms"], "first_inference": parsed["first_inference_ms"],
                       "warmup_mean": parsed["warmup_avg_ms"]},
        "latency_ms": parsed["latency_ms"],
        # benchmark_model's "init"/"overall" are max-RSS increases from the tool's start, like peak_rss_increase.
        "memory_mb": {"peak_rss": memory["peak"], "init_increase": memory["init"],
                      "peak_rss_increase": memory["overall"]},
        "op_profile": parsed["op_profile"],
        "errors": parsed["errors"],
        "raw_output": raw_output,
    }
