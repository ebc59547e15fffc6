"""ONNX → tf_keras importer: native, trainable NHWC layers with the original weights.

One module per op family (conv, pool, norm, activation, elementwise, matmul, shape, tensor, resize); ``layout``
tracks each tensor's axis order, ``fold`` cleans the graph, ``loader`` validates the file, ``driver`` ties it up.
"""
from __future__ import annotations

from edgeopt.frontends.onnx.driver import SUPPORTED, import_onnx

__all__ = ["import_onnx", "SUPPORTED"]
