"""``edgeopt inspect``: summarise a model file and lay the summary out as rich tables.

    >>> from rich.console import Console                              # doctest: +SKIP
    >>> s = summarize("model_int8.tflite")                            # doctest: +SKIP
    >>> Console().print(render_inspect(s, delegates=analyze_delegates("model_int8.tflite")))   # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table

from edgeopt.errors import ModelFileError


def summarize(path: str | Path) -> dict[str, Any]:
    """The JSON-able summary of a ``.tflite`` or ``.onnx`` file, chosen by suffix.

    >>> summarize("model.onnx")["op_histogram"]   # doctest: +SKIP
    {'Conv': 2, 'Relu': 2, 'MaxPool': 2, 'Gemm': 1}
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".tflite":
        from edgeopt.analyze.tflite import read_tflite

        return read_tflite(p).to_dict()
    if suffix == ".onnx":
        import onnx

        from edgeopt.analyze.onnx_summary import summarize_onnx
        from edgeopt.frontends.onnx.inputs import import_layouts

        summary = summarize_onnx(p).to_dict()
        layouts = import_layouts(onnx.load(str(p), load_external_data=False))
        for t in summary["inputs"]:
            t["layout_after_import"] = layouts.get(t["name"], "as-is")
        return summary
    raise ModelFileError(f"cannot inspect {p}: unknown model suffix '{p.suffix}'",
                         hint="inspect reads .tflite and .onnx files")


def _human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f} {suffix}{unit}"
    return f"{n:g} {unit}".strip()


def _quant(t: dict[str, Any]) -> str:
    scale = t.get("scale") or ()
    if not scale:
        return "-"
    if len(scale) == 1:
        return f"scale {scale[0]:.6g}, zero point {t['zero_point'][0]}"
    return f"per-channel (axis {t['quantized_dimension']}, {len(scale)} scales)"


def _io_table(s: dict[str, Any]) -> Table:
    table = Table(title="Inputs and outputs")
    onnx_file = s["format"] == "onnx"
    for col in ("", "name", "shape", "dtype", "layout after import" if onnx_file else "quantization"):
        table.add_column(col)
    for kind in ("inputs", "outputs"):
        for t in s[kind]:
            shape = t.get("shape_signature") or t["shape"]
            last = t.get("layout_after_import", "-") if onnx_file else _quant(t)
            table.add_row(kind[:-1], t["name"], str(list(shape)), t["dtype"], last)
    return table


def _overview(s: dict[str, Any]) -> Table:
    table = Table(title=f"{Path(s['path']).name} ({s['format']})", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("file size", _human(s["file_size"], "B"))
    table.add_row("params", f"{s['params']:,}")
    table.add_row("MACs", f"{s['macs']:,} ({_human(s['macs'])})")
    if s["format"] == "tflite":
        for dtype, nbytes in sorted(s["weight_bytes_by_dtype"].items()):
            table.add_row(f"weights {dtype}", _human(nbytes, "B"))
        table.add_row("fully integer", "yes" if s["fully_integer"] else "no")
        if s["custom_ops"]:
            table.add_row("custom ops", ", ".join(s["custom_ops"]))
    else:
        table.add_row("opset / IR version", f"{s['opset']} / {s['ir_version']}")
        if s.get("checker_error"):
            table.add_row("onnx.checker", s["checker_error"])
    return table


def _histogram(s: dict[str, Any]) -> Table:
    table = Table(title="Ops")
    table.add_column("op")
    table.add_column("count", justify="right")
    for name, n in sorted(s["op_histogram"].items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(name, str(n))
    return table


def _delegate_table(report: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="Delegate compatibility (predicted from published rules)")
    for col, just in (("delegate", "left"), ("ops delegated", "right"), ("partitions", "right"),
                      ("MACs delegated", "right"), ("first CPU fallback", "left")):
        table.add_column(col, justify=just)
    for r in report.values():
        frac = "-" if r["macs_fraction"] is None else f"{100 * r['macs_fraction']:.1f} %"
        first = next((o for o in r["ops"] if not o["delegated"]), None)
        why = "-" if first is None else f"#{first['index']} {first['op']}: {first['reason']}"
        table.add_row(r["title"], f"{r['delegated_ops']}/{r['total_ops']}", str(r["num_partitions"]), frac, why)
    return table


def render_inspect(summary: Any, *, delegates: dict[str, dict[str, Any]] | None = None) -> Group:
    """Rich tables for a summary (a dict from :func:`summarize` or a summary object) and a delegate report."""
    s = summary if isinstance(summary, dict) else summary.to_dict()
    parts: list[Any] = [_overview(s), _io_table(s), _histogram(s)]
    if delegates:
        parts.append(_delegate_table(delegates))
    return Group(*parts)
