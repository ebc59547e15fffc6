"""Summarise an ``.onnx`` file: I/O, op histogram, opset, IR version, params and MACs.

Params are the elements of the graph initializers plus the tensors held by ``Constant`` nodes (older exporters store
weights that way); integer shape constants count too, as ONNX gives no way to tell them from weights. MACs come from
``onnx.shape_inference`` shapes for Conv, ConvTranspose, Gemm and MatMul (see :mod:`edgeopt.analyze.macs`); other
ops count 0, and an op whose shapes cannot be inferred counts 0 and is listed in ``macs_unknown``. Dynamic
dimensions are reported by name (``"batch"``) or as ``"?"`` and taken as 1 when counting. A file that parses but fails ``onnx.checker`` is still summarised, with the
checker's message in ``checker_error``.

    >>> s = summarize_onnx("mnist.onnx")           # doctest: +SKIP
    >>> s.op_histogram["Conv"], s.params, s.macs   # doctest: +SKIP
    (2, 5998, 353600)
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeopt.analyze import macs as M
from edgeopt.errors import ModelFileError


@dataclass(frozen=True)
class OnnxIO:
    """A graph input or output: dynamic dimensions are strings (their symbolic name, or ``"?"``)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str


@dataclass(frozen=True)
class OnnxSummary:
    """What :func:`summarize_onnx` learns about a model; ``to_dict()`` is JSON-able."""

    path: str
    file_size: int
    ir_version: int
    opsets: dict[str, int]
    producer: str
    inputs: tuple[OnnxIO, ...]
    outputs: tuple[OnnxIO, ...]
    op_histogram: Counter
    params: int
    macs: int
    macs_by_node: dict[str, int]
    macs_unknown: tuple[str, ...]
    checker_error: str | None

    format = "onnx"

    @property
    def opset(self) -> int:
        """The default-domain (``ai.onnx``) opset version."""
        return self.opsets.get("ai.onnx", self.opsets.get("", 0))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(format=self.format, opset=self.opset, op_histogram=dict(self.op_histogram))
        return d


def _load(path: Path):
    import onnx

    if not path.is_file():
        raise ModelFileError(f"{path} does not exist or is not a file", hint="check the model path")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # DecodeError, truncated protobuf, missing external data
        raise ModelFileError(f"{path} is not a readable ONNX model ({type(e).__name__}: {e})",
                             hint="export the model again; a truncated download also gives this error") from e
    if not model.graph.node and not model.graph.input:
        raise ModelFileError(f"{path} holds no ONNX graph (empty protobuf)", hint="pass an exported .onnx model")
    return model


def _dtype_name(elem_type: int) -> str:
    import onnx

    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except Exception:
        return onnx.TensorProto.DataType.Name(elem_type).lower() if elem_type else "undefined"


def _shape(value_info) -> tuple[int | str, ...] | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim)


def _io(value_info) -> OnnxIO:
    return OnnxIO(name=value_info.name, shape=_shape(value_info) or (),
                  dtype=_dtype_name(value_info.type.tensor_type.elem_type))


def _ints(shape) -> list[int]:
    return [d if isinstance(d, int) and d > 0 else 1 for d in shape]


def _node_macs(node, shapes: dict[str, tuple]) -> int | None:
    """MACs of one node, or None when a needed shape is unknown."""
    get = {a.name: a for a in node.attribute}
    ins = [shapes.get(n) for n in node.input]
    out = shapes.get(node.output[0]) if node.output else None
    if node.op_type == "Conv":
        if out is None or len(ins) < 2 or ins[1] is None:
            return None
        w = _ints(ins[1])  # [Cout, Cin/groups, k...]
        return M.conv(out_elements=M.elements(_ints(out)), kernel_spatial=M.elements(w[2:]),
                      in_channels_per_group=w[1])
    if node.op_type == "ConvTranspose":
        if len(ins) < 2 or ins[0] is None or ins[1] is None:
            return None
        w = _ints(ins[1])  # [Cin, Cout/groups, k...]: each input value feeds kh*kw*Cout/groups outputs
        return M.transpose_conv(in_elements=M.elements(_ints(ins[0])), kernel_spatial=M.elements(w[2:]),
                                out_channels_per_group=w[1])
    if node.op_type == "Gemm":
        if out is None or ins[0] is None:
            return None
        a = _ints(ins[0])
        k = a[0] if "transA" in get and get["transA"].i else a[-1]
        return M.matmul(out_elements=M.elements(_ints(out)), reduce_dim=k)
    if node.op_type == "MatMul":
        if out is None or ins[0] is None or not ins[0]:
            return None
        return M.matmul(out_elements=M.elements(_ints(out)), reduce_dim=_ints(ins[0])[-1])
    return 0


def _count_params(model) -> int:
    total = sum(M.elements(init.dims) if init.dims else 1 for init in model.graph.initializer)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    total += M.elements(a.t.dims) if a.t.dims else 1
    return total


def _infer_shapes(model) -> dict[str, tuple]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # inference failing on an exotic op leaves MACs unknown, it does not make the file bad
        inferred = model
    g = inferred.graph
    shapes: dict[str, tuple] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        s = _shape(vi)
        if s is not None:
            shapes[vi.name] = s
    for init in g.initializer:
        shapes[init.name] = tuple(init.dims)
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    shapes[node.output[0]] = tuple(a.t.dims)
    return shapes


def _checker_error(path: Path) -> str | None:
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as e:  # the summary still stands; the error tells why a runtime would refuse the file
        return str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
    return None


def summarize_onnx(path: str | Path) -> OnnxSummary:
    """Summarise an ``.onnx`` file; raise :class:`ModelFileError` when it cannot be parsed.

    >>> summarize_onnx("cifar10.onnx").inputs[0].shape   # doctest: +SKIP
    ('batch_size', 3, 32, 32)
    """
    p = Path(path)
    model = _load(p)
    shapes = _infer_shapes(model)
    macs_by_node: dict[str, int] = {}
    unknown = []
    for i, node in enumerate(model.graph.node):
        n = _node_macs(node, shapes)
        key = node.name or f"{node.op_type}_{i}"
        if n is None:
            unknown.append(key)
        elif n:
            macs_by_node[key] = n
    initializers = {i.name for i in model.graph.initializer}
    return OnnxSummary(
        path=str(p), file_size=p.stat().st_size, ir_version=int(model.ir_version),
        opsets={(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        inputs=tuple(_io(v) for v in model.graph.input if v.name not in initializers),
        outputs=tuple(_io(v) for v in model.graph.output),
        op_histogram=Counter(n.op_type for n in model.graph.node), params=_count_params(model),
        macs=sum(macs_by_node.values()), macs_by_node=macs_by_node, macs_unknown=tuple(unknown),
        checker_error=_checker_error(p))
