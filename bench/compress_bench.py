"""`make bench`: compress the shipped demo model and the real models of ../shared/material to INT8 and record
import and compress seconds, FP32 and INT8 size, median latency (1 thread, XNNPACK), fidelity, and where the time
went: the seconds of each step (the run's profile, as `edgeopt compress --profile` prints it).

Writes bench/results/compress.json and bench/results/compress.md. Models whose files are absent are skipped (and
listed as skipped). Latency is the median of --latency-runs timed runs (at least 50) after warm-up runs, measured by
device_bench on this host; it is a local figure, not a device figure.

The time table splits each run into the converter's work (the int8 and FP32 reference conversions, calibration
included: the `TFLite converter` and `calibration` steps when the converter marks its call, else the
`quantize.ptq`, `calibration` and `convert.tflite (fp32 reference)` steps, their tracing and compaction included)
and the steps around it (import, data, parity, fidelity, analysis, latency, delegates, report files, plot, other).
Loading TensorFlow is listed apart: the first model of the process pays it, once.

    python bench/compress_bench.py [--latency-runs 100] [--only ultraface]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MATERIAL = REPO.parent / "shared" / "material"
ASSETS = REPO / "edgeopt" / "assets"
sys.path.insert(0, str(REPO / "tests"))  # real-photo crops for calibration (tests/images.py)


def photo_folder(tmp: Path, n: int, size: tuple[int, int], seed: int) -> Path:
    from images import photo_crops, write_image_folder

    return write_image_folder(tmp / f"photos_{size[0]}x{size[1]}", photo_crops(n, size, seed=seed))


def cases(tmp: Path) -> list[dict]:
    """Model, calibration data and preprocessing for each benchmarked model."""
    mnist = MATERIAL / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
    return [
        {"name": "fashion_mnist_cnn (demo)", "model": ASSETS / "fashion_mnist_cnn.onnx",
         "calib": lambda: ASSETS / "fashion_mnist_subset-images-idx3-ubyte.gz", "data": {}},
        {"name": "mnist_cntk_opset8", "model": MATERIAL / "models" / "mnist_cntk_opset8.onnx",
         "calib": lambda: mnist, "data": {"value_range": (0.0, 255.0)}},
        {"name": "cifar10_cnn_opset10", "model": MATERIAL / "models" / "cifar10_cnn_opset10.onnx",
         "calib": lambda: photo_folder(tmp, 300, (32, 32), 1), "data": {"value_range": (-1.0, 1.0)}},
        {"name": "squeezenet1.0_fp16_opset7", "model": MATERIAL / "models" / "squeezenet1.0_fp16_opset7.onnx",
         "calib": lambda: photo_folder(tmp, 200, (224, 224), 2),
         "data": {"value_range": (0.0, 255.0), "channel_order": "bgr", "mean": (104.0, 117.0, 123.0)}},
        {"name": "ultraface_rfb320_opset9", "model": MATERIAL / "models" / "ultraface_rfb320_opset9.onnx",
         "calib": lambda: photo_folder(tmp, 120, (240, 320), 3),
         "data": {"value_range": (0.0, 255.0), "mean": (127.0,), "std": (128.0,)}},
    ]


def fidelity_summary(fidelity: list[dict]) -> dict:
    out = {"cosine_min_over_outputs": min(r["cosine_mean"] for r in fidelity)}
    agree = [r["top1_agreement"] for r in fidelity if "top1_agreement" in r]
    if agree:
        out["top1_agreement"] = min(agree)
    return out


# The conversion steps: with a "TFLite converter" step (the converter's convert() call alone), that one and
# calibration; without it, the stages that hold the converter calls (their tracing and compaction included).
EXACT_CONVERTER_STEPS = ("TFLite converter", "calibration")
CONVERTER_STEPS = ("quantize.ptq", "calibration", "convert.tflite (fp32 reference)")
APART_STEPS = ("load TensorFlow",)


def time_split(profile: dict) -> dict:
    """Seconds of the converter's steps, of the steps around them, and of loading TensorFlow.

    >>> time_split({"steps": [{"step": "quantize.ptq", "seconds": 2.0}, {"step": "import", "seconds": 0.5}],
    ...             "other_seconds": 0.1, "total_seconds": 2.6})
    {'converter_seconds': 2.0, 'around_seconds': 0.6, 'load_tensorflow_seconds': 0.0, 'around_over_converter': 0.3}
    """
    seconds = {r["step"]: r["seconds"] for r in profile["steps"]}
    names = EXACT_CONVERTER_STEPS if "TFLite converter" in seconds else CONVERTER_STEPS
    converter = sum(seconds.get(k, 0.0) for k in names)
    apart = sum(seconds.get(k, 0.0) for k in APART_STEPS)
    around = profile["total_seconds"] - converter - apart
    return {"converter_seconds": round(converter, 2), "around_seconds": round(around, 2),
            "load_tensorflow_seconds": round(apart, 2),
            "around_over_converter": round(around / converter, 2) if converter else None}


def bench_one(case: dict, *, latency_runs: int, out_dir: Path) -> dict:
    import edgeopt

    calib = case["calib"]()
    t0 = time.perf_counter()
    res = edgeopt.compress(case["model"], precision="int8", calib=calib, output=out_dir / "m_int8.tflite",
                           data={"calib_samples": 300, **case["data"]},
                           report={"latency_runs": latency_runs, "warmup_runs": 10, "num_threads": 1,
                                   "delegates": False})
    total = time.perf_counter() - t0
    rep = res.report
    import_s = next(s["seconds"] for s in rep["lineage"] if s["stage"] == "import")
    fp32, int8 = rep["models"]["fp32"], rep["models"]["int8"]
    return {
        "model": case["name"],
        "params": int8["params"],
        "macs": int8["macs"],
        "import_seconds": round(import_s, 2),
        "compress_seconds": round(total, 2),
        "fp32_bytes": fp32["size_bytes"],
        "int8_bytes": int8["size_bytes"],
        "size_ratio": round(rep["size_ratio"], 4),
        "fp32_median_ms": fp32["latency"]["median_ms"],
        "int8_median_ms": int8["latency"]["median_ms"],
        "latency_runs": int8["latency"]["runs"],
        "import_max_rel_error": max(o["max_rel_error"] for o in rep["import_parity"]["outputs"]),
        "heldback_samples": rep["evaluation_data"]["heldback_samples"],
        **fidelity_summary(rep["fidelity"]),
        "profile": res.profile,
        **time_split(res.profile),
    }


def to_markdown(doc: dict) -> str:
    head = ("model", "params", "import s", "compress s", "FP32 KB", "INT8 KB", "INT8/FP32", "FP32 median ms",
            "INT8 median ms", "top-1 agreement", "min cosine")
    lines = [f"# compress benchmark ({doc['host']['machine']}, {doc['host']['cpu_count']} cores, "
             f"{doc['latency_runs']} runs at 1 thread, XNNPACK)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in doc["results"]:
        agree = f"{100 * r['top1_agreement']:.1f} %" if "top1_agreement" in r else "-"
        lines.append(f"| {r['model']} | {r['params']:,} | {r['import_seconds']:.1f} | {r['compress_seconds']:.1f} | "
                     f"{r['fp32_bytes'] / 1024:.1f} | {r['int8_bytes'] / 1024:.1f} | {r['size_ratio']:.3f} | "
                     f"{r['fp32_median_ms']:.3f} | {r['int8_median_ms']:.3f} | {agree} | "
                     f"{r['cosine_min_over_outputs']:.4f} |")
    if doc["skipped"]:
        lines += ["", "Skipped (file absent): " + ", ".join(doc["skipped"])]
    return "\n".join(lines + [""] + profile_table(doc["results"])) + "\n"


def profile_table(results: list[dict]) -> list[str]:
    """Seconds per step and model (the run's profile), then the converter / around split."""
    if not results:
        return []
    steps = list(dict.fromkeys(r["step"] for res in results for r in res["profile"]["steps"]))
    head = ("step", *(res["model"] for res in results))
    lines = ["## Where the time goes (seconds per step)", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    per = [{r["step"]: r["seconds"] for r in res["profile"]["steps"]} for res in results]
    for name in steps:
        lines.append(f"| {name} | " + " | ".join(f"{p.get(name, 0.0):.2f}" for p in per) + " |")
    rows = (("other (hashing, lineage, output)", lambda res: res["profile"]["other_seconds"]),
            ("total", lambda res: res["profile"]["total_seconds"]),
            ("**converter calls** (int8 + calibration + FP32 reference)", lambda res: res["converter_seconds"]),
            ("**around the converter** (total - converter - loading TensorFlow)", lambda res: res["around_seconds"]),
            ("around / converter", lambda res: res["around_over_converter"]))
    for label, get in rows:
        lines.append(f"| {label} | " + " | ".join(f"{get(res):.2f}" for res in results) + " |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency-runs", type=int, default=100)
    ap.add_argument("--out", type=Path, help="result folder (default bench/results; with --only, none: print only)")
    ap.add_argument("--only", metavar="TEXT", help="only the models whose name contains TEXT")
    args = ap.parse_args(argv)
    if args.latency_runs < 50:
        ap.error("--latency-runs must be at least 50")
    import os

    results, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases(Path(tmp)):
            if args.only and args.only not in case["name"]:
                continue
            if not Path(case["model"]).exists():
                skipped.append(case["name"])
                continue
            print(f"bench: {case['name']}", flush=True)
            results.append(bench_one(case, latency_runs=args.latency_runs, out_dir=Path(tmp)))
    doc = {"host": {"machine": platform.machine(), "platform": platform.platform(), "cpu_count": os.cpu_count()},
           "latency_runs": args.latency_runs, "results": results, "skipped": skipped}
    out = args.out or (None if args.only else REPO / "bench" / "results")
    if out is not None:
        from edgeopt.outputs import write_text

        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "compress.json", json.dumps(doc, indent=2) + "\n")
        write_text(out / "compress.md", to_markdown(doc))
    print(to_markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
