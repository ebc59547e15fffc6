"""Graph rewrites before mapping: op patterns that exporters spell out and TFLite has one builtin for.

GELU: torch (opset < 20) and Paddle write ``gelu(x) = x * 0.5 * (1 + erf(x / sqrt(2)))`` as five nodes; TFLite has
no ERF kernel but a GELU builtin, so the pattern becomes one ``Gelu`` node (the opset-20 op, mapped to
``tf.nn.gelu``). The spellings recognised: ``x / sqrt2`` or ``x * (1/sqrt2)``, then ``Erf``, ``+ 1``, and the two
products ``x * (1 + erf) * 0.5``, ``(x * 0.5) * (1 + erf)`` or ``(1 + erf) * 0.5 * x``, operands in either order.
"""
from __future__ import annotations

import math

import numpy as np
import onnx

_TOL = 1e-4


def _scalar(consts: dict, name: str, value: float) -> bool:
    v = consts.get(name)
    return v is not None and np.size(v) == 1 and abs(float(np.asarray(v).reshape(-1)[0]) - value) <= _TOL * value


def _other(node, name: str) -> str | None:
    """The input of a two-input node that is not ``name`` (None when neither or both are)."""
    ins = list(node.input)
    if len(ins) != 2 or ins.count(name) != 1:
        return None
    return ins[1 - ins.index(name)]


class _Graph:
    def __init__(self, nodes, consts):
        self.nodes, self.consts = nodes, consts
        self.producer = {o: n for n in nodes for o in n.output}
        self.users: dict[str, list] = {}
        for n in nodes:
            for i in n.input:
                self.users.setdefault(i, []).append(n)

    def only_user(self, name: str, op: str):
        users = self.users.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None


def _gelu_from_erf(g: _Graph, erf):
    """(x, the pattern's nodes, last one last) for a GELU ending at ``erf``'s products, or None."""
    scaled = g.producer.get(erf.input[0])
    if scaled is None or scaled.op_type not in ("Div", "Mul"):
        return None
    x = scaled.input[0]
    k = scaled.input[1]
    factor = math.sqrt(2.0) if scaled.op_type == "Div" else 1.0 / math.sqrt(2.0)
    if not _scalar(g.consts, k, factor):
        if scaled.op_type == "Mul" and _scalar(g.consts, x, factor):
            x, k = k, x
        else:
            return None
    add = g.only_user(erf.output[0], "Add")
    if add is None or not _scalar(g.consts, _other(add, erf.output[0]) or "", 1.0):
        return None
    mul1 = g.only_user(add.output[0], "Mul")
    if mul1 is None:
        return None
    partner = _other(mul1, add.output[0])
    if partner == x:  # x * (1 + erf), then * 0.5
        mul2 = g.only_user(mul1.output[0], "Mul")
        if mul2 is None or not _scalar(g.consts, _other(mul2, mul1.output[0]) or "", 0.5):
            return None
        return x, [scaled, erf, add, mul1, mul2]
    half = g.producer.get(partner or "")
    if half is not None and half.op_type == "Mul" and _other(half, x) is not None \
            and _scalar(g.consts, _other(half, x), 0.5):  # (x * 0.5) * (1 + erf)
        return x, [scaled, erf, add, half, mul1]
    if _scalar(g.consts, partner or "", 0.5):  # (1 + erf) * 0.5, then * x
        mul2 = g.only_user(mul1.output[0], "Mul")
        if mul2 is None or _other(mul2, mul1.output[0]) != x:
            return None
        return x, [scaled, erf, add, mul1, mul2]
    return None


def fuse_gelu(nodes: list, consts: dict, outputs: set[str]) -> tuple[list, int]:
    """Replace every erf-form GELU by one ``Gelu`` node; return the nodes and the count fused.

    Intermediate results used outside the pattern (or that are model outputs) keep the pattern as it is.
    """
    g = _Graph(nodes, consts)
    drop, replace = set(), {}
    for erf in (n for n in nodes if n.op_type == "Erf"):
        found = _gelu_from_erf(g, erf)
        if found is None:
            continue
        x, parts = found
        last = parts[-1]
        inner = [o for p in parts for o in p.output if p is not last]
        if any(o in outputs for o in inner) or any(id(p) in drop for p in parts):
            continue
        members = {id(p) for p in parts}
        if any(u for o in inner for u in g.users.get(o, []) if id(u) not in members):
            continue
        gelu = onnx.helper.make_node("Gelu", [x], [last.output[0]], name=(last.name or erf.name) + "_gelu")
        drop.update(members - {id(last)})
        replace[id(last)] = gelu
    out = [replace.get(id(n), n) for n in nodes if id(n) not in drop]
    return out, len(replace)


