"""Storing identical flatbuffer vectors once: smaller INT8 files, bit-identical outputs, aligned weight buffers."""
from __future__ import annotations

import numpy as np

from edgeopt._tf import keras, tf
from edgeopt.converter import to_tflite
from edgeopt.quantization.compact import BUFFER_ALIGNMENT, _outputs, share_identical_vectors


def int8_model_bytes(compacted: bool) -> bytes:
    K = keras()
    tf().random.set_seed(0)
    x = K.Input((16, 16, 3))
    y = x
    for width in (32, 32, 32, 64):
        y = K.layers.Conv2D(width, 3, padding="same", activation="relu")(y)
    y = K.layers.GlobalAveragePooling2D()(y)
    model = K.Model(x, K.layers.Dense(10)(y))
    rng = np.random.default_rng(0)
    calib = rng.uniform(0, 1, (16, 16, 16, 3)).astype(np.float32)
    data = to_tflite(model, input_names=["x"], output_names=["y"], precision="int8", io_type="int8",
                     representative=lambda: ([calib[i : i + 1]] for i in range(16)))
    return data if compacted else _uncompacted(model, calib)


def _uncompacted(model, calib):
    import edgeopt.quantization.compact as C

    keep = C.compact
    try:
        C.compact = lambda d: d
        return to_tflite(model, input_names=["x"], output_names=["y"], precision="int8", io_type="int8",
                         representative=lambda: ([calib[i : i + 1]] for i in range(16)))
    finally:
        C.compact = keep


def test_shared_zero_points_shrink_the_file_and_keep_outputs():
    raw = int8_model_bytes(False)
    small = share_identical_vectors(raw)
    # Per-channel zero-point vectors (int64, all 0): weights and biases of the three 32-wide convs are 6 equal
    # vectors of 32 x 8 = 256 bytes; 5 of them are no longer stored: at least 1,280 bytes saved.
    assert len(raw) - len(small) >= 5 * 32 * 8
    feeds, before = _outputs(raw, None)
    _, after = _outputs(small, feeds)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    # to_tflite applies it: its output is as small as the compacted file, give or take the converter's naming
    assert len(int8_model_bytes(True)) <= len(raw) - 5 * 32 * 8


def test_weight_buffers_stay_aligned():
    from ai_edge_litert import schema_py_generated as schema

    small = bytearray(share_identical_vectors(int8_model_bytes(False)))
    model = schema.Model.GetRootAs(small, 0)
    base = np.frombuffer(small, np.uint8).ctypes.data
    checked = 0
    for i in range(model.BuffersLength()):
        data = model.Buffers(i).DataAsNumpy()
        if isinstance(data, np.ndarray) and data.size:
            assert (data.ctypes.data - base) % BUFFER_ALIGNMENT == 0
            checked += 1
    assert checked >= 10  # 5 weight tensors + 5 biases
