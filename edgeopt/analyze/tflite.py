"""Read a ``.tflite`` file straight from its flatbuffer: tensors, ops, quantization, params and MACs.

The file is parsed with the flatbuffer schema module that ships with ``ai-edge-litert`` (``schema_py_generated``),
not with an interpreter, so models with custom ops (an Edge-TPU-compiled ``edgetpu-custom-op``, a
``TFLite_Detection_PostProcess``) are read like any other: no kernel has to exist for an op to be listed.

Only the main subgraph (index 0) is summarised; the number of subgraphs is reported so that control-flow models
(WHILE / IF bodies) are recognisable. MACs are counted for CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV,
FULLY_CONNECTED and BATCH_MATMUL; every other op counts 0 (see :mod:`edgeopt.analyze.macs`). Dynamic dimensions
(-1 in ``shape_signature``) are taken at the size stored in ``shape`` (batch 1 for a Keras conversion).

    >>> s = read_tflite("model_int8.tflite")            # doctest: +SKIP
    >>> s.op_histogram["CONV_2D"], s.params, s.macs     # doctest: +SKIP
    (2, 120458, 1843200)
"""
from __future__ import annotations

import inspect
import re
from collections import Counter
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgeopt.analyze import macs as M
from edgeopt.errors import ModelFileError

