"""`make bench`: compress the shipped demo model and the real models of ../shared/material to INT8 and record
import and compress seconds, FP32 and INT8 size, median latency (1 thread, XNNPACK) and fidelity.

Writes bench/results/compress.json and bench/results/compress.md. Models whose files are absent are skipped (and
listed as skipped). Latency is the median of --latency-runs timed runs (at least 50) after warm-up runs, measured by
device_bench on this host; it is a local figure, not a device figure.

    python bench/compress_bench.py [--latency-runs 100]
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
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency-runs", type=int, default=100)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    if args.latency_runs < 50:
        ap.error("--latency-runs must be at least 50")
    import os

    results, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases(Path(tmp)):
            if not Path(case["model"]).exists():
                skipped.append(case["name"])
                continue
            print(f"bench: {case['name']}", flush=True)
            results.append(bench_one(case, latency_runs=args.latency_runs, out_dir=Path(tmp)))
    doc = {"host": {"machine": platform.machine(), "platform": platform.platform(), "cpu_count": os.cpu_count()},
           "latency_runs": args.latency_runs, "results": results, "skipped": skipped}
    args.out.mkdir(parents=True, exist_ok=True)
    from edgeopt.outputs import write_text

    write_text(args.out / "compress.json", json.dumps(doc, indent=2) + "\n")
    write_text(args.out / "compress.md", to_markdown(doc))
    print(to_markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
