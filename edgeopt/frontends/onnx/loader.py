"""Read an ONNX file and check it can be imported: readable, IR version, opset, domains, supported ops."""
from __future__ import annotations

from pathlib import Path

import onnx

from edgeopt.errors import ModelFileError, UnsupportedModelError

MIN_IR, MAX_IR = 3, onnx.IR_VERSION
MIN_OPSET, MAX_OPSET = 7, 21
DEFAULT_DOMAINS = ("", "ai.onnx")


def read(path: Path) -> onnx.ModelProto:
    """Parse ``path`` as an ONNX model, or raise ModelFileError saying why it is not one."""
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory, not an ONNX file")
    data = path.read_bytes()
    if not data:
        raise ModelFileError(f"{path} is empty (0 bytes)")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelFileError(f"{path} is not an ONNX model (it does not parse: {_short(exc)})",
                             hint="is the file truncated, or another format? Re-export it with torch.onnx.export "
                                  "or tf2onnx") from None
    if not model.HasField("graph") or not model.graph.output or model.ir_version <= 0:
        raise ModelFileError(f"{path} is not an ONNX model (no graph, outputs or IR version)",
                             hint="re-export the model")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        try:
            onnx.load_external_data_for_model(model, str(path.parent))
        except Exception as exc:
            raise ModelFileError(f"{path}: external weight data cannot be read: {_short(exc)}",
                                 hint="keep the .data file next to the .onnx file") from None
    return model


def check_versions(model: onnx.ModelProto, path: Path) -> int:
    """The default-domain opset, after checking IR version and opset are in the supported range."""
    if not MIN_IR <= model.ir_version <= MAX_IR:
        raise ModelFileError(f"{path}: ONNX IR version {model.ir_version} is not supported "
                             f"(supported: {MIN_IR}..{MAX_IR})",
                             hint="convert it with onnx.version_converter or re-export with a current exporter")
    opsets = {o.domain: o.version for o in model.opset_import}
    default = [opsets[d] for d in DEFAULT_DOMAINS if d in opsets]
    if not default:
        raise ModelFileError(f"{path}: the model imports no default-domain opset",
                             hint="re-export the model with a current exporter (opset 7..21)")
    opset = int(default[0])
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedModelError(f"{path}: opset {opset} is not supported (supported: {MIN_OPSET}..{MAX_OPSET})",
                                    hint="convert it with onnx.version_converter.convert_version(model, 17)")
    return opset


def check_structure(model: onnx.ModelProto, path: Path) -> None:
    """Run onnx.checker (without shape inference); its complaints become a ModelFileError.

    Outputs declared without a shape are legal for onnxruntime, so they are given an (unchecked) empty shape
    first rather than failing the check.
    """
    for v in list(model.graph.output) + list(model.graph.value_info):
        if v.type.HasField("tensor_type") and not v.type.tensor_type.HasField("shape"):
            v.type.tensor_type.shape.SetInParent()
    try:
        onnx.checker.check_model(model, full_check=False)
    except Exception as exc:
        raise ModelFileError(f"{path}: the model is malformed: {_short(exc)}",
                             hint="open it in onnxruntime or Netron to see the problem; re-export the model") from None


def check_ops(nodes, path: Path, supported: set[str], variant=None) -> None:
    """All custom-domain and unsupported ops at once, each with its node names.

    ``variant(node)`` may name why a supported op's variant cannot be mapped (an LSTM with peepholes, say);
    such nodes are listed with the unsupported ops as ``LSTM with <reason>``.
    """
    custom: dict[str, list[str]] = {}
    missing: dict[str, list[str]] = {}
    for n in nodes:
        label = n.name or (n.output[0] if n.output else "?")
        if n.domain not in DEFAULT_DOMAINS:
            custom.setdefault(f"{n.domain}::{n.op_type}", []).append(label)
        elif n.op_type not in supported:
            missing.setdefault(n.op_type, []).append(label)
        elif variant is not None and (why := variant(n)):
            missing.setdefault(f"{n.op_type} with {why}", []).append(label)
    parts = []
    if missing:
        parts.append("unsupported ONNX ops: " + ", ".join(f"{op} ({_nodes(names)})"
                                                         for op, names in sorted(missing.items())))
    if custom:
        domains = sorted({k.split("::")[0] for k in custom})
        parts.append(f"custom-domain ops from {', '.join(domains)}: "
                     + ", ".join(f"{op} ({_nodes(names)})" for op, names in sorted(custom.items())))
    if parts:
        hint = ("replace these layers before export, or cut the model before them (onnx.utils.extract_model) "
                "and run the rest outside")
        if custom:
            hint = ("only standard ONNX ops can be compiled: export without pre/post-processing or runtime-specific "
                    "ops (onnxruntime's com.microsoft fusions, integer-only ops), or " + hint)
        raise UnsupportedModelError("; ".join(parts) + f" (in {path})", hint=hint)


def _nodes(names: list[str]) -> str:
    shown = ", ".join(f"node '{n}'" for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
