"""The ``distill`` stage: a student from the zoo, trained through the shared trainer to imitate the model it gets
(the teacher) — soft targets at temperature T mixed with the labels by alpha, or the teacher's outputs alone when
there are no labels; optionally also a teacher layer's feature map (a hint, :mod:`.hint`).

The teacher is the model as imported (onnxruntime on its ONNX file, or the Keras model), or the Keras model of an
earlier training stage. Its outputs are computed once when nothing is augmented, per batch otherwise. In
``compress`` the pipeline is import → (fine-tune) → distill → (prune the student) → quantize.
"""
from __future__ import annotations

from dataclasses import replace

from edgeopt.artifact import Artifact
from edgeopt.context import Context
from edgeopt.params import DistillParams
from edgeopt.registry import stage


@stage("distill", DistillParams)
def distill(artifact: Artifact, params: DistillParams, ctx: Context) -> Artifact:
    """Knowledge distillation into a MobileNet or ShuffleNet student (soft targets + labels, or label-free)."""
    from edgeopt._tf import keras
    from edgeopt.analyze.keras_summary import keras_summary
    from edgeopt.stages import _keras_source, _save_keras
    from edgeopt.train.setup import _is_softmax, checkpoint_folder, objective_for, prepare_data
    from edgeopt.train.teacher import Teacher, teacher_for
    from edgeopt.train.trainer import evaluate, train

    from .students import build_student
    from .teacher import student_geometry

    teacher_model = _keras_source(artifact, "distill")
    meta = artifact.meta
    shape, classes = student_geometry(teacher_model, meta)
    split = ctx.training(meta["inputs"][0])
    has_labels = split.labels is not None
    trained_here = any(k in artifact.metrics for k in ("training", "pruning"))
    teacher = (Teacher(None, teacher_model, tuple(meta["inputs"]), tuple(meta["outputs"])) if trained_here
               else teacher_for(meta, teacher_model))
    loss = params.loss
    if not loss:
        loss = ("kd",) if not has_labels or params.alpha == 1 else \
            ("ce",) if params.alpha == 0 else (f"ce={1 - params.alpha:g}", f"kd={params.alpha:g}")
    run = replace(params, loss=tuple(loss))
    small = {"auto": None, "yes": True, "no": False}[params.small_input]
    keras().utils.set_random_seed(params.seed)
    student = build_student(params.student, shape, classes, small=small)
    if _is_softmax(teacher_model, 0):  # the student answers as the teacher does: probabilities, not logits
        k = keras()
        student = k.Model(student.inputs, k.layers.Softmax(name="probabilities")(student.outputs[0]),
                          name=student.name)
    objective = objective_for(student, meta, run, has_labels=has_labels)
    plain = objective  # the teacher's own validation: no hint output
    hint = None
    if params.hint:  # the teacher's features come from its Keras model (the import, equal to the ONNX file)
        from .hint import hint_models

        hint = hint_models(teacher_model, student, params.hint, params.hint_student, weight=params.hint_weight)
        teacher = Teacher(None, hint.teacher, tuple(meta["inputs"]), tuple(meta["outputs"]))
        objective = replace(objective, terms=(*objective.terms, ("hint", params.hint_weight)), hint=True)
    if params.patience and ctx.data.val is None and has_labels:
        ctx.warn("early stopping chooses the best epoch on the validation split that the report's accuracy is "
                 "also measured on, so that accuracy is optimistic; give --val DATA for an independent figure")
    data = prepare_data(ctx, meta, run, teacher=teacher,
                        needs_teacher=any(n in ("kd", "hint") for n, _ in objective.terms))
    teacher_val = None
    if data.val is not None and data.val.labels is not None:
        teacher_val = evaluate(teacher_model, data.val, plain)
    result = train(student if hint is None else hint.net, data, run, objective=objective,
                   checkpoint_dir=checkpoint_folder(ctx, run, "distill"),
                   title=f"distilling into {params.student}")
    if hint is not None:  # the adapter only served the training
        from edgeopt.train.trainer import weights_digest

        from .hint import without_adapter

        result.model = without_adapter(result.model, hint.outputs)
        result.summary["weights_sha256"] = weights_digest(result.model)
    ctx.chief = ctx.chief and result.chief
    path = ctx.workdir / f"{artifact.path.stem}_{params.student}.keras"
    _save_keras(result.model, path)
    before, after = keras_summary(teacher_model), keras_summary(result.model)
    last = result.history[-1] if result.history else {}
    report = {"student": params.student, "input": list(shape), "classes": classes,
              "small_input_stem": bool(small if small is not None else min(shape[:2]) < 64),
              "mode": "label-free (the teacher's outputs only)" if not has_labels else
              f"labels and soft targets (alpha {params.alpha:g})",
              "loss": [*run.loss, *([f"hint={params.hint_weight:g}"] if hint else [])],
              "temperature": params.temperature,
              "teacher": teacher.name if hint is None else "Keras (the model this stage received, which also "
                                                            "gives the hint layer)",
              "hint": None if hint is None else hint.info,
              "teacher_params": before["params"], "teacher_macs": before["macs"],
              "student_params": after["params"], "student_macs": after["macs"],
              "macs_ratio": after["macs"] / max(before["macs"], 1),
              "teacher_val_accuracy": None if teacher_val is None else teacher_val.get("val_accuracy"),
              "student_val_accuracy": last.get("val_accuracy")}
    metrics = {**artifact.metrics, "params": after["params"], "macs": after["macs"], "distillation": report,
               "training": {**result.summary, "data": data.info, "history": result.history}}
    return Artifact(path=path, format="keras", model=result.model, metrics=metrics, meta=dict(meta),
                    lineage=artifact.lineage)
