"""Help that tells the truth: the real default output name, the allowed values, no `<bool>` after plain flags,
`stages` naming only flags that exist, `--version`, `inspect` on Keras files, and `-o` refused when it names the
input model."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import edgeopt
from edgeopt.errors import OutputError
from edgeopt.outputs import default_output

ASSETS = Path(edgeopt.__file__).parent / "assets"
MODEL = ASSETS / "fashion_mnist_cnn.onnx"


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "edgeopt.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


def compress_flags() -> set[str]:
    import typer.main

    from edgeopt.cli import app

    cmd = typer.main.get_command(app).commands["compress"]
    return {o for p in cmd.params for o in list(p.opts) + list(p.secondary_opts) if o.startswith("--")}


def test_compress_help_shows_default_name_choices_and_no_bool():
    res = cli("compress", "--help")
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert "<bool>" not in text
    for choices in ("<int8|uint8|float32>", "<rgb|bgr>", "<center-crop|stretch>"):
        assert choices in text, choices
    assert "MODEL_PRECISION.tflite" in text and "mnist_int8.tflite for mnist.onnx --int8" in text
    assert "At most one of --int8, --fp16, --dynamic-range; none: FP32" in text
    assert "NAME:DIMS" in text and "LO,HI" in text and "--profile" in text
    # the name the help promises is the one compress writes
    assert default_output("mnist.onnx", "int8") == Path("mnist_int8.tflite")
    assert default_output("models/mnist.onnx", "fp32") == Path("mnist_fp32.tflite")


def test_every_help_of_every_command_has_no_bool_after_flags():
    for args in (("--help",), ("run", "--help"), ("stages", "--help"), ("inspect", "--help"),
                 ("finetune", "--help")):
        res = cli(*args)
        assert res.returncode == 0 and "<bool>" not in res.stdout, (args, res.stdout)


def test_stages_names_only_flags_compress_accepts():
    res = cli("stages")
    assert res.returncode == 0, res.stderr
    printed = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", res.stdout))
    accepted = compress_flags()
    assert printed and printed <= accepted, printed - accepted
    assert "--precision" not in printed and "(recipe only)" not in res.stdout
    # every recipe key of every stage names its flag: 3 import keys, io_type/per_channel, precision, data, report
    assert {"--fp16", "--dynamic-range", "--per-tensor", "--no-delegates", "--input-shape", "--calib"} <= printed


def test_version_matches_the_installed_package():
    res = cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"edgeopt {version('edgeopt')}"


def test_inspect_reads_keras_files(tmp_path):
    from edgeopt._tf import keras

    K = keras()
    x = K.Input((16, 16, 3), name="image")
    y = K.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = K.layers.DepthwiseConv2D(3, padding="same")(y)
    y = K.layers.GlobalAveragePooling2D()(y)
    model = K.Model(x, K.layers.Dense(4)(y))
    for name in ("small.keras", "small.h5"):
        model.save(tmp_path / name)
        res = cli("inspect", tmp_path / name, "--json", tmp_path / f"{name}.json")
        assert res.returncode == 0, res.stderr
        doc = json.loads((tmp_path / f"{name}.json").read_text())["summary"]
        # Conv2D 3x3x3->8: 224 params; DepthwiseConv2D 3x3x8: 80; Dense 8->4: 36
        assert doc["params"] == model.count_params() == 224 + 80 + 36
        # MACs: 16*16*8 outputs x 27 + 16*16*8 x 9 + 8*4
        assert doc["macs"] == 16 * 16 * 8 * 27 + 16 * 16 * 8 * 9 + 32
        assert doc["op_histogram"] == {"Conv2D": 1, "Dense": 1, "DepthwiseConv2D": 1, "GlobalAveragePooling2D": 1}
        assert doc["inputs"] == [{"name": "image", "shape": [1, 16, 16, 3], "dtype": "float32"}]
        assert "Conv2D" in res.stdout and "340" in res.stdout


def test_output_naming_the_input_model_is_refused_before_any_work(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(MODEL.read_bytes())
    before = model.read_bytes()
    for out in ("m.onnx", "./sub/../m.onnx"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        res = cli("compress", "m.onnx", "-o", out, cwd=tmp_path)
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert "is the input model m.onnx" in res.stderr and "hint: choose another output name, e.g. -o " \
            "m_fp32.tflite" in res.stderr
        assert "loading TensorFlow" not in res.stderr  # refused before any work
    assert model.read_bytes() == before
    with pytest.raises(OutputError, match="is the input model"):
        edgeopt.compress(model, precision="int8", output=model)
    res = cli("compress", "m.onnx", "--int8", "--recipe-out", "m.onnx", cwd=tmp_path)
    assert res.returncode == 2 and "is the input model" in res.stderr and "-o m_int8.toml" in res.stderr
    assert model.read_bytes() == before


def test_input_shape_hint_names_the_flag(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, "h", "w"])
    m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(m, tmp_path / "dyn.onnx")
    res = cli("compress", tmp_path / "dyn.onnx", "-o", tmp_path / "dyn.tflite")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "hint: pass --input-shape x:1,3,N,N" in res.stderr and "input_shapes" not in res.stderr
    # and the flag the hint names is one compress accepts
    assert "--input-shape" in compress_flags()
