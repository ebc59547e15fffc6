"""Model analysis: params, MACs, ``.tflite`` / ``.onnx`` inspection and delegate compatibility.

Nothing heavy is imported here; each function imports its library (onnx, the flatbuffer schema) when called.

    >>> from edgeopt.analyze import summarize            # doctest: +SKIP
    >>> summarize("model_int8.tflite")["op_histogram"]   # doctest: +SKIP
    {'CONV_2D': 2, 'DEPTHWISE_CONV_2D': 1, 'ADD': 1, 'MAX_POOL_2D': 1, 'RESHAPE': 1, 'FULLY_CONNECTED': 1}
"""
from __future__ import annotations

from typing import Any

__all__ = ["analyze_delegates", "keras_summary", "read_tflite", "render_inspect", "summarize", "summarize_onnx"]


def __getattr__(name: str) -> Any:
    # Lazy re-exports keep ``import edgeopt.analyze`` free of onnx / rich / flatbuffer imports.
    if name == "read_tflite":
        from edgeopt.analyze.tflite import read_tflite as f
    elif name == "summarize_onnx":
        from edgeopt.analyze.onnx_summary import summarize_onnx as f
    elif name == "keras_summary":
        from edgeopt.analyze.keras_summary import keras_summary as f
    elif name == "analyze_delegates":
        from edgeopt.analyze.delegates import analyze_delegates as f
    elif name in ("render_inspect", "summarize"):
        from edgeopt.analyze import render

        f = getattr(render, name)
    else:
        raise AttributeError(f"module 'edgeopt.analyze' has no attribute '{name}'")
    return f
