"""edgeopt: ONNX or Keras in, a small, fast, checked `.tflite` out.

The public API; each function is a thin layer over the same stage registry the CLI and recipes use.

>>> import edgeopt
>>> result = edgeopt.compress("model.onnx", precision="int8", calib="images/", output="m.tflite")  # doctest: +SKIP
>>> result.report["fidelity"][0]["top1_agreement"]                                               # doctest: +SKIP
0.995
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from .errors import EdgeoptError

__version__ = "0.1.0"
__all__ = ["EdgeoptError", "compress", "load", "finetune", "prune", "convert", "quantize", "inspect", "benchmark",
           "run_recipe"]


def compress(model: str | Path, *, precision: str = "int8", output: str | Path | None = None,
             calib: str | Path | None = None, data: Mapping[str, Any] | None = None,
             import_params: Mapping[str, Any] | None = None, ptq_params: Mapping[str, Any] | None = None,
             report: Mapping[str, Any] | None = None, quiet: bool = True):
    """Import ``model``, convert it at ``precision`` (fp32, fp16, dynamic-range or int8), measure and report.

    ``data``/``import_params``/``ptq_params``/``report`` take the fields of DataParams, ImportParams, PTQParams and
    ReportParams (``edgeopt stages`` lists them). Returns a :class:`edgeopt.pipeline.RunResult`.
    """
    from .params import DataParams, ReportParams
    from .pipeline import StageCall, run

    calls = [StageCall("import", dict(import_params or {}))]
    if precision == "int8":
        calls.append(StageCall("quantize.ptq", dict(ptq_params or {})))
    else:
        calls.append(StageCall("convert.tflite", {"precision": precision}))
    d = DataParams(**{**(data or {}), **({"calib": str(calib)} if calib is not None else {})})
    return run(model, calls, output=output, data=d, report=ReportParams(**(report or {})), quiet=quiet)


def finetune(model: str | Path, *, data: str | Path, output: str | Path, labels: str | Path | None = None,
             val: str | Path | None = None, val_labels: str | Path | None = None,
             preprocess: Mapping[str, Any] | None = None, save_keras: str | Path | None = None, quiet: bool = True,
             **train: Any):
    """Fine-tune ``model`` on ``data`` (with ``labels``, or on its own outputs) and write ``output`` (.keras, or an
    FP32 .tflite with a report). ``train`` takes the fields of TrainParams (epochs, batch_size, lr, strategy, ...);
    ``preprocess`` those of DataParams (value_range, mean, std, size, ...).

    >>> result = edgeopt.finetune("cnn.onnx", data="train-images-idx3-ubyte.gz",          # doctest: +SKIP
    ...                           labels="train-labels-idx1-ubyte.gz", epochs=2, output="cnn_tuned.keras")
    >>> result.artifact.metrics["training"]["history"][-1]["val_accuracy"]                 # doctest: +SKIP
    0.913
    """
    return _train_and_write(model, "train.finetune", dict(train), output=output, data=data, labels=labels, val=val,
                            val_labels=val_labels, preprocess=preprocess, save_keras=save_keras, quiet=quiet)


def prune(model: str | Path, *, output: str | Path, prune_macs: float = 0.0, prune_ratio: float = 0.0,
          data: str | Path | None = None, labels: str | Path | None = None, val: str | Path | None = None,
          val_labels: str | Path | None = None, preprocess: Mapping[str, Any] | None = None, quiet: bool = True,
          **params: Any):
    """Structured pruning of ``model`` to ``prune_macs`` (fraction of MACs kept), ``prune_ratio`` (fraction of
    channels removed) or ``prune_latency`` (fraction of the measured latency kept, a keyword of ``params``),
    fine-tuned on ``data`` when given; writes ``output`` (.keras, or FP32 .tflite with a report). ``params`` takes
    the other fields of PruneParams (importance, round_to, epochs, lr, strategy, ssh, channels, ...).

    >>> result = edgeopt.prune("resnet.onnx", prune_macs=0.4, data="train/", epochs=3,     # doctest: +SKIP
    ...                        output="resnet_pruned.keras")
    >>> result.pruning["macs_ratio"]                                                      # doctest: +SKIP
    0.397
    """
    return _train_and_write(model, "prune.structured", {"prune_macs": prune_macs, "prune_ratio": prune_ratio,
                                                       **params}, output=output, data=data, labels=labels, val=val,
                            val_labels=val_labels, preprocess=preprocess, save_keras=None, quiet=quiet)


def distill(teacher: str | Path, *, student: str, output: str | Path, data: str | Path,
            labels: str | Path | None = None, val: str | Path | None = None, val_labels: str | Path | None = None,
            preprocess: Mapping[str, Any] | None = None, quiet: bool = True, **params: Any):
    """Knowledge distillation: train the zoo's ``student`` (``edgeopt students``) to imitate ``teacher`` on
    ``data`` (soft targets mixed with ``labels`` by ``alpha``, or the teacher's outputs alone without labels);
    writes ``output`` (.keras, or FP32 .tflite with a report). ``params`` takes the other fields of DistillParams
    (alpha, temperature, epochs, lr, augment, strategy, ...).

    >>> result = edgeopt.distill("resnet.onnx", student="shufflenet_v2_x0_5", data="train/", epochs=20,  # doctest: +SKIP
    ...                          output="student.keras")
    >>> result.distillation["student_val_accuracy"]                                              # doctest: +SKIP
    0.91
    """
    return _train_and_write(teacher, "distill", {"student": student, **params}, output=output, data=data,
                            labels=labels, val=val, val_labels=val_labels, preprocess=preprocess, save_keras=None,
                            quiet=quiet)


def _train_and_write(model, stage: str, values: dict, *, output, data, labels, val, val_labels, preprocess,
                     save_keras, quiet: bool):
    """import → ``stage`` (→ an FP32 .tflite with a report when ``output`` ends in .tflite), on the given data."""
    from .params import DataParams, ReportParams
    from .pipeline import StageCall, run

    def text(p):
        return None if p is None else str(p)

    calls = [StageCall("import"), StageCall(stage, values)]
    if Path(output).suffix.lower() == ".tflite":
        calls.append(StageCall("convert.tflite", {"precision": "fp32"}))
    d = DataParams(**{**(preprocess or {}), "data": text(data), "labels": text(labels), "val": text(val),
                      "val_labels": text(val_labels)})
    return run(model, calls, output=output, data=d, report=ReportParams(), quiet=quiet, save_keras=save_keras)


def run_recipe(recipe: str | Path, model: str | Path, *, output: str | Path, calib: str | Path | None = None,
               quiet: bool = True):
    """Run a recipe TOML file on ``model``; see :mod:`edgeopt.recipe`."""
    from .pipeline import run
    from .recipe import load_recipe

    r = load_recipe(recipe)
    return run(model, r.calls, output=output, data=r.data_params(calib=None if calib is None else str(calib)),
               report=r.report_params(), quiet=quiet)


def load(model: str | Path, *, input_shapes: Mapping[str, Sequence[int]] | None = None):
    """Import an ONNX or Keras file as an :class:`edgeopt.frontends.spec.ImportedModel` (a trainable Keras graph)."""
    from .frontends import load_model

    return load_model(model, input_shapes=input_shapes)


def convert(model: str | Path, *, output: str | Path, precision: str = "fp32", quiet: bool = True):
    """Import and convert to `.tflite` at fp32, fp16 or dynamic-range precision, without a report."""
    from .pipeline import StageCall, run

    return run(model, [StageCall("import"), StageCall("convert.tflite", {"precision": precision})],
               output=output, report=None, quiet=quiet)


def quantize(model: str | Path, *, output: str | Path, calib: str | Path | None = None,
             io_type: str = "int8", quiet: bool = True, **data: Any):
    """Import and quantize to a full-integer INT8 `.tflite`, without a report; ``data`` as in DataParams."""
    from .params import DataParams
    from .pipeline import StageCall, run

    d = DataParams(**{**data, **({"calib": str(calib)} if calib is not None else {})})
    return run(model, [StageCall("import"), StageCall("quantize.ptq", {"io_type": io_type})],
               output=output, data=d, report=None, quiet=quiet)


def inspect(model: str | Path, *, delegates: bool = False) -> dict:
    """Summary of a `.onnx` or `.tflite` file: I/O, op histogram, params, MACs, quantization (+ delegates)."""
    from .analyze.delegates import analyze_delegates
    from .analyze.render import summarize

    out = {"summary": summarize(model)}
    if delegates:
        out["delegates"] = analyze_delegates(model)
    return out


def benchmark(model: str | Path, *, num_threads: int = 1, num_runs: int = 50, warmup_runs: int = 5, **options: Any):
    """Latency statistics of a `.tflite` on this host (see :func:`device_bench.runner.benchmark`)."""
    from device_bench.runner import benchmark as run_bench

    return run_bench(str(model), num_threads=num_threads, num_runs=num_runs, warmup_runs=warmup_runs, **options)
