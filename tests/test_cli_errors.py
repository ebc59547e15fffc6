"""Bad input ends in a short edgeopt error: non-zero exit, no traceback, the problem and place named, no output."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import material_path

EDGEOPT = [sys.executable, "-m", "edgeopt.cli"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*EDGEOPT, *map(str, args)], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def assert_clean_failure(res: subprocess.CompletedProcess, out_dir: Path, *needles: str) -> None:
    assert res.returncode != 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    assert "error:" in res.stderr
    for n in needles:
        assert n in res.stderr, f"{n!r} not in: {res.stderr}"
    # no output, no report, no temporary leftovers
    assert not [p for p in out_dir.iterdir() if p.suffix in (".tflite", ".partial", ".json", ".md", ".png", ".svg") or
                p.name.startswith(".")], list(out_dir.iterdir())


def unsupported_model(path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8, 8, 3])
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu_0"),
        helper.make_node("Det", ["r"], ["y"], name="det_1"),
        helper.make_node("Einsum", ["r"], ["z"], name="einsum_2", equation="bchw->bhwc"),
    ]
    g = helper.make_graph(nodes, "g", [x], [y, z])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return path


@pytest.fixture()
def out_dir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


def test_not_an_onnx_file(tmp_path, out_dir):
    bad = tmp_path / "notes.onnx"
    bad.write_text("this is a text file, not a model\n" * 20)
    res = run_cli("compress", bad, "--int8", "-o", out_dir / "m.tflite", cwd=tmp_path)
    assert_clean_failure(res, out_dir, "notes.onnx")


def test_truncated_file(tmp_path, out_dir, material):
    src = material("models", "cifar10_cnn_opset10.onnx").read_bytes()
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(src[: len(src) // 3])
    res = run_cli("compress", bad, "-o", out_dir / "m.tflite", cwd=tmp_path)
    assert_clean_failure(res, out_dir, "cut.onnx")


@pytest.mark.parametrize("name, needles", [
    ("super_resolution_ir_v1.onnx", ("IR version", "supported: 3..14")),
    ("superres_custom_domain_op18.onnx", ("com.microsoft.extensions",)),
])
def test_shared_bad_models(tmp_path, out_dir, name, needles):
    res = run_cli("compress", material_path("models", "bad", name), "-o", out_dir / "m.tflite", cwd=tmp_path)
    assert_clean_failure(res, out_dir, *needles)


def test_unsupported_ops_are_listed_at_once(tmp_path, out_dir):
    res = run_cli("compress", unsupported_model(tmp_path / "u.onnx"), "-o", out_dir / "m.tflite", cwd=tmp_path)
    assert_clean_failure(res, out_dir, "Det", "det_1", "Einsum", "einsum_2")


def test_calibration_shape_mismatch(tmp_path, out_dir, material):
    model = material("models", "mnist_cntk_opset8.onnx")
    np.save(tmp_path / "wrong.npy", np.zeros((10, 3, 32, 32), np.float32))
    res = run_cli("compress", model, "--int8", "--calib", tmp_path / "wrong.npy", "-o", out_dir / "m.tflite",
                  cwd=tmp_path)
    assert_clean_failure(res, out_dir, "wrong.npy", "28")


def test_empty_calibration_folder(tmp_path, out_dir, material):
    model = material("models", "mnist_cntk_opset8.onnx")
    (tmp_path / "empty").mkdir()
    res = run_cli("compress", model, "--int8", "--calib", tmp_path / "empty", "-o", out_dir / "m.tflite",
                  cwd=tmp_path)
    assert_clean_failure(res, out_dir, "empty")


def test_unwritable_output_path(tmp_path, out_dir, material):
    model = material("models", "mnist_cntk_opset8.onnx")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    res = run_cli("compress", model, "-o", blocker / "m.tflite", cwd=tmp_path)
    assert_clean_failure(res, out_dir, "blocker")


def test_missing_model_file(tmp_path, out_dir):
    res = run_cli("compress", tmp_path / "nope.onnx", "-o", out_dir / "m.tflite", cwd=tmp_path)
    assert_clean_failure(res, out_dir, "nope.onnx", "does not exist")
