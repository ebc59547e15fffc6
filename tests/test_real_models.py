"""The models users bring (tests/zoo/real_models.py): PP-OCR det/cls/rec, YOLOv8n, MTCNN, CRNN and MobileNetV3-Small.

Each is compressed to INT8 with a calibration ``.npy`` made by the model's own preprocessing and no other data
option (``.npy`` arrays are taken as given). It must import with parity within 1e-4 of onnxruntime, and its INT8
outputs on the held-back fifth (crops of photos, and strings, that no calibration sample used) must keep at least
the fidelity bench/results/real_models.md records: per output, the mean cosine to the FP32 model and, for
classifier outputs, the top-1 agreement.

The models have seeded random weights, not trained ones, so the cosines are modest where the network is deep or
attention-based; onnxruntime's own static INT8 quantization of the same files on the same split reaches the same
or lower ones (bench/real_models_bench.py prints both).
"""
from __future__ import annotations

import numpy as np
import pytest

import edgeopt
from zoo.real_data import write_calib
from zoo.real_models import REAL_MODELS, RealModel, real_model

# Per model and output: the least mean cosine (INT8 vs FP32) on the held-back samples, a little below the figure
# measured in bench/results/real_models.md. Sigmoid and softmax outputs are compared as the probabilities they are.
COSINE: dict[str, dict[str, float]] = {
    "ppocr_det_v4-torchscript17": {"sigmoid_0.tmp_0": 0.86},  # measured 0.869
    "ppocr_det_v4-paddle14": {"sigmoid_0.tmp_0": 0.86},  # 0.869
    "ppocr_det_v5-torchscript17": {"sigmoid_0.tmp_0": 0.80},  # 0.819
    "ppocr_det_v5-torchscript20": {"sigmoid_0.tmp_0": 0.80},  # 0.819
    "ppocr_cls-torchscript17": {"softmax_0.tmp_0": 0.99},  # 0.9944
    "ppocr_cls-paddle14": {"softmax_0.tmp_0": 0.99},  # 0.9944
    # SVTR's attention, LayerNorms and 97-way softmax on random weights are hard for any INT8 quantizer.
    "ppocr_rec_v4-torchscript17": {"softmax_2.tmp_0": 0.40},  # 0.413
    "ppocr_rec_v4-paddle14": {"softmax_2.tmp_0": 0.40},  # 0.410
    "yolov8n-torchscript17": {"output0": 0.94},  # 0.947
    "mtcnn_rnet-torchscript17": {"box": 0.999, "prob": 0.999},  # 1.0000, 1.0000
    "mtcnn_onet-torchscript17": {"box": 0.999, "landmarks": 0.999, "prob": 0.999},  # 1.0000, 0.9999, 0.9999
    "crnn-torchscript17": {"output": 0.98},  # 0.992
    "mobilenet_v3_small-torchscript17": {"output": 0.91},  # 0.927
}
# Classifier outputs ([1, K]): the least share of the 10 held-back samples whose INT8 top-1 class is the FP32 one.
TOP1: dict[str, dict[str, float]] = {
    "ppocr_cls-torchscript17": {"softmax_0.tmp_0": 0.9},  # measured 1.0
    "ppocr_cls-paddle14": {"softmax_0.tmp_0": 0.9},  # 1.0
    "mtcnn_rnet-torchscript17": {"prob": 0.9},  # 1.0
    "mtcnn_onet-torchscript17": {"prob": 0.9},  # 1.0
    "mobilenet_v3_small-torchscript17": {"output": 0.3},  # 0.4: random weights leave the top logits close
}


def compress(item: RealModel, zoo_dir, tmp_path):
    """compress() as a user runs it on this model: the calibration file and, for dynamic H/W, the input shape; the
    converter's PTQ as it is (``--ptq-repair none``, which tests/test_ptq_repair.py and bench/ptq_repair_bench.py
    measure beside the repair)."""
    return edgeopt.compress(real_model(item, out_dir=zoo_dir), precision="int8",
                            calib=write_calib(item, tmp_path / "calib.npy"), output=tmp_path / "m_int8.tflite",
                            import_params=item.import_params, ptq_params={"ptq_repair": "none"},
                            report={"latency_runs": 3, "warmup_runs": 1, "delegates": False})


def summary(item: RealModel, rep: dict) -> str:
    worst = max(o["max_rel_error"] for o in rep["import_parity"]["outputs"])
    outputs = ", ".join(f"{r['name']} cos {r['cosine_mean']:.4f} (min {r['cosine_min']:.4f})"
                        + (f" top-1 {r['top1_agreement']:.2f}" if "top1_agreement" in r else "")
                        for r in rep["fidelity"])
    return f"{item.id}: parity {worst:.2e}, INT8/FP32 size {rep['size_ratio']:.3f}, {outputs}"


def test_thresholds_cover_every_model():
    assert set(COSINE) == {item.id for item in REAL_MODELS}
    for entry, outputs in COSINE.items():
        item = next(i for i in REAL_MODELS if i.id == entry)
        assert set(outputs) == set(item.output_names)
        assert set(TOP1.get(entry, {})) <= set(outputs)


@pytest.mark.slow
@pytest.mark.parametrize("item", REAL_MODELS, ids=lambda e: e.id)
def test_real_model_compresses_with_fidelity(item, zoo_dir, tmp_path):
    res = compress(item, zoo_dir, tmp_path)
    rep = res.report
    print(summary(item, rep))
    assert rep["import_parity"]["passed"]
    assert max(o["max_rel_error"] for o in rep["import_parity"]["outputs"]) <= 1e-4
    assert res.output.exists() and res.output.stat().st_size > 0 and rep["precision"] == "int8"
    assert rep["evaluation_data"]["heldback_samples"] == 10 and rep["evaluation_data"]["calibration_samples"] == 40
    fidelity = {r["name"]: r for r in rep["fidelity"]}
    assert set(fidelity) == set(item.output_names)
    for name, least in COSINE[item.id].items():
        assert fidelity[name]["cosine_mean"] >= least, (name, fidelity[name])
    for name, least in TOP1.get(item.id, {}).items():
        assert fidelity[name]["top1_agreement"] >= least, (name, fidelity[name])
    assert np.isfinite([r["max_abs_error"] for r in rep["fidelity"]]).all()
