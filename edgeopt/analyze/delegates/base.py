"""What every delegate rule table needs: a view of an op's tensors and the checks that recur across delegates.

A rule is a function ``(op, view) -> str | None``: ``None`` means the delegate takes the op, a string says why not,
in words a user can act on ("fused activation TANH not supported", "tensor rank 5 > 4").
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterable

from edgeopt.analyze.tflite import FLOAT_TYPES, OpInfo, TensorInfo, TFLiteSummary

Rule = Callable[[OpInfo, "OpView"], "str | None"]
QUANT8 = frozenset({"int8", "uint8"})


@dataclass(frozen=True)
class OpView:
    """Tensor look-ups for the ops of one model."""

    summary: TFLiteSummary

    @cached_property
    def folded(self) -> frozenset[int]:
        """Tensors computed only from constants by a DEQUANTIZE (float16 or int8 weights): constant in effect."""
        return frozenset(o for op in self.summary.ops if op.op == "DEQUANTIZE"
                         and all(self.summary.tensors[i].is_constant for i in op.inputs if i >= 0)
                         for o in op.outputs)

    def is_constant(self, t: TensorInfo) -> bool:
        return t.is_constant or t.index in self.folded

    def inputs(self, op: OpInfo) -> list[TensorInfo]:
        return [self.summary.tensors[i] for i in op.inputs if i >= 0]

    def outputs(self, op: OpInfo) -> list[TensorInfo]:
        return [self.summary.tensors[i] for i in op.outputs]

    def runtime_inputs(self, op: OpInfo) -> list[TensorInfo]:
        return [t for t in self.inputs(op) if not self.is_constant(t)]

    def const_inputs(self, op: OpInfo) -> list[TensorInfo]:
        return [t for t in self.inputs(op) if self.is_constant(t)]

    def input(self, op: OpInfo, k: int) -> TensorInfo | None:
        if k >= len(op.inputs) or op.inputs[k] < 0:
            return None
        return self.summary.tensors[op.inputs[k]]

    def activations(self, op: OpInfo) -> list[TensorInfo]:
        """Non-constant inputs and all outputs: the tensors the accelerator computes on."""
        return self.runtime_inputs(op) + self.outputs(op)


def check_all(op: OpInfo, view: OpView, rules: Iterable[Rule]) -> str | None:
    """The first reason any rule gives, or None."""
    for rule in rules:
        reason = rule(op, view)
        if reason:
            return reason
    return None


def max_rank(limit: int) -> Rule:
    def rule(op: OpInfo, view: OpView) -> str | None:
        for t in view.activations(op):
            if len(t.shape) > limit:
                return f"tensor '{t.name}' has rank {len(t.shape)} > {limit}"
        return None

    return rule


def static_shapes(op: OpInfo, view: OpView) -> str | None:
    """A -1 in ``shape_signature`` after the batch dimension is a shape only known at run time."""
    for t in view.activations(op):
        if any(d < 0 for d in t.shape_signature[1:]):
            return f"tensor '{t.name}' has a dynamic shape {list(t.shape_signature)}"
    return None


def dtypes(allowed: Iterable[str], what: str) -> Rule:
    """Every computed tensor (runtime inputs and outputs) must have one of ``allowed`` dtypes."""
    allowed = frozenset(allowed)

    def rule(op: OpInfo, view: OpView) -> str | None:
        for t in view.activations(op):
            if t.dtype not in allowed:
                return f"dtype {t.dtype} of tensor '{t.name}' not supported ({what})"
        return None

    return rule


def activation_in(allowed: Iterable[str]) -> Rule:
    allowed = frozenset(allowed)

    def rule(op: OpInfo, view: OpView) -> str | None:
        act = op.options.get("fused_activation_function")
        if act is not None and act not in allowed:
            return f"fused activation {act} not supported"
        return None

    return rule


def is_float(t: TensorInfo) -> bool:
    return t.dtype in FLOAT_TYPES


def is_const_fp16_dequantize(op: OpInfo, view: OpView) -> bool:
    """The converter's float16 weights: DEQUANTIZE of a constant float16 tensor, folded by float delegates."""
    ins = view.inputs(op)
    return op.op == "DEQUANTIZE" and len(ins) == 1 and ins[0].is_constant and ins[0].dtype == "float16"
