"""The stage/artifact core: registry checks, recipes, artifacts, safe outputs, CLI coverage of every Params field."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from edgeopt.artifact import Artifact, Step, file_hash
from edgeopt.errors import OutputError, RecipeError
from edgeopt.outputs import atomic_path, check_writable
from edgeopt.params import ConvertParams, DataParams, ImportParams, PTQParams, ReportParams
from edgeopt.recipe import dump_recipe, load_recipe
from edgeopt.registry import all_stages, lookup, make_params
from edgeopt.stages import parse_input_shapes

REPO = Path(__file__).resolve().parents[1]


def test_every_builtin_stage_is_registered_with_frozen_params():
    names = {s.name for s in all_stages()}
    assert {"import", "convert.tflite", "quantize.ptq"} <= names
    for s in all_stages():
        assert s.params.__dataclass_params__.frozen, s.name


def test_unknown_key_names_the_known_ones():
    with pytest.raises(RecipeError) as e:
        make_params(lookup("quantize.ptq"), {"io_typ": "int8"})
    assert "io_typ" in str(e.value) and "io_type" in str(e.value) and "per_channel" in str(e.value)


def test_values_are_type_checked():
    spec = lookup("quantize.ptq")
    with pytest.raises(RecipeError, match="not one of int8, uint8, float32"):
        make_params(spec, {"io_type": "int4"})
    with pytest.raises(RecipeError, match="expected bool"):
        make_params(spec, {"per_channel": "yes"})
    p = make_params(lookup("import"), {"parity_tolerance": 1, "input_shape": "x:1,3,8,8"})
    assert p.parity_tolerance == 1.0 and p.input_shape == ("x:1,3,8,8",)


def test_unknown_stage_lists_known_stages():
    with pytest.raises(RecipeError) as e:
        lookup("quantize.qat2")
    assert "quantize.ptq" in str(e.value)


def test_shipped_recipe_loads_and_round_trips(tmp_path):
    r = load_recipe(REPO / "recipes" / "int8_ptq.toml")
    assert [c.use for c in r.calls] == ["import", "quantize.ptq"]
    assert r.data_params().calib_samples == 256 and r.report_params().latency_runs == 50
    text = dump_recipe(r.calls, data=r.data_params(), report=r.report_params())
    (tmp_path / "again.toml").write_text(text)
    again = load_recipe(tmp_path / "again.toml")
    assert again.calls == r.calls and again.data_params() == r.data_params()


@pytest.mark.parametrize("text, match", [
    ("[[stage]]\nuse = 'import'\nparity_tol = 1\n", "parity_tolerance"),
    ("[[stage]]\nuse = 'nope'\n", "unknown stage"),
    ("[extra]\n[[stage]]\nuse = 'import'\n", "unknown table"),
    ("[[stage]]\nparity_tolerance = 1\n", "no `use` key"),
    ("[data]\nholdout = 2.0\n[[stage]]\nuse = 'import'\n", "holdout"),
    ("[[stage]\n", "not valid TOML"),
    ("", "no \\[\\[stage\\]\\] tables"),
])
def test_bad_recipes_fail_before_running(tmp_path, text, match):
    p = tmp_path / "r.toml"
    p.write_text(text)
    with pytest.raises(RecipeError, match=match):
        load_recipe(p)


def test_every_params_field_is_a_compress_flag():
    """No option exists only in recipes: each Params field has a `compress` flag of the same name."""
    import typer.main

    from edgeopt.cli import app

    cmd = typer.main.get_command(app).commands["compress"]
    flags = {opt for p in cmd.params for opt in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
    for params in (DataParams, ImportParams, PTQParams, ReportParams):
        for f in dataclasses.fields(params):
            assert f"--{f.name.replace('_', '-')}" in flags, f"{params.__name__}.{f.name}"
    # ConvertParams.precision is chosen by one flag per value
    assert {"--fp16", "--dynamic-range", "--int8"} <= flags
    assert dataclasses.fields(ConvertParams)[0].name == "precision"


def test_artifacts_are_immutable_and_lineage_is_json(tmp_path):
    f = tmp_path / "m.onnx"
    f.write_bytes(b"abc")
    a = Artifact(path=f, format="onnx", metrics={"size_bytes": 3})
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.format = "tflite"
    with pytest.raises(TypeError):
        a.metrics["size_bytes"] = 4
    step = Step("import", {"parity_tolerance": 1e-4}, None, file_hash(f), {"onnx": "1"}, 0.5)
    b = a.evolve(metrics={"params": 7}, lineage=(step,))
    assert dict(b.metrics) == {"size_bytes": 3, "params": 7} and dict(a.metrics) == {"size_bytes": 3}
    doc = json.loads(json.dumps(b.to_dict()))
    assert doc["lineage"][0]["stage"] == "import" and doc["lineage"][0]["output_hash"] == file_hash(f)
    assert len(file_hash(f)) == 16


def test_input_shapes_parse_and_reject():
    assert parse_input_shapes(["input.1:1,3,320,320", "b:1,4"]) == {"input.1": [1, 3, 320, 320], "b": [1, 4]}
    for bad in ("1,3,4", "x:", "x:1,a", "x:0,3"):
        with pytest.raises(RecipeError, match="NAME:DIM"):
            parse_input_shapes([bad])


def test_unwritable_output_is_refused_before_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        check_writable(blocker / "sub" / "m.tflite")
    with pytest.raises(OutputError, match="is a directory"):
        check_writable(tmp_path)


def test_output_that_is_the_input_is_refused(tmp_path):
    from edgeopt.outputs import check_not_input, default_output

    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    (tmp_path / "link.onnx").symlink_to(model)
    for same in (model, tmp_path / "sub" / ".." / "m.onnx", tmp_path / "link.onnx"):
        with pytest.raises(OutputError, match="is the input model") as e:
            check_not_input(same, model, suggestion=default_output(model, "int8"))
        assert e.value.hint == "choose another output name, e.g. -o m_int8.tflite"
    check_not_input(tmp_path / "m_int8.tflite", model)  # another name: fine
    assert default_output(tmp_path / "saved_model", "fp16").name == "saved_model_fp16.tflite"


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "m.tflite"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and [p.name for p in tmp_path.iterdir()] == ["m.tflite"]


def test_public_api_names_stay_functions_after_every_module_is_imported():
    import edgeopt
    import edgeopt.converter  # noqa: F401
    import edgeopt.quantization.ptq  # noqa: F401
    import edgeopt.stages  # noqa: F401

    for name in ("compress", "load", "convert", "quantize", "inspect", "benchmark", "run_recipe"):
        assert callable(getattr(edgeopt, name)) and getattr(edgeopt, name).__module__ == "edgeopt", name