FLOAT_TYPES = frozenset({"float32", "float16", "float64", "bfloat16"})
_ITEMSIZE = {"float32": 4, "float16": 2, "float64": 8, "bfloat16": 2, "int8": 1, "uint8": 1, "int16": 2,
             "uint16": 2, "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "bool": 1, "int4": 0.5}


@lru_cache(maxsize=1)
def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


@lru_cache(maxsize=None)
def _enum_names(enum_name: str) -> dict[int, str]:
    enum = getattr(_schema(), enum_name)
    return {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the main subgraph; ``scale``/``zero_point`` are empty when it is not quantized."""

    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    dtype: str
    is_constant: bool
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    quantized_dimension: int = 0
    values: tuple[int, ...] | None = None  # contents of small integer constants (axes, paddings, shapes)

    @property
    def per_channel(self) -> bool:
        """True when the tensor carries one scale per slice along ``quantized_dimension``."""
        return len(self.scale) > 1

    @property
    def nbytes(self) -> int:
        return int(M.elements(self.shape) * _ITEMSIZE.get(self.dtype, 4))


@dataclass(frozen=True)
class OpInfo:
    """One operator in execution order, with the dtypes of its tensors and its decoded builtin options."""

    index: int
    op: str
    version: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    input_dtypes: tuple[str, ...]
    output_dtypes: tuple[str, ...]
    custom: bool
    custom_name: str | None
    options: dict[str, Any]
    macs: int


@dataclass(frozen=True)
class TFLiteSummary:
    """Everything :func:`read_tflite` learns about a model; ``to_dict()`` is JSON-able."""

    path: str
    file_size: int
    schema_version: int
    subgraphs: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    tensors: tuple[TensorInfo, ...]
    ops: tuple[OpInfo, ...]
    op_histogram: Counter
    params: int
    macs: int
    weight_bytes_by_dtype: dict[str, int]
    weight_elements_by_dtype: dict[str, int]
    fully_integer: bool
    float_ops: tuple[int, ...]
    custom_ops: tuple[str, ...]

    format = "tflite"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = self.format
        d["op_histogram"] = dict(self.op_histogram)
        for key in ("inputs", "outputs", "tensors"):
            for t, src in zip(d[key], getattr(self, key)):
                t["per_channel"] = src.per_channel
        return d


def read_tflite(path: str | Path) -> TFLiteSummary:
    """Summarise a ``.tflite`` file; raise :class:`ModelFileError` when it is not a readable TFLite flatbuffer.

    >>> read_tflite("mnist_fp32.tflite").op_histogram   # doctest: +SKIP
    Counter({'CONV_2D': 2, 'MAX_POOL_2D': 2, 'RESHAPE': 1, 'FULLY_CONNECTED': 1, 'SOFTMAX': 1})
    """
    p = Path(path)
    try:
        buf = p.read_bytes()
    except OSError as e:
        raise ModelFileError(f"cannot read {p}: {e.strerror or e}", hint="check the path and permissions") from e
    # A TFLite flatbuffer carries the file identifier "TFL3" at bytes 4..8.
    if len(buf) < 16 or buf[4:8] != b"TFL3":
        raise ModelFileError(f"{p} is not a TFLite model (no 'TFL3' flatbuffer identifier)",
                             hint="pass a .tflite file produced by the TFLite converter")
    try:
        return _summarise(p, buf)
    except ModelFileError:
        raise
    except Exception as e:  # a truncated or corrupted flatbuffer fails deep inside the accessors
        raise ModelFileError(f"{p} is a damaged TFLite flatbuffer ({type(e).__name__}: {e})",
                             hint="the file may be truncated; convert the model again") from e


def _ints(obj, name: str) -> tuple[int, ...]:
    n = getattr(obj, name + "Length")()
    get = getattr(obj, name)
    return tuple(int(get(j)) for j in range(n))


def _floats(obj, name: str) -> tuple[float, ...]:
    n = getattr(obj, name + "Length")()
    get = getattr(obj, name)
    return tuple(float(get(j)) for j in range(n))


def _has_data(model, buf_index: int) -> bool:
    if buf_index <= 0 or buf_index >= model.BuffersLength():
        return False
    b = model.Buffers(buf_index)
    # Models over 2 GB keep buffer bytes after the flatbuffer: Offset()>1 and Size() say where.
    return b.DataLength() > 0 or (b.Offset() > 1 and b.Size() > 0)


def _small_int_values(model, buf_index: int, dtype: str, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    # Axes, paddings and target shapes decide whether some delegates take an op; 32 values cover them all.
    if dtype not in ("int32", "int64") or M.elements(shape) > 32 or not _has_data(model, buf_index):
        return None
    b = model.Buffers(buf_index)
    if b.DataLength() == 0:
        return None
    import numpy as np

    return tuple(int(v) for v in np.frombuffer(b.DataAsNumpy().tobytes(), dtype=dtype))


def _tensor(model, sg, i: int) -> TensorInfo:
    t = sg.Tensors(i)
    q = t.Quantization()
    scale = _floats(q, "Scale") if q is not None else ()
    zp = _ints(q, "ZeroPoint") if q is not None else ()
    shape = _ints(t, "Shape")
    sig = _ints(t, "ShapeSignature") or shape
    dtype = _enum_names("TensorType").get(t.Type(), "unknown").lower()
    return TensorInfo(index=i, name=(t.Name() or b"").decode("utf-8", "replace"), shape=shape,
                      shape_signature=sig, dtype=dtype, is_constant=_has_data(model, t.Buffer()), scale=scale,
                      zero_point=zp, quantized_dimension=int(q.QuantizedDimension()) if q is not None else 0,
                      values=_small_int_values(model, t.Buffer(), dtype, shape))


def _camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@lru_cache(maxsize=None)
def _option_getters(cls_name: str) -> tuple[tuple[str, str], ...]:
    """Scalar accessors of one ``*Options`` table: methods taking only ``self``."""
    cls = getattr(_schema(), cls_name, None)
    if cls is None:
        return ()
    out = []
    for name, fn in vars(cls).items():
        if name[0].islower() or name in ("Init",) or name.endswith(("AsNumpy", "Length", "IsNone")):
            continue
        if callable(fn) and len(inspect.signature(fn).parameters) == 1:
            out.append((name, _camel_to_snake(name)))
    return tuple(out)


def _options(op) -> dict[str, Any]:
    kind = op.BuiltinOptionsType()
    table = op.BuiltinOptions()
    if not kind or table is None:
        return {}
    cls_name = _enum_names("BuiltinOptions").get(kind)
    cls = getattr(_schema(), cls_name or "", None)
    if cls is None:
        return {}
    obj = cls()
    obj.Init(table.Bytes, table.Pos)
    opts: dict[str, Any] = {}
    for getter, key in _option_getters(cls_name):
        value = getattr(obj, getter)()
        if isinstance(value, (bool, int, float)):
            opts[key] = value
    if "fused_activation_function" in opts:
        opts["fused_activation_function"] = _enum_names("ActivationFunctionType").get(
            opts["fused_activation_function"], str(opts["fused_activation_function"]))
    if "padding" in opts and cls_name != "PadOptions":
        opts["padding"] = _enum_names("Padding").get(opts["padding"], str(opts["padding"]))
    return opts


def _op_name(code) -> tuple[str, bool, str | None]:
    # The schema keeps two fields: a deprecated int8 code (< 127) and the full int32 code; the larger one wins.
    builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
    name = _enum_names("BuiltinOperator").get(builtin, f"BUILTIN_{builtin}")
    if name == "CUSTOM":
        custom = (code.CustomCode() or b"").decode("utf-8", "replace")
        return name, True, custom
    return name, False, None


def op_macs(op: str, ins: list[TensorInfo | None], outs: list[TensorInfo], options: dict[str, Any]) -> int:
    """MACs of one TFLite op from its tensor shapes (NHWC activations, OHWI filters)."""
    if not outs or outs[0] is None:
        return 0
    out = outs[0].shape
    if op == "CONV_2D" and len(ins) > 1 and ins[1] is not None and len(ins[1].shape) == 4:
        _, kh, kw, cin = ins[1].shape  # filter [Cout, kh, kw, Cin/groups]
        return M.conv(out_elements=M.elements(out), kernel_spatial=kh * kw, in_channels_per_group=cin)
    if op == "DEPTHWISE_CONV_2D" and len(ins) > 1 and ins[1] is not None and len(ins[1].shape) == 4:
        _, kh, kw, _ = ins[1].shape  # filter [1, kh, kw, Cin*multiplier]
        return M.depthwise(out_elements=M.elements(out), kernel_spatial=kh * kw)
    if op == "TRANSPOSE_CONV" and len(ins) > 2 and ins[1] is not None and ins[2] is not None:
        cout, kh, kw, _ = ins[1].shape  # inputs: output_shape, filter [Cout, kh, kw, Cin], activations
        return M.transpose_conv(in_elements=M.elements(ins[2].shape), kernel_spatial=kh * kw,
                                out_channels_per_group=cout)
    if op == "FULLY_CONNECTED" and len(ins) > 1 and ins[1] is not None and len(ins[1].shape) == 2:
        return M.matmul(out_elements=M.elements(out), reduce_dim=ins[1].shape[1])  # weights [units, in]
    if op == "BATCH_MATMUL" and len(ins) > 1 and ins[0] is not None and len(ins[0].shape) >= 2:
        k = ins[0].shape[-2] if options.get("adj_x") else ins[0].shape[-1]
        return M.matmul(out_elements=M.elements(out), reduce_dim=k)
    return 0


def _is_param(t: TensorInfo) -> bool:
    # Weights and biases are constant float tensors or quantized constants (int8 weights, int32 biases carry a
    # scale). Integer constants without a scale are shapes, axes, paddings or permutations, not parameters.
    return t.is_constant and (t.dtype in FLOAT_TYPES or len(t.scale) > 0)


def _summarise(path: Path, buf: bytes) -> TFLiteSummary:
    schema = _schema()
    model = schema.Model.GetRootAs(buf, 0)
    if model.SubgraphsLength() < 1:
        raise ModelFileError(f"{path} has no subgraph", hint="convert the model again")
    sg = model.Subgraphs(0)
    tensors = tuple(_tensor(model, sg, i) for i in range(sg.TensorsLength()))
    codes = [_op_name(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
    versions = [int(model.OperatorCodes(i).Version()) for i in range(model.OperatorCodesLength())]
    ops = []
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        name, custom, custom_name = codes[op.OpcodeIndex()]
        ins, outs = _ints(op, "Inputs"), _ints(op, "Outputs")
        tin = [tensors[i] if i >= 0 else None for i in ins]  # -1 marks an omitted optional input
        tout = [tensors[i] for i in outs]
        opts = _options(op)
        ops.append(OpInfo(index=k, op=name, version=versions[op.OpcodeIndex()], inputs=ins, outputs=outs,
                          input_dtypes=tuple(t.dtype if t else "none" for t in tin),
                          output_dtypes=tuple(t.dtype for t in tout), custom=custom, custom_name=custom_name,
                          options=opts, macs=op_macs(name, tin, tout, opts)))
    params = [t for t in tensors if _is_param(t)]
    wbytes: Counter = Counter()
    welems: Counter = Counter()
    for t in params:
        wbytes[t.dtype] += t.nbytes
        welems[t.dtype] += M.elements(t.shape)
    float_ops = tuple(o.index for o in ops if o.op not in ("QUANTIZE", "DEQUANTIZE")
                      and any(d in FLOAT_TYPES for d in o.input_dtypes + o.output_dtypes))
    return TFLiteSummary(
        path=str(path), file_size=len(buf), schema_version=int(model.Version()), subgraphs=model.SubgraphsLength(),
        inputs=tuple(tensors[i] for i in _ints(sg, "Inputs")), outputs=tuple(tensors[i] for i in _ints(sg, "Outputs")),
        tensors=tensors, ops=tuple(ops), op_histogram=Counter(o.op if not o.custom else o.custom_name for o in ops),
        params=sum(M.elements(t.shape) for t in params), macs=sum(o.macs for o in ops),
        weight_bytes_by_dtype=dict(wbytes), weight_elements_by_dtype=dict(welems),
        fully_integer=not any(t.dtype in FLOAT_TYPES for t in tensors), float_ops=float_ops,
        custom_ops=tuple(sorted({o.custom_name or "" for o in ops if o.custom})))
