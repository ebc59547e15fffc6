"""`make bench`'s compress table records where the time goes per model: the profile's steps, and the split between
the converter's calls and the steps around them."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import compress_bench  # noqa: E402

PROFILE = {"steps": [{"step": "load TensorFlow", "seconds": 4.0}, {"step": "import", "seconds": 0.5},
                     {"step": "quantize.ptq", "seconds": 1.5}, {"step": "calibration", "seconds": 0.5},
                     {"step": "convert.tflite (fp32 reference)", "seconds": 1.0}, {"step": "latency", "seconds": 0.4}],
           "other_seconds": 0.1, "total_seconds": 8.0}


def test_time_split_separates_converter_calls_from_the_steps_around_them():
    split = compress_bench.time_split(PROFILE)
    # converter: 1.5 + 0.5 + 1.0; around: 8.0 - 3.0 - 4.0 (import 0.5 + latency 0.4 + other 0.1)
    assert split == {"converter_seconds": 3.0, "around_seconds": 1.0, "load_tensorflow_seconds": 4.0,
                     "around_over_converter": pytest.approx(0.33)}


def test_markdown_has_a_row_per_step_and_the_split():
    row = {"model": "demo", "params": 10, "macs": 20, "import_seconds": 0.5, "compress_seconds": 8.0,
           "fp32_bytes": 4096, "int8_bytes": 1024, "size_ratio": 0.25, "fp32_median_ms": 0.2, "int8_median_ms": 0.1,
           "latency_runs": 100, "cosine_min_over_outputs": 0.9999, "profile": PROFILE,
           **compress_bench.time_split(PROFILE)}
    doc = {"host": {"machine": "x86_64", "cpu_count": 2}, "latency_runs": 100, "results": [row], "skipped": []}
    md = compress_bench.to_markdown(doc)
    assert "| calibration | 0.50 |" in md and "| load TensorFlow | 4.00 |" in md
    assert "| **converter calls** (int8 + calibration + FP32 reference) | 3.00 |" in md
    assert "| **around the converter** (total - converter - loading TensorFlow) | 1.00 |" in md
    assert "| around / converter | 0.33 |" in md


def test_an_exact_converter_step_replaces_the_stage_rows():
    exact = {**PROFILE, "steps": PROFILE["steps"] + [{"step": "TFLite converter", "seconds": 2.0}],
             "total_seconds": 10.0}
    split = compress_bench.time_split(exact)
    # converter: TFLite converter 2.0 + calibration 0.5; around: 10.0 - 2.5 - 4.0 (tracing now counts as around)
    assert (split["converter_seconds"], split["around_seconds"]) == (2.5, 3.5)
