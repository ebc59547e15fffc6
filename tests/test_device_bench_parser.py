"""parse_benchmark_model on recorded real outputs (sources in tests/data/benchmark_model/SOURCES.md)."""
from __future__ import annotations

from pathlib import Path

import pytest

from device_bench.cli import main
from device_bench.parse_benchmark_model import parse, strip_prefix

DATA = Path(__file__).parent / "data" / "benchmark_model"


def sample(name):
    return parse((DATA / name).read_text())


def test_every_sample_is_cited():
    sources = (DATA / "SOURCES.md").read_text()
    names = sorted(p.name for p in DATA.glob("*.txt"))
    assert len(names) >= 8 and all(f"| {n} | http" in sources for n in names)


def test_tf1_old_average_format():
    r = sample("01_tf1x_average_timings.txt")
    assert (r["init_us"], r["warmup_avg_us"], r["inference_avg_us"]) == (9933, 76605.9, 66767.6)
    assert r["first_inference_us"] is None and r["session_init_ms"] == 9.933
    assert r["warmup"] == {"count": 7, "first": 127425, "curr": 66709, "min": 66709, "max": 127425,
                           "avg": 76605.9, "std": 20944}
    assert r["latency_ms"] == pytest.approx({"mean": 66.7676, "median": None, "p90": None, "p99": None,
                                             "std": 0.039, "min": 66.699, "max": 66.838, "p5": None, "p95": None,
                                             "first": 66.753, "count": 15})


def test_tf1_op_table_with_delegate_rows_and_spaces_in_names():
    r = sample("02_tf1x_gpu_delegate_op_profile.txt")
    assert (r["init_us"], r["warmup_avg_us"], r["inference_avg_us"]) == (21528106, 27917.4, 23313.5)
    rows = r["op_profile"]["regular"]["run_order"]
    assert [row["node_type"] for row in rows] == ["DELEGATE", "SPLIT", "ADD"]
    assert (rows[0]["avg_ms"], rows[0]["percent"], rows[0]["times_called"]) == (21.287, 91.329, 1)
    assert rows[1]["name"].count(", ") == 3 and rows[1]["cdf_percent"] == 91.385


def test_tf1_15_gpu_completely_delegated():
    r = sample("03_tf1_15_gpu_explicit.txt")
    assert (r["init_us"], r["first_inference_us"], r["warmup_avg_us"], r["inference_avg_us"]) == (
        870557, 130565, 122373, 119375)
    assert r["delegate_applied"] == [{"name": "GPU", "execution": "complete", "kernels": None}]
    assert r["delegates_created"] == ["GPU"]
    assert (r["model_size_mb"], r["session_init_ms"], r["num_threads"]) == (7.07479, 870.557, 4)
    assert r["graph"] == "/data/local/tmp/tflite/denoising_32bit.tflite"
    assert r["warmup"]["count"] == 4 and r["inference"]["std"] == 1948
    assert r["latency_ms"]["min"] == pytest.approx(113.737) and r["latency_ms"]["max"] == pytest.approx(124.776)


def test_old_peak_memory_wording():
    r = sample("04_tf2x_peak_memory_old_wording.txt")
    assert r["memory_mb"] == {"init": 0.0, "overall": 12.8672, "peak": None}
    assert r["inference"]["count"] == 50 and r["inference"]["avg"] == 33209.4 and r["init_us"] == 855


def test_xnnpack_on_raspberry_pi():
    r = sample("05_tf2x_xnnpack_raspberry_pi.txt")
    assert r["delegates_created"] == ["XNNPACK"]
    assert r["memory_mb"] == {"init": 8.97656, "overall": 18.7227, "peak": None}
    assert r["latency_ms"]["mean"] == pytest.approx(55.0432) and r["latency_ms"]["count"] == 50


def test_scientific_notation_and_full_op_profile():
    r = sample("06_tf2_8_riscv_op_profile.txt")
    assert r["warmup"] == {"count": 1, "curr": 3512391}
    assert r["inference"]["avg"] == 2.95034e06 and r["inference_avg_us"] == 2.95034e06
    assert r["warmup_avg_us"] == 3.51239e06 and r["first_inference_us"] == 3512391
    assert r["memory_mb"] == {"init": 4.21094, "overall": 46.0859, "peak": None}
    regular = r["op_profile"]["regular"]
    assert len(regular["run_order"]) == 31 and len(regular["top"]) == 10 and regular["nodes_executed"] == 31
    assert regular["by_node_type"][0] == {"node_type": "CONV_2D", "count": 15, "avg_ms": 2651.853,
                                          "percent": 89.897, "cdf_percent": 89.897, "mem_kb": 0.0,
                                          "times_called": 15}
    assert regular["top"][0]["name"] == "[MobilenetV1/MobilenetV1/Conv2d_5_pointwise/Relu6]:10"
    assert r["op_profile"]["init"]["run_order"][0]["node_type"] == "AllocateTensors"


