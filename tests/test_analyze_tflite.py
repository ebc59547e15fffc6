"""Reading .tflite files: op histograms, params, MACs and quantization of FP32, full-INT8 and FP16 conversions."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgeopt.analyze.keras_summary import keras_summary
from edgeopt.analyze.tflite import read_tflite
from edgeopt.errors import ModelFileError

# conv 3->8 3x3 (224 params), depthwise 3x3 (80), conv 1x1 8->16 (144), dense 4096->32 (131,104), dense 32->10 (330)
PARAMS = 224 + 80 + 144 + 131_104 + 330
# MACs per layer, by hand (batch 1, 32x32 input, 'same' padding, 2x2 max-pool before the flatten):
#   conv     32*32*8  outputs x 3*3*3 = 221,184
#   dwconv   32*32*8  outputs x 3*3   =  73,728
#   conv1x1  32*32*16 outputs x 8     = 131,072
#   dense    32 outputs x 16*16*16    = 131,072
#   dense    10 outputs x 32          =     320
MACS = 221_184 + 73_728 + 131_072 + 131_072 + 320


def build_cnn():
    """A tiny CNN with non-zero biases (the converter stores equal constant arrays, e.g. zero biases, once)."""
    from edgeopt._tf import keras

    K = keras()
    K.utils.set_random_seed(0)

    def init(seed):  # one seed per layer: equal bias arrays would be shared too
        return K.initializers.RandomNormal(stddev=0.1, seed=seed)

    return K.Sequential([
        K.Input((32, 32, 3)),
        K.layers.Conv2D(8, 3, padding="same", activation="relu", bias_initializer=init(1)),
        K.layers.DepthwiseConv2D(3, padding="same", activation="relu", bias_initializer=init(2)),
        K.layers.Conv2D(16, 1, bias_initializer=init(3)),
        K.layers.MaxPooling2D(),
        K.layers.Flatten(),
        K.layers.Dense(32, activation="relu", bias_initializer=init(4)),
        K.layers.Dense(10, bias_initializer=init(5)),
    ])


def convert(model, mode: str) -> bytes:
    """FP32, full-INT8 (int8 input/output, calibrated on 16 random images) or FP16-weight conversion."""
    from edgeopt._tf import tf

    TF = tf()
    c = TF.lite.TFLiteConverter.from_keras_model(model)
    if mode == "int8":
        def representative():
            rng = np.random.default_rng(0)
            for _ in range(16):
                yield [rng.random((1, 32, 32, 3), dtype=np.float32)]

        c.optimizations = [TF.lite.Optimize.DEFAULT]
        c.representative_dataset = representative
        c.target_spec.supported_ops = [TF.lite.OpsSet.TFLITE_BUILTINS_INT8]
        c.inference_input_type = TF.int8
        c.inference_output_type = TF.int8
    elif mode == "fp16":
        c.optimizations = [TF.lite.Optimize.DEFAULT]
        c.target_spec.supported_types = [TF.float16]
    return c.convert()


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    model = build_cnn()
    d = tmp_path_factory.mktemp("tflite")
    paths = {}
    for mode in ("fp32", "int8", "fp16"):
        paths[mode] = d / f"cnn_{mode}.tflite"
        paths[mode].write_bytes(convert(model, mode))
    return model, paths


def test_fp32_histogram_params_and_macs_match_keras(cnn):
    model, paths = cnn
    s = read_tflite(paths["fp32"])
    assert dict(s.op_histogram) == {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 1, "MAX_POOL_2D": 1, "RESHAPE": 1,
                                    "FULLY_CONNECTED": 2}
    assert s.params == model.count_params() == PARAMS == 131_882
    assert s.macs == keras_summary(model)["macs"] == MACS == 557_376
    assert [o.macs for o in s.ops if o.macs] == [221_184, 73_728, 131_072, 131_072, 320]
    assert s.weight_bytes_by_dtype == {"float32": 4 * PARAMS}
    (x,) = s.inputs
    assert (x.shape, x.shape_signature, x.dtype) == ((1, 32, 32, 3), (-1, 32, 32, 3), "float32")
    assert not s.fully_integer and len(s.float_ops) == 7
    first = s.ops[0]
    assert (first.op, first.input_dtypes, first.options["fused_activation_function"]) == (
        "CONV_2D", ("float32", "float32", "float32"), "RELU")
    assert json.loads(json.dumps(s.to_dict()))["op_histogram"]["CONV_2D"] == 2


def test_int8_weights_are_per_channel_int8_and_the_file_is_small(cnn):
    _, paths = cnn
    s = read_tflite(paths["int8"])
    assert dict(s.op_histogram) == {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 1, "MAX_POOL_2D": 1, "RESHAPE": 1,
                                    "FULLY_CONNECTED": 2}
    assert s.params == PARAMS and s.macs == MACS
    assert s.fully_integer and s.float_ops == ()
    # weights int8, biases int32: 5 biases of 8+8+16+32+10 = 74 values x 4 bytes
    assert s.weight_bytes_by_dtype == {"int8": PARAMS - 74, "int32": 74 * 4}
    for conv, out_channels in zip([o for o in s.ops if o.op == "CONV_2D"], (8, 16)):
        w = s.tensors[conv.inputs[1]]
        assert w.dtype == "int8" and w.per_channel
        assert w.quantized_dimension == 0 and len(w.scale) == out_channels
    (x,) = s.inputs
    # calibration data lies in [0, 1): scale 1/255, zero point -128 maps 0.0 to the bottom of int8
    assert x.dtype == "int8" and x.zero_point == (-128,) and x.scale[0] == pytest.approx(1 / 255, rel=1e-3)
    # 131,882 params: 4 bytes each in FP32 vs 1 byte in INT8 -> about 0.26x with the flatbuffer overhead
    fp32_size = read_tflite(paths["fp32"]).file_size
    assert s.file_size < 0.3 * fp32_size


def test_fp16_weights_are_float16_behind_dequantize_ops(cnn):
    _, paths = cnn
    s = read_tflite(paths["fp16"])
    fp16_consts = [t for t in s.tensors if t.is_constant and t.dtype == "float16"]
    assert len(fp16_consts) == 10  # 5 weight tensors + 5 biases
    assert s.op_histogram["DEQUANTIZE"] == 10
    assert all(o.input_dtypes == ("float16",) and o.output_dtypes == ("float32",)
               for o in s.ops if o.op == "DEQUANTIZE")
    assert s.weight_bytes_by_dtype == {"float16": 2 * PARAMS}
    assert s.params == PARAMS and s.macs == MACS


def test_keras_summary_counts_one_conv_by_hand():
    from edgeopt._tf import keras

    K = keras()
    m = K.Sequential([K.Input((32, 32, 3)), K.layers.Conv2D(8, 3, padding="same", name="conv"),
                      K.layers.SeparableConv2D(4, 3, padding="same", name="sep"),
                      K.layers.Conv2DTranspose(2, 2, strides=2, name="up")])
    r = keras_summary(m)
    # Conv2D: 32*32*8 outputs x 3*3*3 = 221,184
    # SeparableConv2D: depthwise 32*32*8 x 9 = 73,728 + pointwise 32*32*4 x 8 = 32,768
    # Conv2DTranspose: 32*32*4 inputs x 2*2 x 2 outputs channels = 32,768
    assert r["macs_by_layer"] == {"conv": 221_184, "sep": 106_496, "up": 32_768}
    assert r["params"] == r["trainable_params"] == m.count_params() == 224 + (72 + 32 + 4) + (32 + 2)


@pytest.mark.parametrize("content, message", [
    (b"definitely not a flatbuffer", "not a TFLite model"),
    (b"", "not a TFLite model"),
])
def test_bad_tflite_files_raise_model_file_error(tmp_path, content, message):
    p = tmp_path / "bad.tflite"
    p.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        read_tflite(p)


def test_truncated_and_missing_tflite_files_raise_model_file_error(cnn, tmp_path):
    _, paths = cnn
    data = paths["fp32"].read_bytes()
    p = tmp_path / "truncated.tflite"
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelFileError, match="damaged"):
        read_tflite(p)
    with pytest.raises(ModelFileError, match="cannot read"):
        read_tflite(tmp_path / "missing.tflite")
