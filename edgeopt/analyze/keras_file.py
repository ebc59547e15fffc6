"""``edgeopt inspect`` for tf_keras files (``.keras``, ``.h5``, a SavedModel folder): tensors, params, MACs, layers.

The model is loaded the way the import stage loads it (:func:`edgeopt.frontends.load_model`), so what inspect shows
is what ``compress`` would start from. The layer histogram counts leaf layers, walking nested models.

    >>> s = summarize_keras("model.keras")              # doctest: +SKIP
    >>> s["params"], s["op_histogram"]["Conv2D"]         # doctest: +SKIP
    (60874, 2)
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def is_keras_file(path: str | Path) -> bool:
    """A tf_keras file by suffix, or a SavedModel folder.

    >>> is_keras_file("m.h5"), is_keras_file("m.onnx")
    (True, False)
    """
    p = Path(path)
    return p.suffix.lower() in KERAS_SUFFIXES or (p.is_dir() and (p / "saved_model.pb").exists())


def _leaf_layers(model) -> list:
    out = []
    for layer in model.layers:
        inner = getattr(layer, "layers", None)
        out.extend(_leaf_layers(layer) if inner is not None and layer is not model else [layer])
    return out


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def summarize_keras(path: str | Path) -> dict[str, Any]:
    """The JSON-able summary of a Keras file: inputs/outputs, params, MACs and a histogram of layer classes."""
    from edgeopt.analyze.keras_summary import keras_summary
    from edgeopt.frontends import load_model

    p = Path(path)
    imported = load_model(p)
    counts = keras_summary(imported.model)
    layers = [type(layer).__name__ for layer in _leaf_layers(imported.model)
              if type(layer).__name__ != "InputLayer"]

    def tensor(spec) -> dict[str, Any]:
        return {"name": spec.name, "shape": list(spec.keras_shape), "dtype": spec.dtype}

    return {
        "path": str(p),
        "format": "keras",
        "file_size": _size(p),
        "params": counts["params"],
        "trainable_params": counts["trainable_params"],
        "macs": counts["macs"],
        "layers": len(layers),
        "inputs": [tensor(s) for s in imported.inputs],
        "outputs": [tensor(s) for s in imported.outputs],
        "op_histogram": dict(sorted(Counter(layers).items())),
    }


def render_keras(summary: dict[str, Any]):
    """Rich tables for :func:`summarize_keras`'s summary: overview, tensors, layer histogram."""
    from rich.console import Group
    from rich.table import Table

    overview = Table(title=f"{Path(summary['path']).name} (keras)", show_header=False)
    overview.add_column("what")
    overview.add_column("value", justify="right")
    overview.add_row("file size", f"{summary['file_size']:,} B")
    overview.add_row("params", f"{summary['params']:,} ({summary['trainable_params']:,} trainable)")
    overview.add_row("MACs", f"{summary['macs']:,}")
    overview.add_row("layers", str(summary["layers"]))
    tensors = Table(title="Inputs and outputs (layout as saved; compress keeps it)")
    for col in ("", "name", "shape", "dtype"):
        tensors.add_column(col)
    for kind in ("inputs", "outputs"):
        for t in summary[kind]:
            tensors.add_row(kind[:-1], t["name"], str(t["shape"]), t["dtype"])
    layers = Table(title="Layers")
    layers.add_column("layer")
    layers.add_column("count", justify="right")
    for name, n in sorted(summary["op_histogram"].items(), key=lambda kv: (-kv[1], kv[0])):
        layers.add_row(name, str(n))
    return Group(overview, tensors, layers)
