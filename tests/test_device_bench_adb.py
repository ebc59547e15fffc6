"""device_bench over adb, against a fake adb that records its calls and replies with a recorded output."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from device_bench import BenchError
from device_bench.adb import run_android
from device_bench.cli import main

SAMPLE = Path(__file__).parent / "data" / "benchmark_model" / "03_tf1_15_gpu_explicit.txt"

FAKE_ADB = """#!{python}
import json, os, sys
with open(os.environ["FAKE_ADB_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
if args[:2] == ["-s", "emulator-5554"]:
    args = args[2:]
if args[0] == "shell" and "benchmark_model --graph" in " ".join(args[1:]):
    sys.stdout.write(open(os.environ["FAKE_ADB_REPLY"]).read())
    sys.exit(int(os.environ.get("FAKE_ADB_EXIT", "0")))
"""


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(FAKE_ADB.format(python=sys.executable))
    adb.chmod(0o755)
    log = tmp_path / "adb_calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_REPLY", str(SAMPLE))
    model, binary = tmp_path / "net.tflite", tmp_path / "android_aarch64_benchmark_model"
    model.write_bytes(b"\0" * 1234)
    binary.write_bytes(b"\x7fELF")

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()]

    return {"model": model, "binary": binary, "calls": calls}


def test_commands_issued_and_numbers_parsed(fake_adb):
    result = run_android(fake_adb["model"], benchmark_binary=fake_adb["binary"], serial="emulator-5554",
                         num_threads=4, warmup_runs=1, num_runs=50, use_gpu=True, enable_op_profiling=True)
    serial = ["-s", "emulator-5554"]
    assert fake_adb["calls"]() == [
        serial + ["push", str(fake_adb["binary"]), "/data/local/tmp/benchmark_model"],
        serial + ["shell", "chmod", "755", "/data/local/tmp/benchmark_model"],
        serial + ["push", str(fake_adb["model"]), "/data/local/tmp/net.tflite"],
        serial + ["shell", "/data/local/tmp/benchmark_model --graph=/data/local/tmp/net.tflite --num_threads=4 "
                           "--warmup_runs=1 --num_runs=50 --use_gpu=true --enable_op_profiling=true"],
        serial + ["shell", "rm", "-f", "/data/local/tmp/net.tflite", "/data/local/tmp/benchmark_model"],
    ]
    assert result["source"] == "benchmark_model" and result["model"]["size_bytes"] == 1234
    assert result["timings_ms"] == pytest.approx({"init": 870.557, "first_inference": 130.565,
                                                  "warmup_mean": 122.373})
    assert result["latency_ms"]["mean"] == pytest.approx(119.375) and result["latency_ms"]["count"] == 50
    assert result["latency_ms"]["std"] == pytest.approx(1.948)
    assert result["delegates"] == [{"name": "GPU", "kind": "benchmark_model", "execution": "complete"}]
    assert result["threads"] == 4


def test_all_delegate_flags(fake_adb):
    run_android(fake_adb["model"], benchmark_binary=fake_adb["binary"], use_nnapi=True, use_hexagon=True,
                use_xnnpack=False, external_delegate_path="/data/local/tmp/libQnnTFLiteDelegate.so",
                external_delegate_options="backend:htp", keep_files=True)
    calls = fake_adb["calls"]()
    assert calls[3] == ["shell", "/data/local/tmp/benchmark_model --graph=/data/local/tmp/net.tflite "
                                 "--num_threads=1 --warmup_runs=1 --num_runs=50 --use_nnapi=true --use_hexagon=true "
                                 "--use_xnnpack=false --external_delegate_path=/data/local/tmp/libQnnTFLiteDelegate.so"
                                 " --external_delegate_options=backend:htp"]
    assert len(calls) == 4  # keep_files: nothing removed


def test_failed_run_raises_with_its_errors(fake_adb, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_REPLY", str(SAMPLE.with_name("10_nightly_2021_nnapi_failed.txt")))
    with pytest.raises(BenchError, match="Failed to apply NNAPI delegate"):
        run_android(fake_adb["model"], benchmark_binary=fake_adb["binary"], use_nnapi=True)
    assert fake_adb["calls"]()[-1][:3] == ["shell", "rm", "-f"]  # cleaned up anyway


def test_cli_android_json_and_missing_adb(fake_adb, tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.json"
    assert main([str(fake_adb["model"]), "--android", "--benchmark-binary", str(fake_adb["binary"]),
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["latency_ms"]["min"] == pytest.approx(113.737)
    assert main([str(fake_adb["model"]), "--android", "--benchmark-binary", str(fake_adb["binary"]),
                 "--adb", str(tmp_path / "no-adb")]) == 2
    assert "adb not found" in capsys.readouterr().err
