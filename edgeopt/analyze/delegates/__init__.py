"""Delegate compatibility without the hardware: which ops of a ``.tflite`` each accelerator would take.

For every delegate, each op (in execution order) is checked against that delegate's rule table (one module per
delegate, each naming its source documentation); supported ops are grouped into partitions the way the runtime does
it (:mod:`.partition`), the delegate's partition limits are applied, and the rest falls back to the CPU.

The result is a prediction from published rules, not a measurement: vendor drivers (NNAPI), compiler versions
(Edge TPU) and delegate builds change what is really taken. Each report carries its ``source`` and ``limits``.

    >>> report = analyze_delegates("model_int8.tflite")          # doctest: +SKIP
    >>> report["edgetpu"]["num_partitions"], report["edgetpu"]["macs_fraction"]   # doctest: +SKIP
    (1, 1.0)
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

from edgeopt.analyze.delegates import coreml, edgetpu, gpu, hexagon, nnapi
from edgeopt.analyze.delegates.base import OpView
from edgeopt.analyze.delegates.partition import dependencies, graph_partitions, prefix_partition, select
from edgeopt.analyze.tflite import TFLiteSummary, read_tflite
from edgeopt.errors import RecipeError

DELEGATES: dict[str, ModuleType] = {m.NAME: m for m in (gpu, nnapi, edgetpu, hexagon, coreml)}
DEFAULT = ("gpu", "nnapi", "edgetpu", "hexagon", "coreml")


def analyze_delegates(summary_or_path: TFLiteSummary | str | Path, *,
                      delegates: Iterable[str] = DEFAULT) -> dict[str, dict[str, Any]]:
    """Per delegate: each op's verdict, the partitions, CPU fallbacks and the share of MACs delegated.

    ``summary_or_path`` is a :class:`TFLiteSummary` or a path to a ``.tflite`` file.

    >>> r = analyze_delegates("fp32.tflite", delegates=["gpu"])   # doctest: +SKIP
    >>> r["gpu"]["num_partitions"], r["gpu"]["cpu_ops"]          # doctest: +SKIP
    (1, [])
    """
    summary = summary_or_path if isinstance(summary_or_path, TFLiteSummary) else read_tflite(summary_or_path)
    names = list(delegates)
    unknown = [d for d in names if d not in DELEGATES]
    if unknown:
        raise RecipeError(f"unknown delegate(s) {unknown}", hint=f"choose from {sorted(DELEGATES)}")
    return {name: _analyze_one(summary, DELEGATES[name]) for name in names}


def _analyze_one(summary: TFLiteSummary, rules: ModuleType) -> dict[str, Any]:
    view = OpView(summary)
    whole = rules.model_reason(summary)
    reasons = [whole or rules.op_reason(op, view) for op in summary.ops]
    supported = [r is None for r in reasons]
    limits = rules.LIMITS
    if rules.PARTITIONING == "prefix":
        parts = prefix_partition(supported)
        candidates = len(parts)
    else:
        deps = dependencies([o.inputs for o in summary.ops], [o.outputs for o in summary.ops])
        subsets = graph_partitions(deps, supported) if summary.ops else []
        candidates = sum(1 for ok, _ in subsets if ok)
        parts = select(subsets, max_partitions=limits["max_partitions"], min_nodes=limits["min_nodes_per_partition"])
    where = {k: p for p, ops in enumerate(parts) for k in ops}
    ops = []
    for op, reason in zip(summary.ops, reasons):
        delegated = op.index in where
        if reason is None and not delegated:
            reason = "supported, but its partition is not delegated (partition limits or after an unsupported op)"
        ops.append({"index": op.index, "op": op.custom_name if op.custom else op.op, "supported": supported[op.index], "delegated": delegated, "partition": where.get(op.index),
                    "reason": None if delegated else reason, "macs": op.macs})
    macs_on = sum(op.macs for op in summary.ops if op.index in where)
    return {
        "delegate": rules.NAME, "title": rules.TITLE, "source": rules.SOURCE, "limits": dict(limits),
        "model_reason": whole, "ops": ops, "partitions": parts, "num_partitions": len(parts),
        "candidate_partitions": candidates, "delegated_ops": len(where), "total_ops": len(summary.ops),
        "cpu_ops": [o["index"] for o in ops if not o["delegated"]],
        "macs_fraction": (macs_on / summary.macs) if summary.macs else None,
        "fully_delegated": bool(summary.ops) and len(where) == len(summary.ops),
    }
