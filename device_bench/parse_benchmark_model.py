"""Parse what TFLite's ``benchmark_model`` and LiteRT's ``benchmark_litert_model`` printed, in every format since
TF 1.x.

Handles: the old ``Average inference timings in us: Warmup: .., Init: .., no stats: ..`` and the newer
``Inference timings in us: Init: .., First inference: .., Warmup (avg): .., Inference (avg): ..`` summaries;
``count=.. first=.. curr=.. min=.. max=.. avg=.. std=..`` lines with or without ``p5= median= p95=``; numbers in
scientific notation (``2.95034e+06``); both memory wordings and the periodic peak; ``INFO:``/``VERBOSE:`` and
logcat prefixes; delegate messages; and the op-profiling tables. Times from the tool are microseconds; the
``*_ms`` fields and ``latency_ms`` are converted.

LiteRT's ``benchmark_litert_model`` (``litert/tools/benchmark_litert_model.h``, ``BenchmarkLoggingListener``) ends
with a ``========== BENCHMARK RESULTS ==========`` block of ``LITERT_LOG`` lines, each prefixed ``INFO: [file:line]``:
``Model initialization: X ms``, ``Warmup (first): X ms``, ``Warmup (avg): X ms (N runs)``, ``Inference (avg|min|max):
X ms``, ``Inference (std): X`` (ms), ``Throughput: X MB/s`` and, under ``Memory Usage:``, ``Init footprint``,
``Overall footprint`` and ``Peak memory`` in MB. Its figures fill the same fields (``tool`` says
``benchmark_litert_model``); the base tool's ``count=`` lines, when printed too, keep their microsecond precision.

>>> parse("Inference timings in us: Init: 855, First inference: 49060, Warmup (avg): 34825.1, "
...       "Inference (avg): 33209.4")["latency_ms"]["mean"]
33.2094
"""
from __future__ import annotations

import re

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

# "11-22 10:00:00.123  1234  1234 I tflite  : " (adb logcat threadtime) and
# "2023-06-14 10:55:20.865 18088-18088 tflite   org.tensorflow.lite.benchmark   I  " (Android Studio).
_LOGCAT = re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+ [VDIWEF] [^:]*?\s*: ?")
_STUDIO = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \d+-\d+ \S+\s+\S+\s+[VDIWEF]  ")
_LEVEL = re.compile(r"^(?:INFO|VERBOSE|WARNING|WARN|ERROR|DEBUG): ")
_SOURCE_LINE = re.compile(r"^\[[\w.+-]+:\d+\] ?")  # LITERT_LOG's "[benchmark_litert_model.h:94] "
_ERROR_LEVEL = re.compile(r"(?:^|\s)ERROR: |^\S.*\s+E\s+\S+\s*: ")

_SUMMARY = re.compile(rf"Inference timings in us: Init: ({NUMBER}), First inference: ({NUMBER}), "
                      rf"Warmup \(avg\): ({NUMBER}), Inference \(avg\): ({NUMBER})")
_OLD_SUMMARY = re.compile(rf"Average inference timings in us: Warmup: ({NUMBER}), Init: ({NUMBER}), "
                          rf"no stats: ({NUMBER})")
_STATS = re.compile(rf"(\w+)=({NUMBER})")
_MEMORY = re.compile(rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
                     rf"init=({NUMBER}) overall=({NUMBER})")
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({NUMBER})")
_REPLACING = re.compile(r"Replacing (\d+)(?: out of (\d+))? node\(s\) with delegate \((\w+)\) node, "
                        r"yielding (\d+) partitions")
_APPLIED = re.compile(r"Explicitly applied (\w+) delegate, and the model graph will be (completely|partially) "
                      r"executed by the delegate(?: w/ (\d+) delegate kernels)?")
