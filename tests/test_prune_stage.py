"""prune.structured through the pipeline, the CLI and a recipe: MACs target met, fine-tuning through the shared
trainer, INT8 conversion, the report's pruning section, and data-free pruning said plainly."""
from __future__ import annotations

import json

import edgeopt
from edgeopt.params import DataParams
from edgeopt.pipeline import StageCall, run

from train_helpers import CNN, IMAGES, LABELS, REPO, run_edgeopt


def test_prune_to_half_the_macs_fine_tune_and_quantize(tmp_path):
    out = tmp_path / "p_int8.tflite"
    result = run(CNN, [StageCall("import"),
                       StageCall("prune.structured", {"prune_macs": 0.5, "epochs": 2, "lr": 2e-3,
                                                      "batch_size": 32}),
                       StageCall("quantize.ptq")], output=out,
                 data=DataParams(data=str(IMAGES), labels=str(LABELS)), quiet=True)
    rep = result.report
    p = rep["pruning"]
    assert [s["stage"] for s in rep["lineage"]] == ["import", "prune.structured", "quantize.ptq"]
    assert p["macs_after"] <= 0.5 * p["macs_before"] and p["macs_ratio"] == rep["keras"]["macs"] / p["macs_before"]
    assert p["fine_tuned"] and rep["training"]["epochs_run"] == 2
    kept = {g["name"]: (g["width"], g["kept"]) for g in p["steps"][0]["groups"]}
    assert all(k % 8 == 0 and k < w for w, k in list(kept.values())[:-1])  # convs narrowed, multiples of 8
    assert list(kept.values())[-1] == (10, 10) and p["fixed"][0]["reason"].startswith("a model output")
    step = p["steps"][0]
    before = p["accuracy"]["before_pruning"]["val_accuracy"]
    pruned, tuned = step["after_pruning"]["val_accuracy"], step["after_finetuning"]["val_accuracy"]
    print(f"validation top-1: before {before:.3f}, pruned {pruned:.3f}, fine-tuned {tuned:.3f}")
    assert tuned > pruned  # fine-tuning recovers part of what pruning cost
    assert rep["accuracy"]["models"]["int8"]["top1"]["samples"] == 60
    md = out.with_name(out.stem + ".report.md").read_text()
    assert "## Pruning" in md and "after fine-tuning" in md


def test_pruning_without_data_says_what_it_costs(tmp_path):
    result = edgeopt.prune(CNN, prune_ratio=0.5, output=tmp_path / "p.tflite", round_to=4)
    p = result.report["pruning"]
    assert not p["fine_tuned"] and result.report["training"] is None
    assert any("pruning without --data" in w for w in result.report["warnings"])
    widths = [(g["width"], g["kept"]) for g in p["steps"][0]["groups"]]
    assert widths[:4] == [(16, 8), (32, 16), (64, 32), (64, 32)]  # conv widths 16, 32, 64, 64 halved
    assert "Not fine-tuned" in (tmp_path / "p.report.md").read_text()


def test_prune_cli_recipe_and_bad_targets(tmp_path):
    out = tmp_path / "r_int8.tflite"
    res = run_edgeopt(["run", REPO / "recipes" / "prune_int8.toml", CNN, "--data", IMAGES, "--labels", LABELS,
                       "-o", out])
    assert res.returncode == 0, res.stderr[-3000:]
    assert "pruned: MACs" in res.stdout
    rep = json.loads(out.with_name(out.stem + ".report.json").read_text())
    assert rep["pruning"]["macs_ratio"] <= 0.4 and rep["precision"] == "int8"
    both = run_edgeopt(["prune", CNN, "--prune-macs", "0.4", "--prune-ratio", "0.5", "-o", tmp_path / "x.keras"])
    assert both.returncode == 2 and "exactly one target" in both.stderr
    helps = run_edgeopt(["prune", "--help"])
    assert helps.returncode == 0 and "--prune-macs" in helps.stdout and "Examples" in helps.stdout


def test_an_unreachable_macs_target_is_a_warning_with_the_figure_reached(tmp_path):
    result = edgeopt.prune(CNN, prune_macs=0.02, output=tmp_path / "p.tflite", max_layer_ratio=0.5, round_to=1)
    p = result.pruning
    for g in p["steps"][0]["groups"]:  # every group lost at most half of its channels
        assert g["kept"] >= -(-g["width"] // 2), g
    assert any(f"{100 * p['macs_ratio']:.1f} % of the MACs remain, not 2 %" in w for w in result.report["warnings"])


def test_prune_params_take_one_target_and_allow_zero_fine_tuning_epochs():
    import pytest

    from edgeopt.params import PruneParams, TrainParams

    assert PruneParams(prune_macs=0.4, epochs=0).epochs == 0  # prune only
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        TrainParams(epochs=0)  # fine-tuning for no epoch is a mistake
    for bad in (dict(), dict(prune_macs=0.4, prune_ratio=0.5)):
        with pytest.raises(ValueError, match="exactly one target"):
            PruneParams(**bad)
    with pytest.raises(ValueError, match="removes more than max_layer_ratio"):
        PruneParams(prune_ratio=0.95)
