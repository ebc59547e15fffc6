"""Delegate compatibility predicted from the published rules; each test names the rule and its source."""
from __future__ import annotations

import pytest

from edgeopt.analyze.delegates import analyze_delegates
from edgeopt.analyze.delegates.partition import graph_partitions, prefix_partition, select
from edgeopt.analyze.render import render_inspect, summarize
from edgeopt.analyze.tflite import read_tflite
from edgeopt.errors import RecipeError
from test_analyze_tflite import convert


def residual_cnn():
    """CONV_2D, DEPTHWISE_CONV_2D, CONV_2D, ADD, MAX_POOL_2D, RESHAPE, FULLY_CONNECTED."""
    from edgeopt._tf import keras

    K = keras()
    K.utils.set_random_seed(0)
    x0 = K.Input((32, 32, 3))
    x = K.layers.Conv2D(8, 3, padding="same", activation="relu")(x0)
    x = K.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = K.layers.Add()([x, K.layers.Conv2D(8, 1)(x)])
    x = K.layers.Flatten()(K.layers.MaxPooling2D()(x))
    return K.Model(x0, K.layers.Dense(10)(x))


def log_softmax_in_the_middle():
    """CONV_2D, LOG_SOFTMAX, CONV_2D, MEAN, FULLY_CONNECTED: LOG_SOFTMAX is on neither the GPU nor Edge TPU list."""
    from edgeopt._tf import keras, tf

    K, TF = keras(), tf()
    K.utils.set_random_seed(0)
    x0 = K.Input((32, 32, 3))
    x = K.layers.Conv2D(8, 3, padding="same", activation="relu")(x0)
    x = K.layers.Lambda(lambda t: TF.nn.log_softmax(t, axis=-1))(x)
    x = K.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = K.layers.GlobalAveragePooling2D()(x)
    return K.Model(x0, K.layers.Dense(10)(x))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("delegates")
    out = {}
    for name, build in (("cnn", residual_cnn), ("mid", log_softmax_in_the_middle)):
        model = build()
        for mode in ("fp32", "int8"):
            p = d / f"{name}_{mode}.tflite"
            p.write_bytes(convert(model, mode))
            out[f"{name}_{mode}"] = p
    return out


def test_float_model_is_not_edge_tpu_compatible(models):
    """Coral "TensorFlow models on the Edge TPU": only fully 8-bit quantized models compile; a float model maps
    nothing, every op stays on the CPU."""
    r = analyze_delegates(models["cnn_fp32"], delegates=["edgetpu"])["edgetpu"]
    assert (r["delegated_ops"], r["num_partitions"], r["macs_fraction"]) == (0, 0, 0.0)
    assert r["cpu_ops"] == list(range(7))
    assert "not fully 8-bit quantized" in r["model_reason"]


def test_int8_conv_depthwise_add_fc_model_maps_fully_to_edge_tpu(models):
    """Coral compatibility table: CONV_2D, DEPTHWISE_CONV_2D, ADD, MAX_POOL_2D, RESHAPE, FULLY_CONNECTED are all
    supported on int8 tensors, so the whole graph is one Edge TPU partition."""
    s = read_tflite(models["cnn_int8"])
    assert dict(s.op_histogram) == {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 1, "ADD": 1, "MAX_POOL_2D": 1, "RESHAPE": 1,
                                    "FULLY_CONNECTED": 1}
    r = analyze_delegates(s, delegates=["edgetpu"])["edgetpu"]
    assert (r["num_partitions"], r["delegated_ops"], r["cpu_ops"], r["macs_fraction"]) == (1, 7, [], 1.0)
    assert r["fully_delegated"]


def test_edge_tpu_stops_at_the_first_unsupported_op(models):
    """Coral: the compiler partitions once; the first unsupported op (LOG_SOFTMAX here, op #1) and everything after
    it run on the CPU, even the supported CONV_2D / MEAN / FULLY_CONNECTED that follow."""
    r = analyze_delegates(models["mid_int8"], delegates=["edgetpu"])["edgetpu"]
    assert r["partitions"] == [[0]] and r["cpu_ops"] == [1, 2, 3, 4]
    ops = r["ops"]
    assert ops[1]["reason"] == "op LOG_SOFTMAX not supported by the Edge TPU"
    assert [o["supported"] for o in ops] == [True, False, True, True, True]
    assert ops[2]["reason"].startswith("supported, but its partition is not delegated")
    # MACs: conv 32*32*8*27 = 221,184 on the TPU; conv 32*32*8*72 = 589,824 and FC 8*10 = 80 on the CPU
    assert r["macs_fraction"] == pytest.approx(221_184 / (221_184 + 589_824 + 80))


def test_gpu_runs_a_float_conv_net_in_one_partition(models):
    """TFLite GPU delegate "Supported ops" / gpu_compatibility.cc: every op of the float CNN is supported."""
    r = analyze_delegates(models["cnn_fp32"], delegates=["gpu"])["gpu"]
    assert (r["num_partitions"], r["delegated_ops"], r["cpu_ops"], r["macs_fraction"]) == (1, 7, [], 1.0)


