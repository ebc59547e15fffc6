"""The built-in stages. Each is ``fn(artifact, params, ctx) -> Artifact`` registered by name.

- ``import``: ONNX or Keras file → trainable Keras graph, checked against onnxruntime.
- ``convert.tflite``: Keras → FP32 / FP16 / dynamic-range `.tflite`.
- ``quantize.ptq``: Keras → full-integer INT8 `.tflite`, calibrated on the run's data.
"""
from __future__ import annotations

from pathlib import Path

from .artifact import Artifact
from .context import Context
from .errors import EdgeoptError, RecipeError
from .params import ConvertParams, ImportParams, PTQParams
from .registry import stage


def parse_input_shapes(items) -> dict[str, list[int]]:
    """``("input:1,3,320,320",)`` → ``{"input": [1, 3, 320, 320]}``.

    >>> parse_input_shapes(["x:1,3,32,32"])
    {'x': [1, 3, 32, 32]}
    """
    shapes: dict[str, list[int]] = {}
    for item in items:
        name, sep, dims = str(item).rpartition(":")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = [int(d) for d in dims.split(",")]
            if any(d < 1 for d in shapes[name]):
                raise ValueError
        except ValueError:
            raise RecipeError(f"bad input shape {item!r}", hint="use NAME:DIM,DIM,... e.g. input:1,3,320,320") from None
    return shapes


@stage("import", ImportParams)
def import_model(artifact: Artifact, params: ImportParams, ctx: Context) -> Artifact:
    """Import an ONNX or Keras model as a trainable Keras graph and check parity with onnxruntime."""
    from .console import status
    from .frontends import load_model
    from .frontends.parity import check_parity

    with status(f"importing {artifact.path.name}"):
        imported = load_model(artifact.path, input_shapes=parse_input_shapes(params.input_shape))
    parity = {"reference": None}
    if imported.source_format == "onnx":
        samples = ctx.samples(imported.inputs)  # read once here (with its own spinner), cached for later stages
        real = None if samples.is_random else [a[: params.parity_samples] for a in samples.holdout]
        if real is not None and len(real[0]) == 0:
            real = None
        with status("checking parity with onnxruntime", step="parity"):
            parity = check_parity(imported, samples=real, num_random=params.parity_samples,
                                  tolerance=params.parity_tolerance)
        if parity.get("inconclusive"):
            ctx.warn(f"parity: {parity['note']}")
    ctx.evaluation(imported.inputs, imported.outputs)  # labeled data: read and checked before any conversion
    path = ctx.workdir / f"{artifact.path.stem}.keras"
    _save_keras(imported.model, path)
    from .analyze.keras_summary import keras_summary

    summary = keras_summary(imported.model)
    return Artifact(
        path=path,
        format="keras",
        model=imported.model,
        metrics={"params": summary["params"], "macs": summary["macs"], "parity": parity},
        meta={
            "source": str(artifact.path),
            "source_format": imported.source_format,
            "inputs": imported.inputs,
            "outputs": imported.outputs,
            "notes": list(imported.notes),
        },
        lineage=artifact.lineage,
    )


def _save_keras(model, path: Path) -> None:
    try:
        model.save(path)
    except Exception as exc:  # a layer that cannot serialize is a bug to report, not a user error
        raise EdgeoptError(f"the imported Keras model cannot be saved to {path}: {exc}") from None


def _keras_source(artifact: Artifact, stage_name: str):
    if artifact.format != "keras":
        raise RecipeError(
            f"stage {stage_name!r} needs a Keras model but got a {artifact.format} artifact",
            hint="put an `import` stage before it",
        )
    if artifact.model is not None:
        return artifact.model
    from .frontends import load_model

    return load_model(artifact.path).model


def _io_names(artifact: Artifact) -> tuple[list[str], list[str]]:
    from .converter import unique_safe_names

    return (unique_safe_names([s.name for s in artifact.meta["inputs"]]),
            unique_safe_names([s.name for s in artifact.meta["outputs"]]))


def _tflite_artifact(artifact: Artifact, data: bytes, path: Path, precision: str, **meta) -> Artifact:
    path.write_bytes(data)
    ins, outs = _io_names(artifact)
    return Artifact(
        path=path,
        format="tflite",
        metrics={"size_bytes": len(data)},
        meta={**artifact.meta, "precision": precision, "tflite_inputs": ins, "tflite_outputs": outs,
              "keras_source": str(artifact.path), **meta},
        lineage=artifact.lineage,
    )


@stage("convert.tflite", ConvertParams)
def convert_tflite(artifact: Artifact, params: ConvertParams, ctx: Context) -> Artifact:
    """Convert a Keras model to an FP32, FP16 or dynamic-range .tflite."""
    from .console import status
    from .converter import to_tflite

    model = _keras_source(artifact, "convert.tflite")
    ins, outs = _io_names(artifact)
    with status(f"converting to {params.precision} .tflite"):
        data = to_tflite(model, input_names=ins, output_names=outs, precision=params.precision)
    return _tflite_artifact(artifact, data, ctx.workdir / f"{artifact.path.stem}_{params.precision}.tflite",
                            params.precision)


@stage("quantize.ptq", PTQParams)
def quantize_ptq(artifact: Artifact, params: PTQParams, ctx: Context) -> Artifact:
    """Full-integer INT8 post-training quantization, calibrated on the run's data."""
    from .console import status
    from .quantization.ptq import quantize_int8

    model = _keras_source(artifact, "quantize.ptq")
    specs = artifact.meta["inputs"]
    samples = ctx.samples(specs)
    if samples.is_random:
        ctx.warn(
            "no calibration data: INT8 ranges are calibrated on random inputs in the value range "
            f"{ctx.preprocess().value_range}, which usually costs accuracy; pass --calib with real inputs"
        )
    calib_keras = [s.to_keras(a) for s, a in zip(specs, samples.calib)]
    ins, outs = _io_names(artifact)
    with status(f"converting to int8 .tflite ({len(calib_keras[0])} calibration samples)"):
        data = quantize_int8(model, calib_keras, input_names=ins, output_names=outs, io_type=params.io_type,
                             per_channel=params.per_channel)
    return _tflite_artifact(artifact, data, ctx.workdir / f"{artifact.path.stem}_int8.tflite", "int8",
                            calibration={"source": samples.source, "samples": int(len(samples.calib[0]))},
                            per_channel=params.per_channel)
