"""Smaller `.tflite` files without touching a single value: identical vectors are stored once.

Per-channel quantization gives every weight and bias tensor a scale vector (float32) and a zero-point vector
(int64) with one entry per output channel. Weight zero points are always 0, so a model with 17,000 output channels
carries 17,000 x 2 x 8 = 272 KB of zero-point vectors that are identical for every layer of the same width. The
flatbuffer format lets several tables point at one vector, so each distinct vector is written once here; weight
buffers keep the 16-byte alignment the converter gives them.
"""
from __future__ import annotations

import numpy as np

BUFFER_ALIGNMENT = 16  # the converter aligns weight buffers to 16 bytes; kernels may read them in place


def _sharing_builder():
    import flatbuffers

    class SharingBuilder(flatbuffers.Builder):
        """A builder that returns the earlier offset when the same numeric vector is written again."""

        def __init__(self, size: int):
            super().__init__(size)
            self._seen: dict[tuple[str, bytes], int] = {}

        def CreateNumpyVector(self, x):  # noqa: N802 (flatbuffers' API name)
            key = (x.dtype.str, x.tobytes())
            if key in self._seen:
                return self._seen[key]
            if x.dtype == np.uint8:  # weight buffer data: keep the alignment
                self.StartVector(1, x.size, BUFFER_ALIGNMENT)
                payload = x.tobytes()
                self.head -= len(payload)
                self.Bytes[self.head : self.head + len(payload)] = payload
                offset = self.EndVector(x.size)
            else:
                offset = super().CreateNumpyVector(x)
            self._seen[key] = offset
            return offset

    return SharingBuilder


def share_identical_vectors(data: bytes) -> bytes:
    """The same model with every repeated numeric vector stored once (zero points, shapes, equal weights).

    >>> smaller = share_identical_vectors(open("model_int8.tflite", "rb").read())   # doctest: +SKIP
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    builder = _sharing_builder()(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _outputs(data: bytes, feeds: list[np.ndarray] | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from ai_edge_litert.interpreter import Interpreter

    from .._quiet import quiet_native_stderr

    with quiet_native_stderr():
        interp = Interpreter(model_content=data, num_threads=1)
        interp.allocate_tensors()
    details = interp.get_input_details()
    if feeds is None:
        rng = np.random.default_rng(0)
        feeds = []
        for d in details:
            dt = np.dtype(d["dtype"])
            if dt.kind == "f":
                feeds.append(rng.uniform(-1, 1, d["shape"]).astype(dt))
            else:
                info = np.iinfo(dt)
                feeds.append(rng.integers(max(info.min, -128), min(info.max, 127) + 1, d["shape"]).astype(dt))
    for d, x in zip(details, feeds):
        interp.set_tensor(d["index"], x)
    interp.invoke()
    return feeds, [interp.get_tensor(d["index"]).copy() for d in interp.get_output_details()]


def compact(data: bytes) -> bytes:
    """:func:`share_identical_vectors`, kept only when the result runs and gives bit-identical outputs."""
    try:
        smaller = share_identical_vectors(data)
        feeds, before = _outputs(data, None)
        _, after = _outputs(smaller, feeds)
    except Exception:  # an unfamiliar schema field or op: keep the converter's file as it is
        return data
    same = len(before) == len(after) and all(np.array_equal(a, b) for a, b in zip(before, after))
    return smaller if same and len(smaller) <= len(data) else data
