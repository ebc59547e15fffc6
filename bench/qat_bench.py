"""`make bench`: INT8 that keeps accuracy on a MobileNetV3 (hard-swish, hard-sigmoid squeeze-excite, depthwise)
trained in torch on Fashion-MNIST: plain PTQ, quantization-aware training and the accuracy budget, side by side.

The model (``build()``): MobileNetV3-Small's blocks (Howard et al. 2019, Table 2) for 28x28 inputs: the stride-2
stem, block strides 1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1 (28 → 14 → 7 → 4), then the 576-channel conv, pooling and the
1024-wide hard-swish head.
Trained with SGD (Nesterov, weight decay 4e-5, one-cycle learning rate peaking at 0.1, batch 128, 2-pixel shifts and
flips, 3 epochs), exported to ONNX (opset 17). Then, on the same file:

* **PTQ**: ``edgeopt compress model.onnx --int8 --ptq-repair none`` (``--calib-samples 256`` training images, of
  which the report holds back 51 for fidelity, so 205 calibrate): the converter's full-integer post-training
  quantization. The same converter is what ``TFLiteConverter`` with a representative dataset does, so this column
  is also the plain-TFLite peer.
* **PTQ repaired**: ``edgeopt compress model.onnx --int8`` (the default ``--ptq-repair auto``), the same samples.
* **QAT**: ``edgeopt compress model.onnx --qat --data train --labels ... --epochs E --lr LR``: edgeopt's QAT
  (ranges from the calibration, the shared trainer), converted to full-integer INT8.
* **tfmot alone**: ``tfmot.quantization.keras.quantize_model`` on the imported Keras model, the call a user would
  make: its result, or the error it stops with.
* **budget**: ``edgeopt compress model.onnx --int8 --max-accuracy-drop 0.5``: the PTQ repair, then the fewest ops
  in float that keep top-1 within 0.5 point of float. The ops are chosen on the test images the table then scores
  them on (the budget mode measures on the run's labeled data), so that row is optimistic by construction.

Accuracy: top-1 on all 10,000 t10k images, 95 % intervals. Latency: the QAT run times FP32, QAT INT8 and PTQ INT8
in one interleaved run (1 thread, XNNPACK); those are the medians shown for them. QAT's fidelity is measured on
held-back samples of the training images it trained on (the test-set accuracy is the independent figure).
Acceptance (issue lines): PTQ loses >= 2 points (the model is one PTQ hurts), QAT within 0.5 point of float, the
budget met with <= 10 % of the ops in float. Writes bench/results/qat.json and .md.

    .venv/bin/python bench/qat_bench.py [--epochs 1] [--lr 1e-4]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import fmnist_resnet as fr  # noqa: E402

FASHION = fr.FASHION
CACHE = REPO / ".cache" / "bench"
SETTINGS = {"arch": "mobilenet_v3_small_28_s2", "epochs": 3, "batch": 128, "lr": 0.1, "weight_decay": 4e-5, "seed": 0}
DATA = {"train": FASHION / "train-images-idx3-ubyte.gz", "train_labels": FASHION / "train-labels-idx1-ubyte.gz",
        "test": FASHION / "t10k-images-idx3-ubyte.gz", "test_labels": FASHION / "t10k-labels-idx1-ubyte.gz"}


def build():
    """MobileNetV3-Small for (N, 1, 28, 28) inputs and 10 classes."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    def divisible(v, d=8):
        n = max(d, int(v + d / 2) // d * d)
        return n + d if n < 0.9 * v else n

    def conv_bn(cin, cout, k, s=1, groups=1, act=nn.ReLU):
        layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)

    class SE(nn.Module):
        def __init__(self, c):
            super().__init__()
            s = divisible(c / 4)
            self.reduce, self.expand = nn.Conv2d(c, s, 1), nn.Conv2d(s, c, 1)

        def forward(self, x):
            return x * F.hardsigmoid(self.expand(F.relu(self.reduce(F.adaptive_avg_pool2d(x, 1)))))

    class Block(nn.Module):
        def __init__(self, cin, k, hidden, cout, se, act, stride):
            super().__init__()
            layers = [] if hidden == cin else [conv_bn(cin, hidden, 1, act=act)]
            layers.append(conv_bn(hidden, hidden, k, stride, groups=hidden, act=act))
            if se:
                layers.append(SE(hidden))
            layers.append(conv_bn(hidden, cout, 1, act=None))
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    RE, HS = nn.ReLU, nn.Hardswish
    config = [(3, 16, 16, True, RE, 1), (3, 72, 24, False, RE, 2), (3, 88, 24, False, RE, 1),
              (5, 96, 40, True, HS, 2), (5, 240, 40, True, HS, 1), (5, 240, 40, True, HS, 1),
              (5, 120, 48, True, HS, 1), (5, 144, 48, True, HS, 1), (5, 288, 96, True, HS, 1),
              (5, 576, 96, True, HS, 1), (5, 576, 96, True, HS, 1)]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            layers, cin = [conv_bn(1, 16, 3, 2, act=HS)], 16
            for k, hidden, cout, se, act, s in config:
                layers.append(Block(cin, k, hidden, cout, se, act, s))
                cin = cout
            layers.append(conv_bn(cin, 576, 1, act=HS))
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(1024, 10))

        def forward(self, x):
            return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))

    return Net()


