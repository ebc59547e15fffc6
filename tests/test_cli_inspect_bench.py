"""`edgeopt inspect` and `edgeopt bench` from the command line: numbers in, numbers out."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from device_bench import parse

DATA = Path(__file__).parent / "data" / "benchmark_model"


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeopt.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_inspect_onnx_states_layout_params_and_macs(tmp_path, material):
    model = material("models", "mnist_cntk_opset8.onnx")
    res = cli("inspect", model, "--json", tmp_path / "s.json")
    assert res.returncode == 0, res.stderr
    assert "NCHW->NHWC" in res.stdout and "5,998" in res.stdout
    doc = json.loads((tmp_path / "s.json").read_text())["summary"]
    # Conv 5x5 1->8 at 28x28 (156,800) + Conv 5x5 8->16 at 14x14 (627,200) + MatMul 256x10 (2,560)
    assert doc["macs"] == 156_800 + 627_200 + 2_560
    assert doc["op_histogram"]["Conv"] == 2 and doc["inputs"][0]["layout_after_import"] == "NCHW->NHWC"


def test_inspect_delegates_needs_tflite(tmp_path, material):
    res = cli("inspect", material("models", "mnist_cntk_opset8.onnx"), "--delegates")
    assert res.returncode == 2 and "Traceback" not in res.stderr and ".tflite" in res.stderr


def test_bench_parse_matches_the_parser(tmp_path):
    sample = sorted(DATA.glob("*.txt"))[-1]
    res = cli("bench", "--parse", sample, "--json", tmp_path / "p.json")
    assert res.returncode == 0, res.stderr
    got = json.loads((tmp_path / "p.json").read_text())
    want = parse(sample.read_text())
    assert got["latency_ms"] == want["latency_ms"] and got["latency_ms"]["mean"] > 0
