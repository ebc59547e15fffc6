"""prune.structured through the pipeline, the CLI and a recipe: MACs target met, fine-tuning through the shared
trainer, INT8 conversion, the report's pruning section, and data-free pruning said plainly."""
from __future__ import annotations

import json

import pytest

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
    assert "## Pruning" in md and "after fine-tuning" in md and "after INT8 (60 samples)" in md
    lat = p["latency"]  # unpruned and pruned INT8 timed in one interleaved run, nothing predicted for a MACs target
    assert lat["precision"] == "int8" and lat["before_ms"] > 0 and lat["measured_ms"] > 0
    assert lat["predicted_ratio"] is None and lat["table"] is None and "Latency on this host" in md


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


def test_taylor_importance_ranks_by_activation_times_gradient(tmp_path):
    """A channel the loss does not depend on scores 0; one it depends on scores |a*g| summed over its positions."""
    import numpy as np

    from edgeopt._tf import keras
    from edgeopt.pruning.graph import build_graph
    from edgeopt.pruning.taylor import taylor_importance
    from edgeopt.train.data import from_arrays
    from edgeopt.train.trainer import Objective

    k = keras()
    x_in = k.Input((4, 4, 1))
    conv = k.layers.Conv2D(3, 1, use_bias=False, name="c")
    head = k.layers.Dense(2, use_bias=False, name="d")
    model = k.Model(x_in, head(k.layers.GlobalAveragePooling2D()(conv(x_in))))
    conv.set_weights([np.array([1.0, 2.0, 3.0], np.float32).reshape(1, 1, 1, 3)])
    head.set_weights([np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]], np.float32)])  # channel 1 is never read
    x = np.random.default_rng(0).uniform(0.5, 1.0, (32, 4, 4, 1)).astype(np.float32)
    y = np.zeros(32, np.int64)
    graph = build_graph(model)
    scores = taylor_importance(graph, from_arrays(x, y), Objective((("ce", 1.0),), 0, 2), batch_size=32)
    units = graph.units_of(next(n for n in graph.widths if graph.widths[n] == 3 and "c/" in n))
    s = [scores[int(u)] for u in units]
    assert s[1] == 0.0 and s[0] > 0 and s[2] > 0
    # by hand: logits z0 = mean(a0), z1 = mean(a2); CE gradient dL/da_c = (softmax - onehot)_c / 16 per position
    a = x[..., 0][..., None] * np.array([1.0, 2.0, 3.0])
    z = a.mean(axis=(1, 2))[:, [0, 2]]
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    g0, g2 = (p[:, 0] - 1.0) / 32 / 16, p[:, 1] / 32 / 16  # mean over the batch of 32
    want0 = np.abs((a[..., 0] * g0[:, None, None]).sum(axis=(1, 2))).mean()
    want2 = np.abs((a[..., 2] * g2[:, None, None]).sum(axis=(1, 2))).mean()
    assert s[0] == pytest.approx(want0, rel=1e-4) and s[2] == pytest.approx(want2, rel=1e-4)


def test_taylor_pruning_through_the_stage_and_its_refusal_without_data(tmp_path):
    import pytest as _pytest

    from edgeopt.errors import RecipeError

    result = edgeopt.prune(CNN, prune_macs=0.5, importance="taylor", epochs=0, output=tmp_path / "t.keras",
                           data=IMAGES, labels=LABELS)
    assert result.pruning["macs_ratio"] <= 0.5 and result.pruning["importance"] == "taylor"
    with _pytest.raises(RecipeError, match="no --data"):
        edgeopt.prune(CNN, prune_macs=0.5, importance="taylor", output=tmp_path / "u.keras")