def trained(log=print) -> dict:
    """Train (or reuse from the cache) and export; {"onnx", "test_accuracy", "train_seconds", "settings"}."""
    torch_threads()
    import torch

    key = hashlib.sha256(json.dumps(SETTINGS, sort_keys=True).encode()).hexdigest()[:12]
    folder = CACHE.resolve() / f"fmnist_mobilenetv3-{key}"
    info_path = folder / "info.json"
    if info_path.exists():
        return {**json.loads(info_path.read_text()), "onnx": str(folder / "model.onnx")}
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SETTINGS["seed"])
    x, y = fr.fashion("train")
    xt, yt = fr.fashion("t10k")
    model = build().to(memory_format=torch.channels_last)
    log(f"training the torch MobileNetV3 on Fashion-MNIST ({SETTINGS['epochs']} epochs)")
    seconds = fr.fit_one_cycle(model, x, y, SETTINGS, log=log)
    model = model.to(memory_format=torch.contiguous_format).eval()
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), str(folder / "model.onnx"), input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}}, opset_version=17,
                      dynamo=False)
    info = {"onnx": str(folder / "model.onnx"), "test_accuracy": fr.accuracy(model, xt, yt),
            "train_seconds": round(seconds, 1), "settings": SETTINGS}
    info_path.write_text(json.dumps(info, indent=2))
    return info


def torch_threads() -> None:
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))


def edgeopt(args: list, out: Path) -> tuple[dict, float, int]:
    cmd = [sys.executable, "-m", "edgeopt.cli", "compress", *map(str, args), "-o", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - t0
    report = out.with_name(out.stem + ".report.json")
    if proc.returncode not in (0, 5) or (proc.returncode == 0 and not report.exists()):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    if proc.returncode == 5:  # the budget could not be met: the message carries the best figure
        return {"error": proc.stderr.strip()[-1500:]}, seconds, 5
    return json.loads(report.read_text()), seconds, 0


def tfmot_alone(onnx_path: str) -> dict:
    """What ``quantize_model`` does with the imported Keras model when called directly."""
    import edgeopt
    import tensorflow_model_optimization as tfmot

    model = edgeopt.load(onnx_path).model
    try:
        q = tfmot.quantization.keras.quantize_model(model)
    except Exception as exc:  # the peer's own error, recorded as it is
        return {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:400]}"}
    return {"ok": True, "layers": len(q.layers)}


