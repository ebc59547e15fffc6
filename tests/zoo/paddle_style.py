"""Rewrite an ONNX file the way Paddle2ONNX writes its models: every weight a ``Constant`` node, no initializers.

Paddle2ONNX emits a graph whose parameters are ``Constant`` nodes at the head of the graph (named after Paddle's
variables, e.g. ``conv2d_0.w_0``) instead of initializers; importers that only look at ``graph.initializer`` miss
them. The values are unchanged, so onnxruntime gives bit-identical outputs.

    >>> proto = initializers_as_constants(onnx.load("ppocr_det.onnx"))
    >>> len(proto.graph.initializer), proto.graph.node[0].op_type
    (0, 'Constant')
"""
from __future__ import annotations

import onnx
from onnx import helper


def initializers_as_constants(model: onnx.ModelProto, /) -> onnx.ModelProto:
    """A copy of ``model`` with each initializer turned into a ``Constant`` node placed before all other nodes."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    constants = [helper.make_node("Constant", [], [init.name], name=f"{init.name}.constant", value=init)
                 for init in graph.initializer]
    nodes = constants + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    names = {init.name for init in graph.initializer}
    # Older exporters also list initializers as graph inputs; a Constant's output must not be one.
    inputs = [i for i in graph.input if i.name not in names]
    del graph.initializer[:]
    del graph.input[:]
    graph.input.extend(inputs)
    onnx.checker.check_model(out)
    return out
