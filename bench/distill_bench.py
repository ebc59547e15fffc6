"""`make bench`: knowledge distillation of a torch-trained Fashion-MNIST ResNet into MobileNetV2-0.35 and
ShuffleNetV2-0.5, beside the same students trained on labels alone.

The teacher is the pruning benchmark's ResNet-14 (bench/fmnist_resnet.py: trained in torch, exported to ONNX,
cached in .cache/bench). Every student is trained by ``edgeopt compress teacher.onnx --distill STUDENT --int8`` on
the 60,000 training images, with the same epochs, optimizer, learning rate, schedule, batch, augmentation and seeds
in every mode:

* **kd**: soft targets of the teacher (T 4, weight alpha 0.9) and the labels' cross-entropy (0.1);
* **labels**: the labels' cross-entropy alone (``--alpha 0``: no teacher) — the student a user would otherwise train;
* **label-free**: the teacher's soft targets alone (no ``--labels``).

Accuracy: top-1 on all 10,000 t10k images, FP32 and INT8 (mean and spread over the seeds). Latency: every INT8
file, and the teacher's INT8 file, in one interleaved run on this host (1 thread, XNNPACK, 20 rounds of 25
invokes), medians. Acceptance (the issue's lines): each KD student beats the labels-only one (mean over seeds);
each INT8 KD student is within 1.0 point of the teacher with at most 25 % of its MACs; label-free comes within 1
point of labeled KD. Writes bench/results/distill.json and .md.

The acceptance run (3 seeds, 15 epochs, both students, every mode: 18 trainings on 60,000 images) takes many
hours on a 2-core host;
``--seeds``, ``--epochs``, ``--students`` and ``--modes`` run less, and the results say what was run.

    .venv/bin/python bench/distill_bench.py [--seeds 0,1,2] [--epochs 15] [--modes kd,labels,label-free]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import fmnist_resnet as fr  # noqa: E402
from prune_bench import CACHE, FASHION, edgeopt, fashion_present, top1, wilson, write_results  # noqa: E402

STUDENTS = ("mobilenet_v2_035", "shufflenet_v2_x0_5")
MODES = ("kd", "labels", "label-free")
EPOCHS, LR, BATCH, WD = 15, 3e-3, 128, 1e-4


def flags(mode: str, seed: int, epochs: int) -> list:
    out = ["--data", FASHION / "train-images-idx3-ubyte.gz",
           "--val", FASHION / "t10k-images-idx3-ubyte.gz", "--val-labels", FASHION / "t10k-labels-idx1-ubyte.gz",
           "--epochs", epochs, "--lr", LR, "--batch-size", BATCH, "--weight-decay", WD, "--augment", "crop,flip",
           "--crop-padding", 2, "--seed", seed, "--int8"]
    if mode != "label-free":
        out += ["--labels", FASHION / "train-labels-idx1-ubyte.gz"]
    if mode == "labels":
        out += ["--alpha", 0]
    return out


def spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "runs": values}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"training epochs (default {EPOCHS})")
    parser.add_argument("--students", default=",".join(STUDENTS), help="comma-separated students")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes: kd, labels, label-free")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    students = [s for s in args.students.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    if not fashion_present():
        return 1
    log = lambda m: print(m, flush=True)  # noqa: E731
    info = fr.trained(CACHE, log=log)
    teacher = Path(info["onnx"])
    runs: dict[str, dict] = {}
    files: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        log("teacher: INT8 (calibration: 256 training images)")
        out = tmp / "teacher_int8.tflite"
        rep, _ = edgeopt([teacher, "--int8", "--calib", FASHION / "train-images-idx3-ubyte.gz", "--val",
                          FASHION / "t10k-images-idx3-ubyte.gz", "--val-labels",
                          FASHION / "t10k-labels-idx1-ubyte.gz"], out)
        teacher_row = {"macs": rep["keras"]["macs"], "params": rep["keras"]["params"],
                       "fp32_top1": top1(rep, "original"), "int8_top1": top1(rep, "int8")}
        files["teacher"] = str(out)
        for student in students:
            for mode in modes:
                for seed in seeds:
                    key = f"{student}/{mode}/{seed}"
                    log(f"{key}: {args.epochs} epochs")
                    out = tmp / f"{student}_{mode}_{seed}_int8.tflite"
                    rep, secs = edgeopt([teacher, "--distill", student, *flags(mode, seed, args.epochs)], out)
                    d = rep["distillation"]
                    runs[key] = {"student": student, "mode": mode, "seed": seed, "macs": d["student_macs"],
                                 "params": d["student_params"], "fp32_top1": top1(rep, "fp32"),
                                 "int8_top1": top1(rep, "int8"), "loss": d["loss"], "seconds": round(secs, 1),
                                 "history": rep["training"]["history"]}
                    log(f"  FP32 {runs[key]['fp32_top1']:.4f}, INT8 {runs[key]['int8_top1']:.4f} ({secs:.0f} s)")
                    if seed == seeds[0]:
                        files[f"{student}/{mode}"] = str(out)
        log("latency: the teacher's and the students' INT8 files in one interleaved run")
        from device_bench.compare import compare

        timing = compare(files, rounds=20, runs_per_round=25, num_threads=1, warmup_runs=5)
    latency = {k: timing["models"][k]["latency_ms"]["median"] for k in files}
    summary: dict[str, dict] = {}
    for student in students:
        for mode in modes:
            mine = [r for r in runs.values() if r["student"] == student and r["mode"] == mode]
            summary[f"{student}/{mode}"] = {
                "student": student, "mode": mode, "macs": mine[0]["macs"], "params": mine[0]["params"],
                "macs_vs_teacher": mine[0]["macs"] / teacher_row["macs"],
                "fp32_top1": spread([r["fp32_top1"] for r in mine]),
                "int8_top1": spread([r["int8_top1"] for r in mine]),
                "int8_median_ms": latency[f"{student}/{mode}"]}
    checks = {}
    for student in students:
        kd, lab, free = (summary.get(f"{student}/{m}") for m in MODES)
        if kd and lab:
            checks[f"{student}: KD beats labels only (mean INT8)"] = kd["int8_top1"]["mean"] > lab["int8_top1"]["mean"]
        if kd:
            checks[f"{student}: INT8 KD within 1.0 pt of the teacher"] = \
                teacher_row["fp32_top1"] - kd["int8_top1"]["mean"] <= 0.01
            checks[f"{student}: <= 25 % of the teacher's MACs"] = kd["macs_vs_teacher"] <= 0.25
        if kd and free:
            checks[f"{student}: label-free within 1 pt of labeled KD"] = \
                kd["int8_top1"]["mean"] - free["int8_top1"]["mean"] <= 0.01
    doc = {"host": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
           "teacher": {"name": "ResNet-14 (24/48/96), torch", "torch_test_top1": info["test_accuracy"], **teacher_row,
                       "int8_median_ms": latency["teacher"]},
           "training": {"epochs": args.epochs, "seeds": seeds, "lr": LR, "batch": BATCH, "weight_decay": WD,
                        "optimizer": "AdamW", "schedule": "cosine", "augment": "2-pixel shifts, flips",
                        "temperature": 4.0, "alpha": 0.9,
                        "acceptance_run": seeds == [0, 1, 2] and args.epochs >= EPOCHS and modes == list(MODES)},
           "test_images": 10000, "summary": summary, "runs": runs, "checks": checks,
           "latency": {"rounds": timing["rounds"], "runs_per_round": timing["runs_per_round"], "threads": 1}}
    write_results("distill", doc, to_markdown(doc))
    return 0


def to_markdown(doc: dict) -> str:
    n, t, tr = doc["test_images"], doc["teacher"], doc["training"]

    def pct(s):
        return f"{100 * s['mean']:.2f} % (±{100 * s['std']:.2f}, {len(s['runs'])} run{'s' * (len(s['runs']) > 1)})"

    lo, hi = wilson(t["fp32_top1"], n)
    lines = [f"# Distillation on Fashion-MNIST: {t['name']} teacher", "",
             f"Teacher: {t['macs']:,} MACs, FP32 {100 * t['fp32_top1']:.2f} % ({100 * lo:.1f}–{100 * hi:.1f}), "
             f"INT8 {100 * t['int8_top1']:.2f} %, INT8 median {t['int8_median_ms']:.3f} ms. Students: "
             f"{tr['epochs']} epochs, seeds {', '.join(map(str, tr['seeds']))}, {tr['optimizer']} lr {tr['lr']:g} "
             f"{tr['schedule']}, weight decay {tr['weight_decay']:g}, batch {tr['batch']}, {tr['augment']}; kd: T "
             f"{tr['temperature']:g}, alpha {tr['alpha']:g}. Top-1 on all {n:,} test images, mean (± std) over "
             f"the seeds. Latency: one interleaved run, 1 thread, XNNPACK, medians"
             + ("." if tr["acceptance_run"] else "; **a reduced run, not the acceptance configuration (3 seeds, "
                "15 epochs, every mode)**."), "",
             "| student | mode | MACs | MACs vs teacher | params | FP32 top-1 | INT8 top-1 | INT8 median ms |",
             "|---|---|---|---|---|---|---|---|"]
    for s in doc["summary"].values():
        lines.append(f"| {s['student']} | {s['mode']} | {s['macs']:,} | {100 * s['macs_vs_teacher']:.1f} % | "
                     f"{s['params']:,} | {pct(s['fp32_top1'])} | {pct(s['int8_top1'])} | "
                     f"{s['int8_median_ms']:.3f} |")
    lines += ["", "| check | result |", "|---|---|"]
    lines += [f"| {k} | {'yes' if v else '**no**'} |" for k, v in doc["checks"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
