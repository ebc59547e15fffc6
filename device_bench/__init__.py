"""device_bench: measure a .tflite where it runs (this host, an Android phone over adb, a Linux board over ssh).

>>> from device_bench import benchmark
>>> benchmark("model.tflite", num_runs=100)["latency_ms"]["median"]   # doctest: +SKIP
"""
from .parse_benchmark_model import parse
from .runner import BenchError, benchmark

__all__ = ["BenchError", "benchmark", "parse"]
