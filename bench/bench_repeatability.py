"""`make bench`: do two runs of `edgeopt bench` on the same model agree? (goal: medians within 10 %)

Builds a 32x32 conv net (5 convs of 48 channels: 32*32*9*48*48*5 = 106M MACs, about 1-3 ms on one core), converts
it to FP32 .tflite, runs `edgeopt bench MODEL --num-runs 200 --warmup-runs 20 --num-threads 1` twice as separate
processes, and writes bench/results/bench_repeatability.json and .md with both medians and their ratio.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_model(path: Path) -> Path:
    from edgeopt._tf import keras, tf

    k = keras()
    inputs = k.layers.Input((32, 32, 3))
    x = inputs
    for _ in range(5):
        x = k.layers.Conv2D(48, 3, padding="same", activation="relu")(x)
    outputs = k.layers.Dense(10)(k.layers.GlobalAveragePooling2D()(x))
    path.write_bytes(tf().lite.TFLiteConverter.from_keras_model(k.Model(inputs, outputs)).convert())
    return path


def bench_once(model: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "edgeopt.cli", "bench", str(model), "--num-runs", "200", "--warmup-runs", "20",
           "--num-threads", "1", "--json", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    return json.loads(out.read_text())


def main() -> int:
    from device_bench.stats import median_ratio
    from edgeopt.outputs import write_text

    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(Path(tmp) / "conv48x5.tflite")
        first = bench_once(model, Path(tmp) / "a.json")
        second = bench_once(model, Path(tmp) / "b.json")
    ratio = median_ratio(first, second)
    doc = {"model": "conv48x5 (32x32x3, 106M MACs, FP32)", "runs_each": first["latency_ms"]["count"],
           "threads": 1, "first_median_ms": first["latency_ms"]["median"],
           "second_median_ms": second["latency_ms"]["median"], "ratio": ratio, "within_10_percent": ratio <= 1.10}
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "bench_repeatability.json", json.dumps(doc, indent=2) + "\n")
    md = ("# edgeopt bench repeatability\n\n| model | runs each | first median | second median | ratio |\n"
          "|---|---|---|---|---|\n"
          f"| {doc['model']} | {doc['runs_each']} | {doc['first_median_ms']:.4f} ms | "
          f"{doc['second_median_ms']:.4f} ms | {ratio:.4f} |\n")
    write_text(out / "bench_repeatability.md", md)
    print(md)
    return 0 if doc["within_10_percent"] else 1


if __name__ == "__main__":
    sys.exit(main())