def strip_activation_qdq(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int, int]:
    """A copy of a QDQ-quantized model computing in float: (model, activation pairs removed, int8 weights).

    ``QuantizeLinear → DequantizeLinear`` on run-time tensors only simulate INT8 (edgeopt calibrates its own
    ranges), so each pair is cut out and its consumers read the float tensor. ``DequantizeLinear`` of int8/uint8
    initializers stays: constant folding turns those weights into float. Returns the model unchanged (not copied)
    when it has no QDQ nodes.
    """
    g = model.graph
    if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in g.node):
        return model, 0, 0
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    consts = {t.name for t in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    users: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    rename, drop = {}, set()
    for q in g.node:
        if q.op_type != "QuantizeLinear" or q.input[0] in consts:
            continue
        dqs = users.get(q.output[0], [])
        if not dqs or any(d.op_type != "DequantizeLinear" for d in dqs):
            continue
        for d in dqs:
            rename[d.output[0]] = q.input[0]
            drop.add(id(d))
        drop.add(id(q))
    keep = [n for n in g.node if id(n) not in drop]
    for n in keep:
        for k, i in enumerate(n.input):
            while i in rename:
                i = rename[i]
            n.input[k] = i
    for o in g.output:  # a pair right before an output: the output takes the float tensor's place
        if o.name in rename:
            src = o.name
            while src in rename:
                src = rename[src]
            keep.append(onnx.helper.make_node("Identity", [src], [o.name], name=f"{o.name}_dequantized"))
    del g.node[:]
    g.node.extend(keep)
    weights = sum(1 for n in keep if n.op_type == "DequantizeLinear" and n.input[0] in consts)
    return m, len(drop) - len(rename), weights  # drop holds each pair's Q and its DQs; rename one entry per DQ


def inferred_last_dims(model: onnx.ModelProto) -> dict[str, int]:
    """The static last dimension of every tensor ONNX shape inference can size (empty when it fails)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # models over 2 GB, odd custom ops: the rewrites that need shapes are skipped
        return {}
    out = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = v.type.tensor_type.shape.dim if v.type.HasField("tensor_type") else []
        if dims and dims[-1].HasField("dim_value"):
            out[v.name] = int(dims[-1].dim_value)
    return out


def unmerge_matmul_reshapes(nodes: list, consts: dict, last_dims: dict[str, int]) -> tuple[list, int]:
    """Drop ``Reshape(x, [M, K])`` before a MatMul/Gemm with a constant ``[K, N]`` weight when ``x``'s last dim is K.

    A CRNN writes its per-step classifier as ``view(T * b, h) → Linear → view(T, b, -1)``, merging the batch into
    the sequence axis; a matrix product acts on rows alike whatever the leading axes, so it runs on ``x`` itself and
    the second view stays (exact for every batch size). Gemm becomes MatMul + Add for this.
    """
    from edgeopt.frontends.onnx.fold import index_nodes

    users, producer = index_nodes(nodes)
    out, count, drop = [], 0, set()
    for n in nodes:
        if n.op_type not in ("MatMul", "Gemm") or len(n.input) < 2 or n.input[1] not in consts:
            out.append(n)
            continue
        r = producer.get(n.input[0])
        w = np.asarray(consts[n.input[1]])
        trans_b = n.op_type == "Gemm" and _attr_int(n, "transB")
        k = w.shape[1] if trans_b else w.shape[0]
        ok = (r is not None and r.op_type == "Reshape" and users.get(r.output[0]) == 1 and w.ndim == 2
              and last_dims.get(r.input[0]) == k and r.input[1] in consts
              and list(np.asarray(consts[r.input[1]]).reshape(-1))[-1:] in ([k], [-1])
              and not (n.op_type == "Gemm" and _attr_int(n, "transA")))
        if not ok:
            out.append(n)
            continue
        drop.add(id(r))
        count += 1
        if n.op_type == "MatMul":
            new = onnx.helper.make_node("MatMul", [r.input[0], n.input[1]], list(n.output), name=n.name)
            out.append(new)
            continue
        alpha, beta = _attr_float(n, "alpha", 1.0), _attr_float(n, "beta", 1.0)
        wname = f"{n.output[0]}__weight"
        consts[wname] = ((w.T if trans_b else w) * alpha).astype(np.float32)
        if len(n.input) > 2 and n.input[2] and n.input[2] in consts:
            bname = f"{n.output[0]}__bias"
            consts[bname] = (np.asarray(consts[n.input[2]], np.float32) * beta).reshape(-1)
            mid = f"{n.output[0]}__matmul"
            out.append(onnx.helper.make_node("MatMul", [r.input[0], wname], [mid], name=f"{n.name}_matmul"))
            out.append(onnx.helper.make_node("Add", [mid, bname], list(n.output), name=n.name))
        else:
            out.append(onnx.helper.make_node("MatMul", [r.input[0], wname], list(n.output), name=n.name))
    return [n for n in out if id(n) not in drop], count


def _attr_int(node, name: str) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), 0)


def _attr_float(node, name: str, default: float) -> float:
    return next((float(a.f) for a in node.attribute if a.name == name), default)
