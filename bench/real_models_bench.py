"""Compress the models users bring (tests/zoo/real_models.py) to INT8 and record import parity, INT8 fidelity per
output on the held-back samples, FP32 and INT8 size, and seconds.

Each model is exported from its torch definition, calibrated with the ``.npy`` its own preprocessing makes (no other
data option) and compressed as tests/test_real_models.py does: the converter's PTQ as it is (``--ptq-repair none``;
bench/ptq_repair_bench.py sets the repair beside it). For reference, the same ONNX file is also quantized
by onnxruntime (static QDQ INT8, per-channel weights, min-max calibration on the same calibration samples) and
measured on the same held-back samples: the weights are seeded random ones, and that column shows how much of the
INT8 error any quantizer makes on them. A model that fails records its error instead.

Writes bench/results/real_models.json and bench/results/real_models.md.

    .venv/bin/python bench/real_models_bench.py [--only ppocr_cls] [--no-reference]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the zoo definitions and real-image data (tests/zoo, tests/images.py)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def ort_int8_cosines(onnx_path: Path, item, x) -> dict[str, float]:
    """Mean cosine per output of onnxruntime's static INT8 model against the FP32 one on the held-back samples."""
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    from images import heldback_mask

    held = heldback_mask(len(x))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.samples = iter(x[~held])

        def get_next(self):
            sample = next(self.samples, None)
            return None if sample is None else {item.input_name: sample[None]}

    quantized = onnx_path.with_name(onnx_path.stem + "_ort_int8.onnx")
    logging.disable(logging.WARNING)  # quantize_static's advice to pre-process the model, printed as a logging error
    try:
        quantize_static(str(onnx_path), str(quantized), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        logging.disable(logging.NOTSET)
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (onnx_path, quantized)]
    ref, cand = ([s.run(None, {item.input_name: sample[None]}) for sample in x[held]] for s in sessions)
    out = {}
    for k, name in enumerate(item.output_names):
        r = np.concatenate([o[k] for o in ref]).reshape(int(held.sum()), -1).astype(np.float64)
        c = np.concatenate([o[k] for o in cand]).reshape(int(held.sum()), -1).astype(np.float64)
        out[name] = float(np.mean(np.sum(r * c, 1) / (np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1))))
    return out


def bench_one(item, *, out_dir: Path, reference: bool) -> dict:
    import numpy as np

    import edgeopt
    from zoo.real_data import write_calib
    from zoo.real_models import real_model

    row: dict = {"model": item.id}
    t0 = time.perf_counter()
    try:
        onnx_path = real_model(item, out_dir=out_dir)
        calib = write_calib(item, out_dir / f"{item.id}.npy")
        res = edgeopt.compress(onnx_path, precision="int8", calib=calib, output=out_dir / f"{item.id}_int8.tflite",
                               import_params=item.import_params, ptq_params={"ptq_repair": "none"},
                               report={"latency_runs": 3, "warmup_runs": 1, "delegates": False})
    except Exception as e:  # a model the importer cannot take yet: record why
        row.update(error=f"{type(e).__name__}: {e}".splitlines()[0], seconds=round(time.perf_counter() - t0, 1))
        return row
    rep = res.report
    row.update(
        seconds=round(time.perf_counter() - t0, 1),
        import_max_rel_error=max(o["max_rel_error"] for o in rep["import_parity"]["outputs"]),
        fp32_bytes=rep["models"]["fp32"]["size_bytes"],
        int8_bytes=rep["models"]["int8"]["size_bytes"],
        size_ratio=round(rep["size_ratio"], 4),
        heldback_samples=rep["evaluation_data"]["heldback_samples"],
        outputs=[{k: r[k] for k in ("name", "cosine_mean", "cosine_min", "mean_abs_error", "max_abs_error",
                                    "top1_agreement") if k in r} for r in rep["fidelity"]],
    )
    if reference:
        cosines = ort_int8_cosines(onnx_path, item, np.load(calib))
        for r in row["outputs"]:
            r["ort_int8_cosine_mean"] = cosines[r["name"]]
    return row


def to_markdown(doc: dict) -> str:
    head = ("model", "parity (max rel)", "INT8/FP32", "output", "cosine mean", "cosine min", "top-1",
            "ORT INT8 cosine", "seconds")
    lines = [f"# real models, INT8 ({doc['host']['machine']}, {doc['host']['cpu_count']} cores)", "",
             "Fidelity: INT8 against FP32 on the held-back samples (other photos and strings than calibration).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in doc["results"]:
        if "error" in r:
            lines.append(f"| {r['model']} | fails: {r['error'].replace('|', '/')} |" + " |" * (len(head) - 2))
            continue
        for i, o in enumerate(r["outputs"]):
            model, parity, ratio, seconds = ((r["model"], f"{r['import_max_rel_error']:.2e}",
                                              f"{r['size_ratio']:.3f}", r["seconds"]) if i == 0 else ("",) * 4)
            top1 = f"{o['top1_agreement']:.2f}" if "top1_agreement" in o else "-"
            ref = f"{o['ort_int8_cosine_mean']:.4f}" if "ort_int8_cosine_mean" in o else "-"
            lines.append(f"| {model} | {parity} | {ratio} | {o['name']} | {o['cosine_mean']:.4f} | "
                         f"{o['cosine_min']:.4f} | {top1} | {ref} | {seconds} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", default=[], help="run the models whose id contains this (repeatable)")
    ap.add_argument("--no-reference", action="store_true", help="skip the onnxruntime INT8 reference")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from zoo.real_models import REAL_MODELS

    items = [i for i in REAL_MODELS if not args.only or any(s in i.id for s in args.only)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for item in items:
            print(f"bench: {item.id}", flush=True)
            results.append(bench_one(item, out_dir=Path(tmp), reference=not args.no_reference))
    doc = {"host": {"machine": platform.machine(), "platform": platform.platform(), "cpu_count": os.cpu_count()},
           "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    from edgeopt.outputs import write_text

    write_text(args.out / "real_models.json", json.dumps(doc, indent=2) + "\n")
    write_text(args.out / "real_models.md", to_markdown(doc))
    print(to_markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