def test_logcat_nnapi_partial_delegation():
    r = sample("07_tf2_9_logcat_nnapi_partial.txt")
    assert r["delegate_applied"] == [{"name": "NNAPI", "execution": "partial", "kernels": 44}]
    assert (r["warmup"]["count"], r["inference"]["count"]) == (40, 75)
    assert (r["init_us"], r["inference_avg_us"], r["session_init_ms"]) == (126059, 12167.6, 126.059)


def test_logcat_prefixed_init_profile():
    r = sample("08_tf2_9_logcat_init_profile.txt")
    assert r["memory_mb"]["init"] == r["memory_mb"]["overall"] == 2.03516
    rows = r["op_profile"]["init"]["run_order"]
    assert [(x["node_type"], x["first_ms"], x["avg_ms"], x["mem_kb"], x["times_called"]) for x in rows] == [
        ("ModifyGraphWithDelegate", 54.571, 54.571, 1132.0, 1), ("AllocateTensors", 2.833, 1.419, 0.0, 2)]


def test_nnapi_partitions_in_op_profile():
    r = sample("09_nightly_2021_nnapi_op_profile.txt")
    by_type = {row["node_type"]: row for row in r["op_profile"]["regular"]["by_node_type"]}
    assert by_type["TfLiteNnapiDelegate"]["count"] == 3 and by_type["TfLiteNnapiDelegate"]["percent"] == 92.504
    assert r["op_profile"]["regular"]["nodes_executed"] == 14 and r["inference"] is None


def test_failed_delegate_is_reported():
    r = sample("10_nightly_2021_nnapi_failed.txt")
    assert r["inference_avg_us"] is None and r["delegates_created"] == ["NNAPI"]
    assert r["errors"][-2:] == ["Failed to apply NNAPI delegate.", "Benchmarking failed."]
    assert "ANEURALNETWORKS_BAD_DATA" in r["errors"][0]


def test_info_prefixed_lines():
    r = sample("11_tf2_17_info_prefix_xnnpack.txt")
    assert (r["init_us"], r["first_inference_us"], r["inference_avg_us"]) == (12750, 14744, 13520.2)
    assert r["inference"] == {"count": 74, "first": 14850, "curr": 13315, "min": 13105, "max": 15765,
                              "avg": 13520.2, "std": 470}
    assert r["model_size_mb"] == 16.9008 and r["graph"] == "mobilenet_v1_1.0_224.tflite"


def test_many_runs_sub_100_us():
    r = sample("12_armnn_issue_raspberry_pi4_many_runs.txt")
    assert r["latency_ms"]["count"] == 14192 and r["latency_ms"]["mean"] == pytest.approx(0.069691)
    assert r["warmup"]["count"] == 7028 and r["warmup_avg_us"] == 70.3736


def test_single_count_line_is_the_timed_runs():
    r = sample("13_nightly_2021_nnapi_fp16_summary.txt")
    assert r["warmup"] is None and r["inference"]["avg"] == 99646.2
    assert r["memory_mb"] == {"init": 8.23828, "overall": 62.3242, "peak": None}


def test_newer_lines_percentiles_peak_and_replacing():
    text = ("VERBOSE: Replacing 65 out of 66 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 2 "
            "partitions.\n"
            "11-22 10:00:00.123  1234  1234 I tflite  : count=25 first=187533 curr=140990 min=140071 max=195121 "
            "avg=145528 std=13583 p5=140545 median=141253 p95=187533\n"
            "INFO: Overall peak memory footprint (MB) via periodic monitoring: 93.2383\n")
    r = parse(text)
    assert r["delegates"] == [{"delegate": "TfLiteGpuDelegateV2", "nodes_replaced": 65, "nodes_total": 66,
                               "partitions": 2}]
    assert r["latency_ms"]["median"] == pytest.approx(141.253) and r["latency_ms"]["p95"] == pytest.approx(187.533)
    assert r["memory_mb"]["peak"] == 93.2383


def test_prefix_stripping():
    assert strip_prefix("05-31 10:31:13.023 21767 21767 I tflite  : Min num runs: [50]") == "Min num runs: [50]"
    assert strip_prefix("INFO: Graph: [m.tflite]") == "Graph: [m.tflite]"


