"""The ONNX → Keras driver: validate, clean up, create inputs, map each node, build the model."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from onnx import numpy_helper

from edgeopt.errors import EdgeoptError, ModelFileError, UnsupportedModelError
from edgeopt.frontends.onnx import (activation, conv, elementwise, matmul, norm, pool, recurrent, resize, shape,
                                    tensor)
from edgeopt.frontends.onnx.context import Ctx, NodeError, unsupported
from edgeopt.frontends.onnx.fold import evaluate, fold_constants, fuse_bias_adds, has_float16, to_float32
from edgeopt.frontends.onnx.inputs import make_inputs
from edgeopt.frontends.onnx.layout import CHANNELS_LAST, Value, identity, plain, plain_rows
from edgeopt.frontends.onnx.patterns import (fuse_gelu, inferred_last_dims, strip_activation_qdq,
                                             unmerge_matmul_reshapes)
from edgeopt.frontends.onnx.loader import check_ops, check_structure, check_versions, read
from edgeopt.frontends.spec import ImportedModel, TensorSpec

HANDLERS: dict = {}
for _mod in (activation, conv, elementwise, matmul, norm, pool, recurrent, resize, shape, tensor):
    HANDLERS.update(_mod.HANDLERS)

# Ops that are only evaluated on constants (shape arithmetic, index computation) before mapping.
FOLD_ONLY = {
    "Constant", "ConstantOfShape", "Range", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not",
    "And", "Or", "Xor", "Where", "Tile", "NonZero", "Mod", "Sign", "Round", "ReduceL1", "ReduceL2", "ArgMax",
    "ArgMin", "CumSum", "ScatterND", "ScatterElements", "GatherElements", "GatherND", "OneHot", "TopK",
    "IsNaN", "IsInf", "Min", "Max", "BitShift", "EyeLike", "Trilu", "DepthToSpace", "SpaceToDepth",
    "DequantizeLinear", "QuantizeLinear",  # int8 weights of QDQ models (activation pairs are removed first)
}
SUPPORTED = set(HANDLERS) | FOLD_ONLY


def import_onnx(path, *, input_shapes: Mapping[str, Sequence[int]] | None = None) -> ImportedModel:
    """Import an ONNX file as a trainable NHWC tf_keras model with its weights.

    >>> m = import_onnx("mnist.onnx")            # doctest: +SKIP
    >>> m.inputs[0].keras_shape
    (1, 28, 28, 1)
    """
    from edgeopt._tf import keras

    path = Path(path)
    model = read(path)
    opset = check_versions(model, path)
    check_structure(model, path)
    notes: list[str] = []
    try:
        if has_float16(model):
            model = to_float32(model)
            notes.append("float16 weights and inputs were upcast to float32")
    except Exception as exc:
        raise ModelFileError(f"{path}: float16 tensors cannot be read: {str(exc)[:300]}") from None
    model, pairs, int8_weights = strip_activation_qdq(model)
    if pairs or int8_weights:
        notes.append(f"already-quantized (QDQ) model: {int8_weights} integer weight tensor(s) dequantized to float32 "
                     f"and {pairs} activation QuantizeLinear/DequantizeLinear pair(s) removed; the float model is "
                     "imported and INT8 ranges are calibrated anew")
    graph = model.graph
    consts = _initializers(graph, path)
    outputs = [o.name for o in graph.output]
    nodes = _reachable(graph, outputs, path)
    check_ops(nodes, path, SUPPORTED, variant=lambda n: recurrent.variant_problem(n, consts))
    nodes, _ = fold_constants(nodes, consts, opset)
    nodes, unmerged = unmerge_matmul_reshapes(nodes, consts, inferred_last_dims(model))
    if unmerged:
        notes.append(f"{unmerged} Reshape(s) that merged leading axes before a MatMul/Gemm dropped (the product "
                     "runs on the unmerged tensor)")
    nodes, gelus = fuse_gelu(nodes, consts, set(outputs))
    if gelus:
        notes.append(f"{gelus} erf-form GELU(s) fused into one GELU op each")
    nodes, fused = fuse_bias_adds(nodes, consts, set(outputs))
    if fused:
        notes.append(f"{fused} bias Add(s) fused into the preceding Conv/MatMul")
    in_specs, ctx, keras_inputs = make_inputs(graph, nodes, consts, path, input_shapes, opset, keras(), notes)
    ctx.env.update(consts)
    for node in nodes:
        _map_node(ctx, node, opset)
    try:
        out_specs, keras_outputs = _outputs(ctx, outputs, path)
    except EdgeoptError:
        raise
    except Exception as exc:
        raise UnsupportedModelError(f"{path}: the model outputs cannot be laid out: {str(exc)[:300]}") from None
    try:
        kmodel = keras().Model(keras_inputs, keras_outputs, name=_model_name(graph))
    except Exception as exc:
        raise UnsupportedModelError(f"{path}: the Keras model could not be assembled: {exc}") from None
    # Not saved with the model: lets a conversion error name the ONNX node behind a Keras layer.
    kmodel._edgeopt_origins = dict(ctx.origins)
    return ImportedModel(kmodel, tuple(in_specs), tuple(out_specs), path, "onnx", tuple(notes))


def _model_name(graph) -> str:
    import re

    name = re.sub(r"[^A-Za-z0-9_]", "_", graph.name or "")[:40].strip("_")
    return name if name and name[0].isalpha() else "imported"


def _initializers(graph, path: Path) -> dict[str, np.ndarray]:
    consts = {}
    for t in graph.initializer:
        try:
            consts[t.name] = numpy_helper.to_array(t)
        except Exception as exc:
            raise ModelFileError(f"{path}: initializer '{t.name}' cannot be read: {exc}") from None
    return consts


def _reachable(graph, outputs: list[str], path: Path) -> list:
    """The nodes the outputs depend on, in a topological order (dead branches are ignored)."""
    producer = {}
    for n in graph.node:
        for o in n.output:
            if o:
                producer[o] = n
    needed, stack, seen = set(), list(outputs), set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        n = producer.get(name)
        if n is not None and id(n) not in needed:
            needed.add(id(n))
            stack.extend(i for i in n.input if i)
    order, done, state = [], set(), {}
    for n in graph.node:
        if id(n) not in needed:
            continue
        # Iterative DFS so that files listing nodes out of order still import.
        todo = [(n, False)]
        while todo:
            cur, expanded = todo.pop()
            if id(cur) in done:
                continue
            if expanded:
                done.add(id(cur))
                order.append(cur)
                continue
            if state.get(id(cur)) == "open":
                raise ModelFileError(f"{path}: the graph has a cycle through node '{cur.name}'")
            state[id(cur)] = "open"
            todo.append((cur, True))
            for i in cur.input:
                p = producer.get(i)
                if p is not None and id(p) not in done and id(p) in needed:
                    todo.append((p, False))
    return order


def _map_node(ctx: Ctx, node, opset: int) -> None:
    ctx.node = node
    try:
        ins = [ctx.inp(node, i) for i in range(len(node.input))]
        if not any(isinstance(v, Value) for v in ins):
            outs = evaluate(node, ins, opset)
        else:
            handler = HANDLERS.get(node.op_type)
            if handler is None:
                raise NodeError("this op is only supported on constant inputs, but its input is computed at run time")
            outs = handler(ctx, node)
    except EdgeoptError:
        raise
    except NodeError as exc:
        raise unsupported(node, str(exc)) from None
    except Exception as exc:  # Keras/TF/reference-evaluator failures on odd inputs
        raise unsupported(node, f"cannot be mapped: {type(exc).__name__}: {str(exc)[:300]}") from None
    for name, v in zip(node.output, outs):
        if name and v is not None:
            ctx.env[name] = v


def _outputs(ctx: Ctx, names: list[str], path: Path):
    specs, tensors = [], []
    for name in names:
        v = ctx.env.get(name)
        if v is None:
            raise ModelFileError(f"{path}: output '{name}' is produced by no node")
        if not isinstance(v, Value):
            raise UnsupportedModelError(f"{path}: output '{name}' is a constant; nothing to compile")
        ctx.node = None
        v = plain_rows(v, ctx)
        if not (v.rank == 4 and v.perm == CHANNELS_LAST):
            v = plain(v, ctx)
        onnx_shape = v.onnx_shape(ctx.batch)
        perm = None if v.perm == identity(v.rank) else tuple(v.perm)
        keras_shape = (ctx.batch, *[int(d) for d in v.t.shape[1:]])
        specs.append(TensorSpec(name, tuple(onnx_shape), keras_shape, "float32", perm))
        tensors.append(v.t)
    return specs, tensors
