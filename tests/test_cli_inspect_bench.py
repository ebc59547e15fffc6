"""`edgeopt inspect` and `edgeopt bench` from the command line: numbers in, numbers out."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


def assert_edgeopt_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr and "\nerror: " in "\n" + res.stderr, res.stderr
    for needle in needles:
        assert needle in res.stderr, f"{needle!r} not in {res.stderr!r}"


def test_bench_errors_print_as_edgeopt_errors(tmp_path):
    assert_edgeopt_error(cli("bench", tmp_path / "nope.tflite"), "model file not found", "nope.tflite")
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer" * 10)
    assert_edgeopt_error(cli("bench", garbage), "garbage.tflite")
    assert_edgeopt_error(cli("bench", "--compare", f"a={garbage}"), "at least two models")
    notes = tmp_path / "notes.txt"
    notes.write_text("STARTING!\n")
    assert_edgeopt_error(cli("bench", "--parse", notes), "no benchmark results found", "  hint: give the output")
    # a delegate that cannot load: the reason on the error line, what to do on the hint line
    res = cli("bench", garbage, "--external-delegate-path", tmp_path / "libnot_there.so")
    assert_edgeopt_error(res, "libnot_there.so", "\n  hint: pass --allow-fallback")


def test_bench_parse_reads_litert_results(tmp_path):
    res = cli("bench", "--parse", DATA / "14_litert_2_1_5_gpu_benchmark_results.txt", "--json", tmp_path / "p.json")
    assert res.returncode == 0, res.stderr
    got = json.loads((tmp_path / "p.json").read_text())
    assert got["tool"] == "benchmark_litert_model" and got["init_ms"] == 23744.73
    assert got["memory_mb"] == {"init": 6391.74, "overall": 6391.74, "peak": None}


def test_an_invoke_failure_is_a_bench_error():
    from device_bench.runner import BenchError, Session

    class BrokenInterpreter:
        def invoke(self):
            raise RuntimeError("Node number 3 (CONV_2D) failed to invoke.\nmore detail")

    session = object.__new__(Session)
    session.model_path, session.interpreter = "m.tflite", BrokenInterpreter()
    with pytest.raises(BenchError) as caught:
        session.run(3)
    assert caught.value.message == ("m.tflite: the interpreter failed while running the model: Node number 3 "
                                    "(CONV_2D) failed to invoke.")
    assert "--allow-fallback" in caught.value.hint


def test_an_unexpected_runtime_failure_is_one_error_line(monkeypatch, capsys):
    import device_bench.cli as bench_cli

    def exploding(args):
        raise RuntimeError("Node number 7 (DELEGATE) failed to prepare.\ndetails")

    monkeypatch.setattr(bench_cli, "dispatch", exploding)
    assert bench_cli.main(["m.tflite", "--num-runs", "5"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == ("error: benchmarking m.tflite on this host failed: RuntimeError: Node number 7 "
                                   "(DELEGATE) failed to prepare.")
    assert err.splitlines()[1].startswith("  hint: ") and "Traceback" not in err