def test_gpu_runs_int8_models_by_dequantizing(models):
    """TFLite GPU delegate guide, quantized models: with the default options (quantized support on), int8 ops are
    taken and computed in float; the int8 CNN is delegated whole."""
    r = analyze_delegates(models["cnn_int8"], delegates=["gpu"])["gpu"]
    assert r["fully_delegated"] and r["num_partitions"] == 1


def test_gpu_op_it_lacks_splits_the_graph_and_only_the_largest_partition_runs(models):
    """gpu_compatibility.cc has no LOG_SOFTMAX: the graph splits into 2 supported partitions; with the default
    max_delegated_partitions = 1 only the larger one ([2, 3, 4]) runs on the GPU."""
    r = analyze_delegates(models["mid_fp32"], delegates=["gpu"])["gpu"]
    assert r["candidate_partitions"] == 2
    assert r["partitions"] == [[2, 3, 4]] and r["cpu_ops"] == [0, 1]
    assert r["limits"]["max_partitions"] == 1


def test_hexagon_rejects_float_and_takes_int8(models):
    """TFLite Hexagon delegate: quantized models only. Float ops are refused by dtype; the int8 CNN (depthwise 3x3,
    multiplier 1, stride 1) is taken whole."""
    f = analyze_delegates(models["cnn_fp32"], delegates=["hexagon"])["hexagon"]
    assert f["delegated_ops"] == 0
    assert all("quantized uint8/int8" in o["reason"] for o in f["ops"])
    q = analyze_delegates(models["cnn_int8"], delegates=["hexagon"])["hexagon"]
    assert q["fully_delegated"] and q["num_partitions"] == 1


def test_hexagon_drops_partitions_below_two_nodes(models):
    """hexagon_delegate.cc: kMinNodesPerHexagonGraph = 2, so the lone CONV_2D before LOG_SOFTMAX stays on CPU."""
    r = analyze_delegates(models["mid_int8"], delegates=["hexagon"])["hexagon"]
    assert r["candidate_partitions"] == 2 and r["partitions"] == [[2, 3, 4]]


def test_coreml_takes_float_convs_but_not_int8_or_reshape(models):
    """TFLite Core ML delegate "Supported ops": float CONV_2D / DEPTHWISE_CONV_2D / ADD / MAX_POOL_2D are taken;
    RESHAPE only when targeting Core ML 2 (default 3); FULLY_CONNECTED alone is below min_nodes_per_partition = 2;
    int8 models are not supported."""
    r = analyze_delegates(models["cnn_fp32"], delegates=["coreml"])["coreml"]
    assert r["partitions"] == [[0, 1, 2, 3, 4]] and r["cpu_ops"] == [5, 6]
    assert r["ops"][5]["reason"].startswith("RESHAPE only when targeting Core ML 2")
    q = analyze_delegates(models["cnn_int8"], delegates=["coreml"])["coreml"]
    assert q["delegated_ops"] == 0 and "float models only" in q["ops"][0]["reason"]


def test_nnapi_takes_both_float_and_int8_at_api_30(models):
    """nnapi_delegate.cc: CONV_2D ... FULLY_CONNECTED from API 27, LOG_SOFTMAX from API 29, int8 operands from 30."""
    r = analyze_delegates(models["mid_int8"], delegates=["nnapi"])["nnapi"]
    assert r["fully_delegated"] and r["limits"]["max_partitions"] == 3


def test_partitioning_follows_dependencies_not_just_execution_order():
    """TFLite graph_info.cc: supported ops on independent branches join one partition."""
    # 0 -> 2 and 1 -> 3; op 1 is unsupported. Op 2 does not need op 1, so it joins op 0.
    assert graph_partitions([[], [], [0], [1]], [True, False, True, True]) == [
        (True, [0, 2]), (False, [1]), (True, [3])]
    parts = [(True, [0]), (False, [1]), (True, [2, 3, 4]), (False, [5]), (True, [6, 7])]
    assert select(parts, max_partitions=2, min_nodes=1) == [[2, 3, 4], [6, 7]]
    assert select(parts, max_partitions=0, min_nodes=2) == [[2, 3, 4], [6, 7]]
    assert prefix_partition([True, True, False, True]) == [[0, 1]] and prefix_partition([False, True]) == []


def test_unknown_delegate_is_a_recipe_error(models):
    with pytest.raises(RecipeError, match="unknown delegate"):
        analyze_delegates(models["cnn_fp32"], delegates=["tpu"])


def test_inspect_tables_show_the_delegate_verdicts(models):
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(render_inspect(summarize(models["mid_int8"]), delegates=analyze_delegates(models["mid_int8"])))
    text = console.export_text()
    assert "LOG_SOFTMAX" in text and "Edge TPU" in text and "1/5" in text and "27.3 %" in text
