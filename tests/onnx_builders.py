"""Tiny ONNX models built in-process with ``onnx.helper``, and a helper that imports one and measures parity."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

node = helper.make_node

# The IR version each opset was released with (onnx/helper.py VERSION_TABLE); old opsets keep old IRs.
_IR = {7: 3, 8: 3, 9: 4, 10: 5, 11: 6, 12: 7, 13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}


def rand(*shape, seed: int = 0, scale: float = 0.3) -> np.ndarray:
    return (np.random.default_rng(seed + sum(shape)).standard_normal(shape) * scale).astype(np.float32)


def model(nodes, inputs, outputs, inits=None, *, opset: int = 13, dtype=TensorProto.FLOAT,
          init_as_inputs: bool = False) -> onnx.ModelProto:
    """A model from nodes; ``inputs`` are (name, shape) with None/str for dynamic dims, ``outputs`` names."""
    inits = inits or {}
    ins = [helper.make_tensor_value_info(n, dtype, s) for n, s in inputs]
    if init_as_inputs or _IR[opset] < 4:  # IR 3: initializers are also graph inputs
        ins += [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                for k, v in inits.items()]
    outs = [helper.make_tensor_value_info(n, dtype, None) for n in outputs]
    tensors = [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()]
    g = helper.make_graph(nodes, "g", ins, outs, tensors)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = _IR[opset]
    return m


def single(op: str, shape=(1, 4, 8, 8), inits=None, extra=(), *, opset: int = 13, outputs=1, **attrs):
    """One ``op`` on input ``x`` of ``shape``; ``extra`` names further inputs (initializers or '')."""
    outs = ["y"] if outputs == 1 else [f"y{i}" for i in range(outputs)]
    n = node(op, ["x", *extra], outs, name=f"{op.lower()}_node", **attrs)
    return model([n], [("x", list(shape))], outs, inits, opset=opset)


def save(m: onnx.ModelProto, folder: Path, name: str = "m.onnx") -> Path:
    p = Path(folder) / name
    onnx.save(m, str(p))
    return p


def parity(m: onnx.ModelProto, folder: Path, *, low: float = -1.0, high: float = 1.0, batch: int = 2,
           input_shapes=None, seed: int = 0):
    """Import ``m`` and compare it with onnxruntime on uniform inputs; returns (report, imported model)."""
    from edgeopt.frontends import load_model
    from edgeopt.frontends.parity import check_parity

    imported = load_model(save(m, folder), input_shapes=input_shapes)
    rng = np.random.default_rng(seed)
    samples = [rng.uniform(low, high, (batch, *s.onnx_shape[1:])).astype(np.float32) for s in imported.inputs]
    if any(s.onnx_shape[0] != 1 for s in imported.inputs):
        samples = [rng.uniform(low, high, s.onnx_shape).astype(np.float32) for s in imported.inputs]
    report = check_parity(imported, samples=samples, raise_on_fail=False)
    return report, imported


def worst(report) -> float:
    return max(o["max_rel_error"] for o in report["outputs"])


def layer_types(imported) -> list[str]:
    return [type(l).__name__ for l in imported.model.layers]
