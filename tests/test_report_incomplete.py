"""The report never costs the model: a measurement that fails leaves the .tflite written, a report that says what is
missing, a plain message, and a non-zero exit (ReportIncompleteError, exit code 4)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import edgeopt
from edgeopt.analyze.tflite import read_tflite
from edgeopt.errors import ReportIncompleteError

ASSETS = Path(edgeopt.__file__).parent / "assets"
MODEL = ASSETS / "fashion_mnist_cnn.onnx"
IMAGES = ASSETS / "fashion_mnist_subset-images-idx3-ubyte.gz"
FAST = {"latency_runs": 5, "warmup_runs": 1}


def compress_expecting_incomplete(out: Path) -> ReportIncompleteError:
    with pytest.raises(ReportIncompleteError) as caught:
        edgeopt.compress(MODEL, precision="int8", calib=IMAGES, output=out, report=FAST)
    return caught.value


def test_latency_failure_keeps_the_model_and_the_other_measurements(tmp_path, monkeypatch):
    import edgeopt.evaluate

    def broken_timer(*args, **kwargs):
        raise RuntimeError("the timer broke")

    monkeypatch.setattr(edgeopt.evaluate, "interleaved_latency", broken_timer)
    out = tmp_path / "m_int8.tflite"
    exc = compress_expecting_incomplete(out)
    assert exc.exit_code == 4
    assert "latency failed (RuntimeError: the timer broke)" in exc.message and str(out) in exc.message
    assert "edgeopt bench" in exc.hint
    # the model is whole: a full-integer INT8 file of the demo CNN, about a quarter of the FP32 one
    summary = read_tflite(out)
    assert summary.fully_integer and summary.params == 60_874
    rep = json.loads(out.with_name("m_int8.report.json").read_text())
    assert rep["complete"] is False
    assert rep["incomplete"] == [{"step": "latency", "error": "RuntimeError: the timer broke"}]
    assert rep["fidelity"][0]["top1_agreement"] >= 0.98  # measured all the same
    assert 0.25 <= rep["size_ratio"] <= 0.32
    assert "latency" not in rep["models"]["int8"] and rep["models"]["int8"]["delegates"]["gpu"]["total_ops"] > 0
    assert [s["step"] for s in rep["profile"]["steps"]].count("latency") == 1
    md = out.with_name("m_int8.report.md").read_text()
    assert md.splitlines()[2].startswith("**This report is incomplete.** The model was written to")
    assert "- latency: RuntimeError: the timer broke" in md
    assert "| median latency (1 thread) | - | - |" in md
    assert not out.with_name("m_int8.report.svg").exists()  # no timing, no plot
    assert exc.result.output == out and exc.result.report["incomplete"][0]["step"] == "latency"


def test_delegate_analysis_failure_is_named_and_latency_still_measured(tmp_path, monkeypatch):
    import edgeopt.analyze.delegates

    def broken(*args, **kwargs):
        raise KeyError("DEPTHWISE_CONV_3D")

    monkeypatch.setattr(edgeopt.analyze.delegates, "analyze_delegates", broken)
    out = tmp_path / "m.tflite"
    exc = compress_expecting_incomplete(out)
    assert "delegates failed (KeyError: 'DEPTHWISE_CONV_3D')" in exc.message
    assert exc.hint.endswith("--no-delegates skips the delegate analysis")
    rep = exc.result.report
    assert [f["step"] for f in rep["incomplete"]] == ["delegates"]
    assert rep["models"]["int8"]["latency"]["runs"] >= 5 and out.stat().st_size > 50_000
    assert out.with_name("m.report.svg").stat().st_size > 1_000


def test_cli_plot_failure_writes_model_and_report_and_exits_4(tmp_path):
    out = tmp_path / "m_int8.tflite"
    (tmp_path / "m_int8.report.svg").mkdir()  # the plot's path is taken by a folder: the plot cannot be written
    env = {**os.environ, "COLUMNS": "200"}
    res = subprocess.run([sys.executable, "-m", "edgeopt.cli", "compress", str(MODEL), "--int8", "--calib",
                          str(IMAGES), "--latency-runs", "5", "--no-delegates", "-o", str(out)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 4, res.stderr
    assert "Traceback" not in res.stderr
    assert "error: the report is incomplete: plot failed (IsADirectoryError" in res.stderr
    assert f"The model itself was written to {out}" in res.stderr
    assert f"wrote {out}" in res.stdout and "fidelity on" in res.stdout  # the tables of what was measured
    assert read_tflite(out).fully_integer
    rep = json.loads(out.with_name("m_int8.report.json").read_text())
    assert rep["complete"] is False and rep["incomplete"][0]["step"] == "plot"
    assert rep["models"]["int8"]["latency"]["runs"] >= 5
    assert "**This report is incomplete.**" in out.with_name("m_int8.report.md").read_text()


def test_reference_conversion_failure_still_measures_the_output_alone(tmp_path, monkeypatch):
    import edgeopt.stages
    from edgeopt.errors import ConversionError

    def refuse(*args, **kwargs):
        raise ConversionError("TFLite conversion (fp32) failed: 'tfl.custom' op is not supported")

    monkeypatch.setattr(edgeopt.stages, "convert_tflite", refuse)
    out = tmp_path / "m.tflite"
    exc = compress_expecting_incomplete(out)
    rep = exc.result.report
    assert rep["incomplete"] == [{"step": "convert.tflite (fp32 reference)",
                                  "error": "ConversionError: TFLite conversion (fp32) failed: 'tfl.custom' op is "
                                           "not supported"}]
    assert list(rep["models"]) == ["int8"] and rep["size_ratio"] is None and rep["fidelity"] is None
    assert rep["models"]["int8"]["latency"]["runs"] >= 5 and rep["models"]["int8"]["params"] == 60_874
    assert out.with_name("m.report.svg").read_text().count("<circle") == 1  # one model, latency vs size only
    md = out.with_name("m.report.md").read_text()
    assert "- convert.tflite (fp32 reference): ConversionError" in md and "## Fidelity" not in md