_NOT_APPLIED = re.compile(r"Though (\w+) delegate is explicitly applied, the model graph will not be executed")
_CREATED = re.compile(r"Created TensorFlow Lite (?:(\w+) )?delegate for (\w+)")
_FAILED = re.compile(r"Failed to apply (\w+) delegate|Benchmarking failed|Could not create (\w+) delegate")
_SCALARS = {
    "session_init_ms": re.compile(rf"Initialized session in ({NUMBER}) ?ms"),
    "model_size_mb": re.compile(rf"The input model file size \(MB\): ({NUMBER})"),
    "num_threads": re.compile(r"^Num threads: \[(\d+)\]"),
    "graph": re.compile(r"^Graph: \[([^\]]*)\]"),
    "nodes_executed": re.compile(r"^Number of nodes executed: (\d+)"),
}
_TOOL = re.compile(r"Running TensorFlow Lite benchmark with args: (.*)")
_TABLE = {"Run Order": "run_order", "Top by Computation Time": "top", "Summary by node type": "by_node_type"}


def strip_prefix(line):
    """A line without its logcat / Android Studio / ``INFO:`` prefixes."""
    line = _STUDIO.sub("", _LOGCAT.sub("", line.rstrip("\r\n")))
    return _SOURCE_LINE.sub("", _LEVEL.sub("", line.strip())).strip()


def _number(text):
    value = float(text)
    return int(value) if value.is_integer() and "e" not in text.lower() and "." not in text else value


def _us_to_ms(value):
    return None if value is None else value / 1000.0


def _empty():
    return {"tool": "benchmark_model", "args": None, "init_us": None, "first_inference_us": None,
            "warmup_avg_us": None, "inference_avg_us": None, "warmup": None, "inference": None,
            "memory_mb": {"init": None, "overall": None, "peak": None}, "session_init_ms": None,
            "model_size_mb": None, "num_threads": None, "graph": None, "delegates": [], "delegate_applied": [],
            "delegates_created": [], "op_profile": None, "errors": [], "signature": None,
            "throughput_mb_per_s": None}


def parse(text, /):
    """Parse benchmark_model output into a dict (lines starting with ``#`` are skipped).

    >>> parse(open("tests/data/benchmark_model/03_tf1_15_gpu_explicit.txt").read())["inference"]["count"]
    50
    """
    out, counts, profile, litert = _empty(), [], _Profile(), {}
    summary_seen = False
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        line = strip_prefix(raw)
        if _ERROR_LEVEL.search(raw) and line:
            out["errors"].append(line)
            continue
        if _litert_line(line, litert):
            continue
        if profile.feed(line):
            continue
        if line.startswith("count=") and not summary_seen:
            counts.append({k: _number(v) for k, v in _STATS.findall(line)})
        elif _summary(line, out):
            summary_seen = True
        else:
            _other(line, out)
    _assign_counts(out, counts)
    _assign_litert(out, litert)
    out["op_profile"] = profile.result()
    out.update({"init_ms": _us_to_ms(out["init_us"]), "first_inference_ms": _us_to_ms(out["first_inference_us"]),
                "warmup_avg_ms": _us_to_ms(out["warmup_avg_us"]),
                "inference_avg_ms": _us_to_ms(out["inference_avg_us"])})
    out["latency_ms"] = _latency_ms(out)
    return out


def _summary(line, out, /):
    match = _SUMMARY.search(line)
    if match:
        out["init_us"], out["first_inference_us"], out["warmup_avg_us"], out["inference_avg_us"] = (
            _number(g) for g in match.groups())
        return True
    match = _OLD_SUMMARY.search(line)
    if match:
        # The old tool printed no first-inference time; "no stats" is the mean of the timed runs.
        out["warmup_avg_us"], out["init_us"], out["inference_avg_us"] = (_number(g) for g in match.groups())
        return True
    return False


