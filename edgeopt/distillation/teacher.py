"""What a student is built for: the teacher's image input (H, W, C in the Keras layout), its classes and MACs."""
from __future__ import annotations

from pathlib import Path

from edgeopt.errors import RecipeError


def student_geometry(model, meta: dict) -> tuple[tuple[int, int, int], int]:
    """((H, W, C), classes) of a teacher: one image input and one classifier output, else a RecipeError."""
    from edgeopt.accuracy import classifier_output

    inputs, outputs = meta["inputs"], meta["outputs"]
    if len(inputs) != 1 or len(model.inputs[0].shape) != 4 or None in tuple(model.inputs[0].shape[1:]):
        shapes = ", ".join(f"{s.name} {list(s.onnx_shape)}" for s in inputs)
        raise RecipeError(f"distillation builds image students (one input of fixed height, width and channels); "
                          f"this teacher's inputs are {shapes}", hint="fix dynamic sizes with --input-shape")
    if len(outputs) != 1 or classifier_output(outputs) is None or len(model.outputs[0].shape) != 2:
        shapes = ", ".join(f"{s.name} {list(s.onnx_shape)}" for s in outputs)
        raise RecipeError(f"distillation trains classifier students (one [N, classes] output); this teacher's "
                          f"outputs are {shapes}",
                          hint="dense-output students (detection, segmentation) are not in the zoo")
    classes = int(model.outputs[0].shape[-1])
    return tuple(int(d) for d in model.inputs[0].shape[1:]), classes


def teacher_shape(path: str | Path) -> tuple[tuple[int, int, int], int, int]:
    """((H, W, C), classes, MACs) of the model file ``path``, imported."""
    from edgeopt.analyze.keras_summary import keras_summary
    from edgeopt.frontends import load_model

    imported = load_model(path)
    meta = {"inputs": imported.inputs, "outputs": imported.outputs}
    shape, classes = student_geometry(imported.model, meta)
    return shape, classes, int(keras_summary(imported.model)["macs"])
