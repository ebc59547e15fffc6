"""device_bench on this host: the runner's numbers, its CLI and interleaved comparisons (repeatability of
two runs is a speed figure: `make bench` measures it, bench/bench_repeatability.py)."""
from __future__ import annotations

import ast
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device_bench import BenchError, benchmark
from device_bench.cli import main
from device_bench.compare import compare, plot_comparison
from device_bench.runner import latency_stats, parse_delegate_options

REPO = Path(__file__).resolve().parents[1]


def _conv_net(path, *, width, depth):
    """A 32x32x3 conv net (``depth`` 3x3 convs of ``width`` channels), converted to float .tflite."""
    from edgeopt._tf import keras, tf

    k = keras()
    inputs = k.layers.Input((32, 32, 3))
    x = inputs
    for _ in range(depth):
        x = k.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    outputs = k.layers.Dense(10)(k.layers.GlobalAveragePooling2D()(x))
    path.write_bytes(tf().lite.TFLiteConverter.from_keras_model(k.Model(inputs, outputs)).convert())
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("device_bench_models")
    # small: 0.1 ms; medium: 32*32*9*48*48*5 = 106M MACs, about 1-3 ms on one core.
    return {"small": _conv_net(folder / "small.tflite", width=8, depth=2),
            "medium": _conv_net(folder / "medium.tflite", width=48, depth=5)}


def test_stats_are_ordered_and_count_is_num_runs(models):
    result = benchmark(models["small"], num_runs=60, warmup_runs=3)
    lat = result["latency_ms"]
    assert lat["count"] == 60
    assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"] and lat["std"] >= 0
    assert result["timings_ms"]["init"] > 0 and result["timings_ms"]["first_inference"] > 0
    assert result["model"]["size_bytes"] == models["small"].stat().st_size
    assert result["runtime"]["name"] == "ai_edge_litert"
    assert result["delegates"] == [{"name": "XNNPACK", "kind": "default", "path": None, "options": {}}]
    assert result["delegate_partitions"] == 1  # the whole float graph is one XNNPACK partition
    assert result["inputs"] == [{"name": result["inputs"][0]["name"], "shape": [1, 32, 32, 3], "dtype": "float32"}]
    mem = result["memory_mb"]
    assert mem["peak_rss"] >= mem["baseline_peak_rss"] > 0
    assert mem["peak_rss_increase"] == pytest.approx(mem["peak_rss"] - mem["baseline_peak_rss"])
    json.dumps(result)  # JSON-able


def test_min_secs_extends_the_runs(models):
    result = benchmark(models["small"], num_runs=1, min_secs=0.2)
    # 0.2 s of ~0.1 ms runs: far more than the single run asked for.
    assert result["latency_ms"]["count"] > 100


def test_without_xnnpack_no_delegate_partition(models):
    result = benchmark(models["small"], num_runs=5, use_xnnpack=False)
    assert result["delegates"] == [] and result["delegate_partitions"] == 0


def test_input_data_from_npz_is_used(models, tmp_path):
    data = tmp_path / "inputs.npz"
    np.savez(data, x=np.zeros((1, 32, 32, 3), np.float32))
    assert benchmark(models["small"], num_runs=3, input_data=str(data))["settings"]["input_data"] == str(data)
    np.savez(data, x=np.zeros((1, 16, 16, 3), np.float32))
    with pytest.raises(BenchError, match=r"expects shape \(1, 32, 32, 3\).*\(1, 16, 16, 3\)"):
        benchmark(models["small"], num_runs=3, input_data=str(data))


def test_latency_stats_percentiles():
    stats = latency_stats(list(range(1, 101)))
    assert (stats["median"], stats["p90"], stats["p99"], stats["count"]) == pytest.approx((50.5, 90.1, 99.01, 100))


def test_delegate_options_string():
    assert parse_delegate_options("backend:htp; log_level:2") == {"backend": "htp", "log_level": "2"}
    with pytest.raises(BenchError, match="key:value"):
        parse_delegate_options("backend")


def test_cli_missing_model_exits_2(tmp_path, capsys):
    assert main([str(tmp_path / "nope.tflite")]) == 2
    err = capsys.readouterr().err
    assert "model file not found" in err and "Traceback" not in err


def test_cli_bad_model_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(struct.pack("<4I", 1, 2, 3, 4))
    assert main([str(bad)]) == 2
    assert "cannot load model" in capsys.readouterr().err


def test_cli_bad_flag_exits_2(models, capsys):
    assert main([str(models["small"]), "--num-runs", "many"]) == 2
    assert "invalid int value" in capsys.readouterr().err


def test_unknown_delegate_names_the_path(models, tmp_path, capsys):
    lib = tmp_path / "libmissing_delegate.so"
    assert main([str(models["small"]), "--external-delegate-path", str(lib)]) == 2
    err = capsys.readouterr().err
    assert str(lib) in err and "No such file" in err and "--allow-fallback" in err


def test_allow_fallback_records_the_reason(models, tmp_path):
    out = tmp_path / "r.json"
    code = main([str(models["small"]), "--use-gpu", "--allow-fallback", "--num-runs", "5", "--json", str(out)])
    result = json.loads(out.read_text())
    assert code == 0 and result["latency_ms"]["count"] == 5
    assert "libtensorflowlite_gpu_delegate.so" in result["delegate_fallback"]
    assert [d["name"] for d in result["delegates"]] == ["XNNPACK"]


def test_runner_works_as_a_single_copied_file(models, tmp_path):
    # Copied alone and run with a plain interpreter: no device_bench package, no edgeopt, no tensorflow.
    copied = tmp_path / "runner.py"
    copied.write_text((REPO / "device_bench" / "runner.py").read_text())
    done = subprocess.run([sys.executable, str(copied), str(models["small"]), "--num-runs", "7", "--json", "-"],
                          capture_output=True, text=True, cwd=tmp_path, check=True)
    result = json.loads(done.stdout)
    assert result["latency_ms"]["count"] == 7 and "median" in done.stderr
    tree = ast.parse((REPO / "device_bench" / "runner.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names} | {node.module.split(".")[0] for node in ast.walk(tree)
                                            if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"edgeopt", "tensorflow", "device_bench", "tf_keras"}
    assert imported >= {"numpy", "ai_edge_litert", "tflite_runtime"}


def test_compare_interleaves_and_plots(models, tmp_path):
    result = compare({"small": models["small"], "medium": models["medium"]}, rounds=3, runs_per_round=4)
    order = [(entry["round"], entry["label"]) for entry in result["order"]]
    # Round r starts with model r mod 2: small, medium | medium, small | small, medium.
    assert order == [(0, "small"), (0, "medium"), (1, "medium"), (1, "small"), (2, "small"), (2, "medium")]
    starts = [entry["start_s"] for entry in result["order"]]
    ends = [entry["end_s"] for entry in result["order"]]
    assert all(e <= s for e, s in zip(ends, starts[1:])) and starts == sorted(starts)
    for label in ("small", "medium"):
        assert result["models"][label]["latency_ms"]["count"] == 12
        assert len(result["models"][label]["round_medians_ms"]) == 3
    assert result["models"]["medium"]["latency_ms"]["median"] > result["models"]["small"]["latency_ms"]["median"]
    png = plot_comparison(result, accuracy={"small": 0.81, "medium": 0.88}, out_png=tmp_path / "cmp.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_compare_needs_two_models(models):
    with pytest.raises(BenchError, match="at least two"):
        compare({"only": models["small"]})