_LITERT_HEADER = "BENCHMARK RESULTS"
_LITERT = {
    "init_ms": re.compile(rf"^Model initialization: +({NUMBER}) ms"),
    "warmup_first_ms": re.compile(rf"^Warmup \(first\): +({NUMBER}) ms"),
    "warmup_avg_ms": re.compile(rf"^Warmup \(avg\): +({NUMBER}) ms \((\d+) runs\)"),
    "inference_avg_ms": re.compile(rf"^Inference \(avg\): +({NUMBER}) ms \((\d+) runs\)"),
    "inference_min_ms": re.compile(rf"^Inference \(min\): +({NUMBER}) ms"),
    "inference_max_ms": re.compile(rf"^Inference \(max\): +({NUMBER}) ms"),
    "inference_std_ms": re.compile(rf"^Inference \(std\): +({NUMBER})"),
    "throughput_mb_per_s": re.compile(rf"^Throughput: +({NUMBER}) MB/s"),
    "init_footprint_mb": re.compile(rf"^Init footprint: +({NUMBER}) MB"),
    "overall_footprint_mb": re.compile(rf"^Overall footprint: +({NUMBER}) MB"),
    "peak_memory_mb": re.compile(rf"^Peak memory: +({NUMBER}) MB"),
    "signature": re.compile(r"^Signature name: +(\S+)"),
}


def _litert_line(line, litert, /):
    """Consume a line of benchmark_litert_model's BENCHMARK RESULTS block into ``litert``; return whether it was one.

    >>> block = {}
    >>> _litert_line("Warmup (avg):         7441.04 ms (1 runs)", block), block
    (True, {'warmup_avg_ms': 7441.04, 'warmup_count': 1})
    """
    if line.strip("= ") == _LITERT_HEADER:
        litert["seen"] = True
        return True
    for key, pattern in _LITERT.items():
        if match := pattern.search(line):
            litert[key] = match[1] if key == "signature" else float(match[1])
            if match.re.groups == 2:
                litert[key.replace("_avg_ms", "_count")] = int(match[2])
            return True
    return False


def _ms_to_us(value):
    # The block prints milliseconds with 2 decimals; rounding keeps 7430.20 ms at 7430200.0 us, not ...0000001.
    return None if value is None else round(value * 1000.0, 6)


def _assign_litert(out, litert, /):
    """Fill the common fields from a BENCHMARK RESULTS block; ``count=`` lines, when present, stay authoritative."""
    if not litert:
        return
    out["tool"] = "benchmark_litert_model"
    out["signature"] = litert.get("signature")
    out["throughput_mb_per_s"] = litert.get("throughput_mb_per_s")
    for field, key in (("init_us", "init_ms"), ("first_inference_us", "warmup_first_ms"),
                       ("warmup_avg_us", "warmup_avg_ms"), ("inference_avg_us", "inference_avg_ms")):
        if key in litert:
            out[field] = _ms_to_us(litert[key])
    if out["warmup"] is None and "warmup_avg_ms" in litert:
        out["warmup"] = {"count": litert.get("warmup_count"), "first": _ms_to_us(litert.get("warmup_first_ms")),
                         "avg": _ms_to_us(litert["warmup_avg_ms"])}
    if out["inference"] is None and "inference_avg_ms" in litert:
        stats = {"count": litert.get("inference_count"), "avg": _ms_to_us(litert["inference_avg_ms"])}
        for name in ("min", "max", "std"):
            if f"inference_{name}_ms" in litert:
                stats[name] = _ms_to_us(litert[f"inference_{name}_ms"])
        out["inference"] = stats
    memory = out["memory_mb"]
    for field, key in (("init", "init_footprint_mb"), ("overall", "overall_footprint_mb"),
                       ("peak", "peak_memory_mb")):
        if key in litert:
            memory[field] = litert[key]


def _other(line, out, /):
    if match := _MEMORY.search(line):
        out["memory_mb"]["init"], out["memory_mb"]["overall"] = float(match[1]), float(match[2])
    elif match := _PEAK.search(line):
        out["memory_mb"]["peak"] = float(match[1])
    elif match := _REPLACING.search(line):
        out["delegates"].append({"delegate": match[3], "nodes_replaced": int(match[1]),
                                 "nodes_total": int(match[2]) if match[2] else None, "partitions": int(match[4])})
    elif match := _APPLIED.search(line):
        out["delegate_applied"].append({"name": match[1], "execution": "complete" if match[2] == "completely"
                                        else "partial", "kernels": int(match[3]) if match[3] else None})
    elif match := _NOT_APPLIED.search(line):
        out["delegate_applied"].append({"name": match[1], "execution": "none", "kernels": 0})
    elif match := _CREATED.search(line):
        out["delegates_created"].append(match[1] or match[2])
    elif match := _TOOL.search(line):
        out["tool"], out["args"] = "android benchmark app", match[1].strip()
    elif _FAILED.search(line):
        out["errors"].append(line.strip())
    else:
        for key, pattern in _SCALARS.items():
            if match := pattern.search(line):
                out[key] = match[1] if key == "graph" else _number(match[1])
                return