def test_cli_parse_writes_json(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["--parse", str(DATA / "03_tf1_15_gpu_explicit.txt"), "--json", str(out)]) == 0
    assert '"inference_avg_us": 119375' in out.read_text()
    assert main(["--parse", str(tmp_path / "missing.txt")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_litert_benchmark_results_block_recorded():
    r = sample("14_litert_2_1_5_gpu_benchmark_results.txt")
    assert r["tool"] == "benchmark_litert_model" and r["signature"] == "prefill_1024"
    assert (r["init_ms"], r["first_inference_ms"], r["warmup_avg_ms"]) == pytest.approx((23744.73, 7441.04, 7441.04))
    assert r["warmup"] == pytest.approx({"count": 1, "first": 7441040.0, "avg": 7441040.0})
    assert r["latency_ms"]["count"] == 10 and r["latency_ms"]["mean"] == pytest.approx(7430.20)
    assert (r["latency_ms"]["min"], r["latency_ms"]["max"], r["latency_ms"]["std"]) == pytest.approx(
        (7416.40, 7448.86, 9.92))
    assert r["latency_ms"]["median"] is None  # the block prints no percentiles
    # "Init footprint" / "Overall footprint" are benchmark_model's init/overall deltas; "not available" peak stays None
    assert r["memory_mb"] == {"init": 6391.74, "overall": 6391.74, "peak": None}
    assert r["throughput_mb_per_s"] == 27.46 and r["errors"] == [] and r["op_profile"] is None


# What benchmark_litert_model prints on a CPU run, built from its format strings (LiteRT f674577:
# litert/tools/benchmark_litert_model.h lines 89-138, LITERT_LOG "[%s:%d] " prefixes; tflite/tools/benchmark/
# benchmark_model.cc for the base tool's INFO lines and its count= line per run type).
LITERT_CPU = """\
INFO: The input model file size (MB): 13.9782
INFO: Initialized session in 41.812ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=12 first=47311 curr=38850 min=38490 max=47311 avg=39622.4 std=2368 p5=38490 median=39003 p95=47311

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=38940 curr=38511 min=38220 max=40433 avg=38817.6 std=431 p5=38301 median=38705 p95=39810

INFO: [benchmark_litert_model.h:89] 
========== BENCHMARK RESULTS ==========
INFO: [benchmark_litert_model.h:91] Signature name:       serving_default
INFO: [benchmark_litert_model.h:94] Model initialization: 41.81 ms
INFO: [benchmark_litert_model.h:95] Warmup (first):       47.31 ms
INFO: [benchmark_litert_model.h:97] Warmup (avg):         39.62 ms (12 runs)
INFO: [benchmark_litert_model.h:99] Inference (avg):      38.82 ms (50 runs)
INFO: [benchmark_litert_model.h:103] Inference (min):      38.22 ms
INFO: [benchmark_litert_model.h:105] Inference (max):      40.43 ms
INFO: [benchmark_litert_model.h:107] Inference (std):      0.43
INFO: [benchmark_litert_model.h:115] Throughput:           15.48 MB/s
INFO: [benchmark_litert_model.h:124] 
Memory Usage:
INFO: [benchmark_litert_model.h:125] Init footprint:       21.35 MB
INFO: [benchmark_litert_model.h:127] Overall footprint:    27.90 MB
INFO: [benchmark_litert_model.h:132] Peak memory:          31.50 MB
INFO: [benchmark_litert_model.h:138] ======================================
"""


def test_litert_block_with_the_base_tools_count_lines():
    r = parse(LITERT_CPU)
    assert r["tool"] == "benchmark_litert_model" and r["model_size_mb"] == 13.9782 and r["session_init_ms"] == 41.812
    # the count= lines keep their microseconds; the block fills what they do not print
    assert r["inference"]["avg"] == 38817.6 and r["warmup"]["count"] == 12
    assert r["latency_ms"]["median"] == pytest.approx(38.705) and r["latency_ms"]["p95"] == pytest.approx(39.810)
    assert (r["init_us"], r["first_inference_us"], r["inference_avg_us"]) == pytest.approx((41810.0, 47310.0, 38820.0))
    assert r["memory_mb"] == {"init": 21.35, "overall": 27.90, "peak": 31.50}
    assert r["op_profile"] is None and r["errors"] == []


def test_litert_result_through_the_adb_schema(tmp_path):
    from device_bench.adb import to_result

    model = tmp_path / "m.tflite"
    model.write_bytes(b"\0" * 1000)
    res = to_result(parse(LITERT_CPU), model_path=str(model), settings={"num_threads": 4})
    assert res["runtime"]["name"] == "benchmark_litert_model"
    assert res["timings_ms"] == pytest.approx({"init": 41.81, "first_inference": 47.31, "warmup_mean": 39.62})
    assert res["memory_mb"] == {"peak_rss": 31.50, "init_increase": 21.35, "peak_rss_increase": 27.90}


def test_cli_parse_without_results_is_an_error(tmp_path, capsys):
    empty = tmp_path / "notes.txt"
    empty.write_text("STARTING!\nLoaded model m.tflite\n")
    assert main(["--parse", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "no benchmark results found" in err and "hint: " in err and "BENCHMARK RESULTS" in err
    assert main(["--parse", str(DATA / "10_nightly_2021_nnapi_failed.txt")]) == 2
    assert "did not finish: " in capsys.readouterr().err
