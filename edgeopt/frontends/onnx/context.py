"""The state of one import: ONNX tensor name → Keras value or folded constant, plus naming and error helpers."""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import onnx

from edgeopt.errors import UnsupportedModelError
from edgeopt.frontends.onnx.layout import Value


_AUX = {"pad", "permute", "reshape", "crop", "count", "flatten", "unflatten"}


class NodeError(Exception):
    """Raised by op handlers for a node they cannot map; the driver names the node and op."""


class Ctx:
    """Everything an op handler needs: inputs, attributes, layer naming, the opset and the batch size."""

    def __init__(self, *, opset: int, batch: int, keras: Any):
        self.opset, self.batch, self.keras = opset, batch, keras
        self.env: dict[str, Value | np.ndarray] = {}
        self.node: onnx.NodeProto | None = None
        self._used: set[str] = set()
        self.origins: dict[str, str] = {}  # Keras layer name -> the ONNX node it maps (for error messages)

    # ---- naming -------------------------------------------------------------------------------------------
    def name(self, kind: str) -> str:
        """A unique Keras layer name derived from the current node's name (its first layer gets it plain)."""
        node = self.node
        raw = (node.name or (node.output[0] if node.output else "") or node.op_type) if node else kind
        base = re.sub(r"[^A-Za-z0-9_.\-]", "_", raw).strip("._-") or kind
        if not base[0].isalpha():
            base = f"n{base}"
        base = base[:60]
        # Helper layers (padding, reorders) get a suffix so the node's name goes to its main layer.
        cand = base if base not in self._used and kind not in _AUX else f"{base}_{kind}"
        i = 1
        while cand in self._used:
            i += 1
            cand = f"{base}_{kind}{i}"
        self._used.add(cand)
        if node is not None:
            self.origins[cand] = f"{node.name or node.output[0]} ({node.op_type})"
        return cand

    def apply(self, layer: Any, x: Any) -> Any:
        return layer(x)

    # ---- inputs -------------------------------------------------------------------------------------------
    def fail(self, message: str) -> NodeError:
        return NodeError(message)

    def inp(self, node: onnx.NodeProto, i: int) -> Value | np.ndarray | None:
        if i >= len(node.input) or not node.input[i]:
            return None
        name = node.input[i]
        if name not in self.env:
            raise NodeError(f"input '{name}' is produced by no node, initializer or graph input")
        return self.env[name]

    def const(self, node: onnx.NodeProto, i: int, what: str) -> np.ndarray | None:
        v = self.inp(node, i)
        if isinstance(v, Value):
            raise NodeError(f"{what} (input {i}, '{node.input[i]}') must be a constant, but it is computed at run time")
        return v

    def value(self, node: onnx.NodeProto, i: int) -> Value:
        v = self.inp(node, i)
        if v is None:
            raise NodeError(f"input {i} is missing")
        if not isinstance(v, Value):
            raise NodeError(f"input {i} ('{node.input[i]}') is a constant where a run-time tensor was expected")
        return v

    def ints(self, node: onnx.NodeProto, i: int, what: str) -> list[int] | None:
        c = self.const(node, i, what)
        return None if c is None else [int(x) for x in np.asarray(c).reshape(-1)]


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """An attribute's Python value (bytes decoded), or ``default``."""
    for a in node.attribute:
        if a.name == name:
            v = onnx.helper.get_attribute_value(a)
            if isinstance(v, bytes):
                return v.decode("utf-8", "replace")
            if isinstance(v, onnx.TensorProto):
                return onnx.numpy_helper.to_array(v)
            return v
    return default


def unsupported(node: onnx.NodeProto, message: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"node '{node.name or node.output[0]}' ({node.op_type}): {message}")