def _assign_counts(out, counts, /):
    # The tool prints the warm-up stats first and the timed runs last. A lone line is the timed runs unless its
    # mean is the summary's warm-up mean (and not its inference mean).
    if len(counts) >= 2:
        out["warmup"], out["inference"] = counts[0], counts[-1]
    elif len(counts) == 1:
        only = counts[0]
        is_warmup = (only.get("avg") == out["warmup_avg_us"] and only.get("avg") != out["inference_avg_us"])
        out["warmup" if is_warmup else "inference"] = only
    if out["inference"] and out["inference_avg_us"] is None:
        out["inference_avg_us"] = out["inference"].get("avg")


def _latency_ms(out, /):
    stats = out["inference"] or {}
    keys = {"mean": "avg", "median": "median", "p90": "p90", "p99": "p99", "std": "std", "min": "min",
            "max": "max", "p5": "p5", "p95": "p95", "first": "first"}
    latency = {name: _us_to_ms(stats.get(src)) for name, src in keys.items()}
    if latency["mean"] is None:
        latency["mean"] = _us_to_ms(out["inference_avg_us"])
    latency["count"] = stats.get("count")
    return latency


class _Profile:
    """Collects the op-profiling tables, per section (``init`` or ``regular``) and per table."""

    def __init__(self):
        self.sections, self.section, self.table, self.columns = {}, None, None, None

    def feed(self, line, /):
        """Consume a line if it belongs to a profiling table; return whether it did."""
        if "Profiling Info for Benchmark Initialization" in line:
            self.section, self.table = "init", None
            return True
        if "Operator-wise Profiling Info for Regular Benchmark Runs" in line:
            self.section, self.table = "regular", None
            return True
        if line.startswith("====="):
            title = line.strip("= ").strip()
            self.table = _TABLE.get(title)
            # Tables printed with no section header (old tools) are the timed runs' tables.
            self.section = self.section or "regular"
            self.columns = None
            return self.table is not None
        if self.table is None:
            return self._nodes_line(line)
        if line.lstrip().startswith("["):
            self.columns = [c.strip().lower() for c in re.findall(r"\[([^\]]+)\]", line)]
            return True
        row = self._row(line)
        if row is None:
            self.table = None
            return self._nodes_line(line)
        self.sections.setdefault(self.section, {}).setdefault(self.table, []).append(row)
        return True

    def _nodes_line(self, line, /):
        match = _SCALARS["nodes_executed"].search(line)
        if match and self.section:
            self.sections.setdefault(self.section, {})["nodes_executed"] = int(match[1])
            return True
        return False

    def _row(self, line, /):
        tokens = line.split()
        if not tokens or not self.columns:
            return None
        numeric = [c for c in self.columns[1:] if c != "name"]
        values = tokens[1:1 + len(numeric)]
        if len(values) < len(numeric) or not all(re.fullmatch(NUMBER + "%?", v) for v in values):
            return None
        row = {"node_type": tokens[0]}
        for column, value in zip(numeric, values):
            row[_COLUMN_KEYS.get(column, column)] = _number(value.rstrip("%"))
        if "name" in self.columns:
            row["name"] = " ".join(tokens[1 + len(numeric):])
        return row

    def result(self):
        return self.sections or None


_COLUMN_KEYS = {"start": "start_ms", "first": "first_ms", "avg ms": "avg_ms", "%": "percent", "cdf%": "cdf_percent",
                "mem kb": "mem_kb", "times called": "times_called", "count": "count", "avg %": "percent",
                "cdf %": "cdf_percent"}