def top1(rep: dict, label: str) -> dict | None:
    m = (rep.get("accuracy") or {}).get("models", {}).get(label)
    return None if m is None else m["top1"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=1, help="QAT epochs")
    ap.add_argument("--lr", type=float, default=1e-4, help="QAT peak learning rate (AdamW, cosine)")
    args = ap.parse_args()
    info = trained()
    onnx = info["onnx"]
    common = ["--val", DATA["test"], "--val-labels", DATA["test_labels"], "--value-range", "0,1"]
    calib = ["--calib", DATA["train"], "--calib-samples", "256"]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("PTQ ...", flush=True)
        ptq, ptq_s, _ = edgeopt([onnx, "--int8", "--ptq-repair", "none", *calib, *common], tmp / "ptq.tflite")
        print("PTQ repaired ...", flush=True)
        rep, rep_s, _ = edgeopt([onnx, "--int8", *calib, *common], tmp / "ptq_repaired.tflite")
        print("QAT ...", flush=True)
        qat, qat_s, _ = edgeopt([onnx, "--qat", "--data", DATA["train"], "--labels", DATA["train_labels"],
                                 "--epochs", args.epochs, "--lr", args.lr, "--calib-samples", "256", *common],
                                tmp / "qat.tflite")
        from edgeopt.analyze.tflite import read_tflite

        summary = read_tflite(tmp / "qat.tflite")
        integer = {"fully_integer": summary.fully_integer, "float_ops": len(summary.float_ops),
                   "ops": dict(summary.op_histogram)}
        print("budget ...", flush=True)
        bud, bud_s, bud_rc = edgeopt([onnx, "--int8", *calib, *common, "--max-accuracy-drop", "0.5"],
                                     tmp / "budget.tflite")
    print("tfmot alone ...", flush=True)
    peer = tfmot_alone(onnx)
    fp32 = top1(ptq, "fp32")
    timed = {k: m["latency"]["median_ms"] for k, m in qat["models"].items()}  # one interleaved run
    rows["fp32"] = {"top1": fp32, "size_bytes": ptq["models"]["fp32"]["size_bytes"], "median_ms": timed["fp32"]}
    rows["ptq"] = {"top1": top1(ptq, "int8"), "size_bytes": ptq["models"]["int8"]["size_bytes"],
                   "median_ms": timed["int8 ptq"], "seconds": ptq_s, "fidelity": ptq["fidelity"]}
    rows["ptq_repaired"] = {"top1": top1(rep, "int8"), "size_bytes": rep["models"]["int8"]["size_bytes"],
                            "median_ms_own_run": rep["models"]["int8"]["latency"]["median_ms"], "seconds": rep_s,
                            "fidelity": rep["fidelity"], "kept": rep["ptq_repair"]["kept"],
                            "repair_cosine": [rep["ptq_repair"]["plain"]["cosine"],
                                              rep["ptq_repair"]["final"]["cosine"]]}
    rows["qat"] = {"top1": top1(qat, "int8"), "ptq_same_run": top1(qat, "int8 ptq"),
                   "fp32_same_run": top1(qat, "fp32"), "size_bytes": qat["models"]["int8"]["size_bytes"],
                   "median_ms": timed["int8"], "seconds": qat_s,
                   "fidelity": qat["fidelity"], "training": {k: qat["qat"]["training"][k] for k in
                                                             ("epochs_run", "objective", "samples_per_second")},
                   "history": qat["qat"]["training"]["history"], "schemes": qat["qat"]["schemes"]}
    if bud_rc == 0:
        b = bud["budget"]
        rows["budget"] = {"top1": top1(bud, "int8"), "float_ops": [o["op"] for o in b["float_ops"]],
                          "ops_in_float": len(b["float_ops"]), "ops_total": b["ops_total"], "met": b["met"],
                          "size_bytes": bud["models"]["int8"]["size_bytes"],
                          "median_ms_own_run": bud["models"]["int8"]["latency"]["median_ms"],
                          "every_op_int8_ms_own_run": bud["models"]["int8 every op"]["latency"]["median_ms"],
                          "seconds": bud_s}
    else:
        rows["budget"] = {"met": False, "error": bud["error"], "seconds": bud_s}
    f = fp32["accuracy"]
    drop_ptq = 100 * (f - rows["ptq"]["top1"]["accuracy"])
    drop_qat = 100 * (top1(qat, "fp32")["accuracy"] - rows["qat"]["top1"]["accuracy"])
    drop_repaired = 100 * (f - rows["ptq_repaired"]["top1"]["accuracy"])
    acceptance = {
        "ptq_loses_at_least_2_points": {"value": round(drop_ptq, 2), "met": drop_ptq >= 2.0},
        "qat_within_0.5_point_of_float": {"value": round(drop_qat, 2), "met": drop_qat <= 0.5},
        "ptq_repaired_loss_points (no target)": {"value": round(drop_repaired, 2), "met": None},
        "budget_0.5_point_with_at_most_10pct_float": (
            {"value": f"{rows['budget']['ops_in_float']}/{rows['budget']['ops_total']}",
             "met": bool(rows["budget"]["met"] and rows["budget"]["ops_in_float"] <= 0.1 * rows["budget"]["ops_total"])}
            if "ops_total" in rows["budget"] else {"value": None, "met": False}),
        "qat_all_integer": {"value": f"{integer['float_ops']} float ops, fully integer {integer['fully_integer']}",
                            "met": integer["fully_integer"] and integer["float_ops"] == 0},
    }
    result = {"model": {"arch": SETTINGS["arch"], "torch_test_accuracy": info["test_accuracy"],
                        "train_seconds": info["train_seconds"], "settings": info["settings"]},
              "qat_args": {"epochs": args.epochs, "lr": args.lr}, "rows": rows, "tfmot_alone": peer,
              "acceptance": acceptance,
              "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}}
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "qat.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "qat.md").write_text(markdown(result) + "\n")
    print(markdown(result))


def markdown(r: dict) -> str:
    rows = r["rows"]

    def acc(t):
        return "—" if t is None else f"{100 * t['accuracy']:.2f} % ({100 * t['ci95'][0]:.2f}–{100 * t['ci95'][1]:.2f})"

    lines = ["# INT8 that keeps accuracy: MobileNetV3 (hard-swish) on Fashion-MNIST", "",
             f"torch model: top-1 {100 * r['model']['torch_test_accuracy']:.2f} % after "
             f"{r['model']['settings']['epochs']} epochs ({r['model']['train_seconds']:.0f} s). All figures: top-1 on "
             "the 10,000 t10k images (95 % Wilson interval), latency median on this host (1 thread, XNNPACK).", "",
             "| model | top-1 | size | median ms | notes |", "|---|---|---|---|---|",
             f"| FP32 .tflite | {acc(rows['fp32']['top1'])} | {rows['fp32']['size_bytes'] / 1e6:.3f} MB | "
             f"{rows['fp32']['median_ms']:.3f} | |",
             f"| PTQ (edgeopt --int8 --ptq-repair none = TFLiteConverter) | {acc(rows['ptq']['top1'])} | "
             f"{rows['ptq']['size_bytes'] / 1e6:.3f} MB | {rows['ptq']['median_ms']:.3f} | cosine "
             f"{rows['ptq']['fidelity'][0]['cosine_mean']:.4f} |"]
    pr = rows.get("ptq_repaired")
    if pr:
        lines.append(f"| PTQ repaired (edgeopt --int8) | {acc(pr['top1'])} | {pr['size_bytes'] / 1e6:.3f} MB | "
                     f"{pr['median_ms_own_run']:.3f} (own run) | cosine {pr['fidelity'][0]['cosine_mean']:.4f}; "
                     f"kept: {', '.join(pr['kept']) or 'none'} |")
    lines += [
             f"| QAT (edgeopt --qat, {r['qat_args']['epochs']} epoch(s), lr {r['qat_args']['lr']:g}) | "
             f"{acc(rows['qat']['top1'])} | {rows['qat']['size_bytes'] / 1e6:.3f} MB | {rows['qat']['median_ms']:.3f} "
             f"| cosine {rows['qat']['fidelity'][0]['cosine_mean']:.4f}; PTQ in the same run "
             f"{acc(rows['qat']['ptq_same_run'])} |"]
    b = rows["budget"]
    if "ops_total" in b:
        lines.append(f"| budget (--max-accuracy-drop 0.5, from the repaired model) | {acc(b['top1'])} | "
                     f"{b['size_bytes'] / 1e6:.3f} MB | "
                     f"{b['median_ms_own_run']:.3f} (own run; every op INT8 {b['every_op_int8_ms_own_run']:.3f}) | "
                     f"{b['ops_in_float']} of {b['ops_total']} ops in float (the list is in qat.json) |")
    else:
        lines.append(f"| budget (--max-accuracy-drop 0.5) | not met | | | {b['error'][-300:]} |")
    p = r["tfmot_alone"]
    lines += ["", "The FP32 reference is the torch model as trained; QAT also fine-tunes it on the training images "
              "for its epochs, so part of its gain over FP32 is that extra training.",
              "", "tfmot `quantize_model` on the imported Keras model, called directly: "
              + ("wraps it" if p["ok"] else f"refuses it: `{p['error']}`") + ".", "", "## Acceptance", "",
              "| line | value | met |", "|---|---|---|"]
    for k, v in r["acceptance"].items():
        lines.append(f"| {k} | {v['value']} | {'-' if v['met'] is None else 'yes' if v['met'] else 'no'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
