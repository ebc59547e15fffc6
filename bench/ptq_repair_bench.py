"""PTQ repair on the models issue-style acceptance names: INT8 cosine with FP32 on held-back crops of real photos,
the converter's PTQ beside edgeopt's repaired PTQ, with what each repair step did.

Models (random weights; every BatchNorm's statistics re-estimated in one batch on crops of the calibration photos,
as after training):

* tf_keras MobileNetV2 (alpha 0.35, 96x96) and EfficientNet-B0 (224x224), exported with tf2onnx;
* a DBNet-style text detector in torch: MobileNetV3-Large x0.5 backbone with hard-sigmoid squeeze-excite, RSE-FPN,
  ConvTranspose head (tests/zoo/ppocr_models.py), on photo crops with printed text;
* a PP-LCNet classifier in torch (hard-swish, depthwise, SE), 224x224;
* PP-OCRv4's detector (PP-LCNet backbone) from the real-model set.

Per model, on the same calibration and held-back samples (edgeopt holds back a fifth; those crops come from other
photos):

* ``tflite ptq``: TFLiteConverter's full-integer PTQ of the tf_keras model itself (the Keras models only);
* ``ort int8``: onnxruntime's static INT8 (QDQ, per-channel, min-max) of the ONNX file;
* ``edgeopt none``: ``edgeopt compress --int8 --ptq-repair none`` (the converter's PTQ of the imported graph);
* ``edgeopt auto``: ``edgeopt compress --int8``, the default, with the repairs it kept and the seconds it took.

Writes bench/results/ptq_repair.json and bench/results/ptq_repair.md.

    .venv/bin/python bench/ptq_repair_bench.py [--only mobilenet] [--samples 200]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

KERAS = {"keras_mobilenet_v2": (96, (-1.0, 1.0)), "keras_efficientnet_b0": (224, (0.0, 255.0))}


def _cos(a, b) -> float:
    import numpy as np

    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def keras_model(name: str, out_dir: Path, samples: int):
    """(tf_keras model, ONNX path, calibration .npy path) with BatchNorm statistics from real photo crops."""
    import numpy as np

    from edgeopt._tf import tf
    from images import disjoint_samples, region_crops
    from zoo import keras_models

    size, (lo, hi) = KERAS[name]
    model = keras_models.build_photo_statistics(name, image_size=size, input_range=(lo, hi))
    import tf2onnx

    onnx_path = out_dir / f"{name}.onnx"
    tf2onnx.convert.from_keras(model, input_signature=(tf().TensorSpec((None, size, size, 3), tf().float32,
                                                                       name="input"),),
                               opset=15, output_path=str(onnx_path))
    cal = disjoint_samples(samples, lambda c, p: region_crops(c, (size, size), photos=p, seed=7))
    calib = out_dir / f"{name}.npy"
    np.save(calib, lo + cal.astype("float32") / 255.0 * (hi - lo))
    return model, onnx_path, calib


def tflite_ptq_cosine(model, calib: Path) -> float:
    """TFLiteConverter's full-integer PTQ of the tf_keras model, mean cosine with the model on the held-back
    samples (the same split edgeopt makes)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from edgeopt._tf import tf
    from images import heldback_mask

    T = tf()
    x = np.load(calib)
    held = heldback_mask(len(x))
    conv = T.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [T.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([s[None]] for s in x[~held])
    conv.target_spec.supported_ops = [T.lite.OpsSet.TFLITE_BUILTINS_INT8]
    it = Interpreter(model_content=conv.convert())
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    out = []
    for s in x[held]:
        it.set_tensor(i["index"], s[None])
        it.invoke()
        out.append(it.get_tensor(o["index"])[0])
    return _cos(model.predict(x[held], verbose=0), np.array(out))


def edgeopt_run(onnx_path: Path, calib: Path, out: Path, repair: str, import_params=None) -> dict:
    import edgeopt

    t0 = time.perf_counter()
    res = edgeopt.compress(onnx_path, precision="int8", calib=calib, output=out, import_params=import_params or {},
                           ptq_params={"ptq_repair": repair},
                           report={"latency_runs": 3, "warmup_runs": 1, "delegates": False})
    rep = res.report
    row = {"seconds": round(time.perf_counter() - t0, 1),
           "cosine": [r["cosine_mean"] for r in rep["fidelity"]],
           "top1_agreement": [r.get("top1_agreement") for r in rep["fidelity"]],
           "size_ratio": rep["size_ratio"]}
    if "ptq_repair" in rep:
        row["repair"] = rep["ptq_repair"]
    return row


def bench_one(name: str, out_dir: Path, samples: int) -> dict:
    import numpy as np

    from images import heldback_mask

    row: dict = {"model": name}
    keras = None
    if name in KERAS:
        keras, onnx_path, calib = keras_model(name, out_dir, samples)
        item, import_params = None, {}
    else:
        from real_models_bench import ort_int8_cosines
        from zoo.real_data import write_calib
        from zoo.real_models import real_entry, real_model

        item = real_entry(name)
        onnx_path = real_model(item, out_dir=out_dir)
        calib = write_calib(item, out_dir / f"{item.id}.npy", samples)
        import_params = item.import_params
    row["heldback_samples"] = int(heldback_mask(samples).sum())
    if keras is not None:
        row["tflite_ptq"] = tflite_ptq_cosine(keras, calib)
    if item is not None:
        row["ort_int8"] = list(ort_int8_cosines(onnx_path, item, np.load(calib)).values())
    row["none"] = edgeopt_run(onnx_path, calib, out_dir / f"{name}_none.tflite", "none", import_params)
    row["auto"] = edgeopt_run(onnx_path, calib, out_dir / f"{name}_auto.tflite", "auto", import_params)
    return row


def to_markdown(doc: dict) -> str:
    head = ("model", "tflite ptq (keras)", "ort int8", "edgeopt none", "edgeopt auto", "kept", "top-1 none / auto",
            "seconds none / auto")
    lines = [f"# PTQ repair ({doc['host']['machine']}, {doc['host']['cpu_count']} cores)", "",
             "INT8 output cosine with FP32 on the held-back samples (crops of photos no calibration sample came "
             "from); top-1 agreement with FP32 for the classifiers.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in doc["results"]:
        if "error" in r:
            lines.append(f"| {r['model']} | fails: {r['error']} |" + " |" * (len(head) - 2))
            continue
        top = [r[m]["top1_agreement"][0] for m in ("none", "auto")]
        lines.append(" | ".join([
            f"| {r['model']}", f"{r['tflite_ptq']:.4f}" if "tflite_ptq" in r else "-",
            f"{r['ort_int8'][0]:.4f}" if "ort_int8" in r else "-", f"{r['none']['cosine'][0]:.4f}",
            f"{r['auto']['cosine'][0]:.4f}", ", ".join(r["auto"]["repair"]["kept"]) or "none",
            "-" if top[0] is None else f"{100 * top[0]:.1f} % / {100 * top[1]:.1f} %",
            f"{r['none']['seconds']} / {r['auto']['seconds']} |"]))
    lines += ["", "Each repair step of `edgeopt auto` (cosine before → after on the held-back samples):", ""]
    for r in doc["results"]:
        if "error" in r:
            continue
        steps = []
        for s in r["auto"]["repair"]["steps"]:
            if not s["applicable"]:
                steps.append(f"{s['step']} n/a")
            elif s["step"] == "ranges":
                steps.append("ranges " + ", ".join(f"{k} {v['cosine']:.4f}" for k, v in s["tried"].items()))
            else:
                steps.append(f"{s['step']} {s['before']['cosine']:.4f} → {s['after']['cosine']:.4f}"
                             + (" kept" if s["kept"] else ""))
        lines.append(f"- {r['model']}: " + "; ".join(steps))
    return "\n".join(lines) + "\n"


MODELS = ("keras_mobilenet_v2", "keras_efficientnet_b0", "dbnet_mobilenet_v3-torchscript17",
          "pp_lcnet-torchscript17", "ppocr_det_v4-torchscript17")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", default=[], help="the models whose name contains this (repeatable)")
    ap.add_argument("--samples", type=int, default=200, help="calibration file size; a fifth is held back")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    from zoo.real_models import REAL_MODELS, RealModel

    extra = [RealModel("dbnet_mobilenet_v3", (1, 3, 128, 128), "ppocr_det", input_name="x",
                       output_names=("sigmoid_0.tmp_0",)),
             RealModel("pp_lcnet", (1, 3, 224, 224), "imagenet")]
    REAL_MODELS.extend(e for e in extra if e not in REAL_MODELS)  # for real_entry
    names = [m for m in MODELS if not args.only or any(s in m for s in args.only)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(f"bench: {name}", flush=True)
            t0 = time.perf_counter()
            try:
                results.append(bench_one(name, Path(tmp), args.samples))
            except Exception as e:  # record a model that fails
                results.append({"model": name, "error": f"{type(e).__name__}: {e}".splitlines()[0],
                                "seconds": round(time.perf_counter() - t0, 1)})
    doc = {"host": {"machine": platform.machine(), "platform": platform.platform(), "cpu_count": os.cpu_count()},
           "samples": args.samples, "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    from edgeopt.outputs import write_text

    write_text(args.out / "ptq_repair.json", json.dumps(doc, indent=2) + "\n")
    write_text(args.out / "ptq_repair.md", to_markdown(doc))
    print(to_markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
