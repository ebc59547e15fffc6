"""ONNX padding (auto_pad, explicit pads, ceil_mode) expressed as Keras 'same'/'valid' plus explicit pads."""
from __future__ import annotations

import math

from edgeopt.frontends.onnx.context import NodeError, attr


def tf_same_pads(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """The (before, after) pads TensorFlow's 'SAME' uses: out = ceil(size / s), extra pad at the end.

    >>> tf_same_pads(32, 3, 2)   # out 16: (16 - 1) * 2 + 3 - 32 = 1 → (0, 1)
    (0, 1)
    """
    k_eff = (k - 1) * d + 1
    out = -(-size // s)
    total = max((out - 1) * s + k_eff - size, 0)
    return total // 2, total - total // 2


def spatial_pads(node, sizes, kernel, strides, dilations) -> list[tuple[int, int]]:
    """Per spatial axis (before, after) pads from ``auto_pad`` / ``pads``."""
    n = len(sizes)
    auto = attr(node, "auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [tf_same_pads(sizes[i], kernel[i], strides[i], dilations[i]) for i in range(n)]
        return pads if auto == "SAME_UPPER" else [(b, a) for a, b in pads]
    if auto == "VALID":
        return [(0, 0)] * n
    if auto != "NOTSET":
        raise NodeError(f"unknown auto_pad '{auto}'")
    p = list(attr(node, "pads", [0] * (2 * n)))
    if len(p) != 2 * n:
        raise NodeError(f"pads has {len(p)} values, expected {2 * n}")
    if any(v < 0 for v in p):
        raise NodeError(f"negative pads {p} are not supported")
    return [(int(p[i]), int(p[i + n])) for i in range(n)]


def ceil_extra(size: int, k: int, s: int, d: int, pads: tuple[int, int]) -> int:
    """Extra end padding that turns floor output sizes into ceil_mode sizes.

    ceil: out = ceil((size + pb + pa - k_eff) / s) + 1, but the last window must start inside the input or the
    left pad (the rule onnxruntime and PyTorch follow).
    """
    k_eff = (k - 1) * d + 1
    span = size + pads[0] + pads[1] - k_eff
    out = math.ceil(span / s) + 1
    if (out - 1) * s >= size + pads[0]:
        out -= 1
    need = (out - 1) * s + k_eff - (size + pads[0] + pads[1])
    return max(need, 0)


def keras_padding(sizes, kernel, strides, dilations, pads) -> str | None:
    """'valid' or 'same' when the explicit pads equal what Keras would do, else None (pad explicitly)."""
    if all(p == (0, 0) for p in pads):
        return "valid"
    same = [tf_same_pads(sizes[i], kernel[i], strides[i], dilations[i]) for i in range(len(sizes))]
    if list(pads) == same:
        return "same"
    return None
