"""The ``quantize.qat`` stage: quantization-aware fine-tuning through the shared trainer, then full-integer INT8.

The model (imported, fine-tuned, pruned or a distilled student) is wrapped for QAT (:mod:`.qat`), its ranges start
from the calibration samples, it trains on ``--data`` (labels, or the float model's own outputs as targets) and is
converted with the learned ranges. The same float model is also quantized post-training on the same samples, so the
report shows QAT beside plain PTQ: fidelity to FP32, accuracy, size and latency.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

from edgeopt.artifact import Artifact
from edgeopt.context import Context
from edgeopt.params import QATParams
from edgeopt.registry import stage


@stage("quantize.qat", QATParams)
def quantize_qat(artifact: Artifact, params: QATParams, ctx: Context) -> Artifact:
    """Quantization-aware training on --data, then a full-integer INT8 .tflite (with plain PTQ beside it)."""
    from edgeopt.console import status
    from edgeopt.stages import _calibration, _io_names, _keras_source, _tflite_artifact
    from edgeopt.train.setup import checkpoint_folder, needs_teacher, objective_for, prepare_data
    from edgeopt.train.teacher import Teacher
    from edgeopt.train.trainer import train

    from .ptq import quantize_int8
    from .qat import initialise_ranges, quantize, quantize_scope, to_int8

    model = _keras_source(artifact, "quantize.qat")
    meta = artifact.meta
    specs = meta["inputs"]
    samples, calib = _calibration(ctx, specs)
    split = ctx.training(specs[0]) if len(specs) == 1 else None
    has_labels = split is not None and split.labels is not None
    # without labels the targets are the float model's own outputs: QAT learns to answer as the float model does
    teacher = Teacher(None, model, tuple(specs), tuple(meta["outputs"]))
    objective = objective_for(model, meta, params, has_labels=has_labels)
    with status("wrapping the model for quantization-aware training"):
        qat_model, plan = quantize(model)
    with status(f"starting the ranges from {len(calib[0])} calibration samples"):
        ranges = initialise_ranges(qat_model, model, calib)
    data = prepare_data(ctx, meta, params, teacher=teacher, needs_teacher=needs_teacher(params, has_labels=has_labels))
    with quantize_scope():
        result = train(qat_model, data, params, objective=objective,
                       checkpoint_dir=checkpoint_folder(ctx, params, "quantize.qat", part="qat"),
                       title="quantization-aware training")
    ctx.chief = ctx.chief and result.chief
    if hasattr(model, "_edgeopt_origins"):  # conversion errors name the ONNX nodes
        result.model._edgeopt_origins = model._edgeopt_origins
    ins, outs = _io_names(artifact)
    with status("converting the QAT model to int8 .tflite"):
        data_q = to_int8(result.model, calib, input_names=ins, output_names=outs, io_type=params.io_type)
    with status("quantizing the float model post-training, for comparison"):
        ptq = quantize_int8(model, calib, input_names=ins, output_names=outs, io_type=params.io_type)
    ptq_path = ctx.workdir / f"{artifact.path.stem}_int8_ptq.tflite"
    ptq_path.write_bytes(ptq)
    record = {
        "schemes": dict(Counter(p["scheme"] for p in plan)),
        "edgeopt_configs": [p for p in plan if p["scheme"] != "default"],
        "layers": len(plan),
        "ranges_from_calibration": ranges,
        "training": {**result.summary, "data": data.info, "history": result.history},
    }
    out = _tflite_artifact(artifact, data_q, ctx.workdir / f"{artifact.path.stem}_int8_qat.tflite", "int8",
                           calibration={"source": samples.source, "samples": int(len(calib[0]))},
                           per_channel=True, qat=record, ptq_int8=str(ptq_path))
    # the run's last training is this one (RunResult.training, the printed epochs)
    return replace(out, metrics={**out.metrics, "training": record["training"]})
