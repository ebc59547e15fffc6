"""Hint (feature) distillation, as in FitNets (Romero et al., 2015): a student layer learns the feature map of a
named teacher layer through a 1x1 convolution (the adapter), which maps the student's channels onto the teacher's.

The student layer is the user's (``--hint-student``), or else the deepest one whose feature map has the teacher
layer's height and width; only when none has, the deepest of the smallest integer multiple of them (average
pooling then brings it down first). The adapter
and the pooling exist only in training: the student that is written has none of them.

Layer names are the Keras names of the imported teacher; an ONNX node name such as
``/layers/layers.5/relu_1/Relu`` is accepted too (the importer names each layer after its node). A name that is
not found is answered with the nearest names and the model's last feature layers.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from edgeopt.errors import RecipeError

ADAPTER = "hint_adapter"
POOL = "hint_pool"


@dataclass(frozen=True)
class Hint:
    teacher: object  # the Keras teacher with the hint feature as its last output
    net: object  # the student with the adapted feature as its last output (training only)
    outputs: int  # how many outputs the student itself has
    info: dict  # for the report


def _feature_layers(model) -> list:
    """The layers with a 4-D (N, H, W, C) output of known size, in graph order, inputs excluded."""
    out = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is not None and len(shape) == 4 and None not in tuple(shape[1:]):
            out.append(layer)
    return out


def find_layer(model, name: str, role: str):
    """The layer ``name`` of ``model`` (a Keras name, or an ONNX node name as the importer sanitises it) with a
    4-D feature map; a RecipeError with the nearest names otherwise."""
    layers = _feature_layers(model)
    by_name = {layer.name: layer for layer in layers}
    clean = re.sub(r"[^A-Za-z0-9_.\-]", "_", name).strip("._-")
    # the importer records each layer's ONNX node (its names are cut at 60 characters and may get suffixes)
    origins = getattr(model, "_edgeopt_origins", {})
    by_node = [k for k, origin in origins.items() if origin.rsplit(" (", 1)[0] == name and k in by_name]
    for cand in (name, *by_node, clean, f"n{clean}", clean[:60]):
        if cand in by_name:
            return by_name[cand]
    if any(layer.name in (name, clean) for layer in model.layers):
        raise RecipeError(f"the {role} layer {name!r} has no 4-D (N, H, W, C) feature map of fixed size; a hint "
                          "compares feature maps", hint="name a convolution or activation layer")
    close = difflib.get_close_matches(clean, list(by_name), n=3, cutoff=0.5)
    last = [f"{layer.name} {'x'.join(str(d) for d in layer.output.shape[1:])}" for layer in layers[-6:]]
    raise RecipeError(f"the {role} has no layer {name!r}" + (f"; did you mean {', '.join(map(repr, close))}?"
                                                            if close else ""),
                      hint=f"its last feature layers are {', '.join(last)}")


def _factor(student_hw, teacher_hw) -> int | None:
    (hs, ws), (ht, wt) = student_hw, teacher_hw
    if hs % ht or ws % wt or hs // ht != ws // wt:
        return None
    return hs // ht


def hint_models(teacher_model, student, teacher_layer: str, student_layer: str = "", *,
                weight: float) -> Hint:
    """The teacher that also returns ``teacher_layer``'s feature map, and the student network that also returns
    its own feature map, pooled and mapped by a 1x1 adapter onto the teacher's channels."""
    from edgeopt._tf import keras

    k = keras()
    t = find_layer(teacher_model, teacher_layer, "teacher")
    t_shape = tuple(int(d) for d in t.output.shape[1:])
    if student_layer:
        s = find_layer(student, student_layer, "student")
        pool = _factor(tuple(int(d) for d in s.output.shape[1:3]), t_shape[:2])
        if pool is None:
            raise RecipeError(f"the student layer {s.name!r} has a {'x'.join(map(str, s.output.shape[1:3]))} "
                              f"feature map; the teacher's {t.name!r} has {t_shape[0]}x{t_shape[1]}",
                              hint="a hint needs the same height and width, or an integer multiple of them")
    else:
        fits = [(f, -i, layer) for i, layer in enumerate(_feature_layers(student))
                if (f := _factor(tuple(int(d) for d in layer.output.shape[1:3]), t_shape[:2])) is not None]
        if not fits:
            raise RecipeError(f"no student layer has a feature map of {t_shape[0]}x{t_shape[1]} (or a multiple) "
                              f"to learn the teacher's {t.name!r} from",
                              hint="choose a teacher layer of the student's resolutions, or name the student "
                                   "layer with --hint-student")
        pool, _, s = min(fits, key=lambda x: (x[0], x[1]))  # the smallest factor, then the deepest layer
    teacher = k.Model(teacher_model.inputs, [*teacher_model.outputs, t.output], name="teacher_with_hint")
    feature = s.output
    if pool > 1:
        feature = k.layers.AveragePooling2D(pool, name=POOL)(feature)
    adapted = k.layers.Conv2D(t_shape[-1], 1, name=ADAPTER)(feature)
    net = k.Model(student.inputs, [*student.outputs, adapted], name=student.name)
    info = {"teacher_layer": t.name, "teacher_shape": list(t_shape), "student_layer": s.name,
            "student_shape": [int(d) for d in s.output.shape[1:]], "pool": int(pool), "weight": float(weight),
            "adapter_params": int(adapted.shape[-1]) * (int(feature.shape[-1]) + 1)}
    return Hint(teacher, net, len(student.outputs), info)


def without_adapter(net, outputs: int):
    """The trained student alone: ``net``'s first ``outputs`` outputs, its own layers and weights (no adapter)."""
    from edgeopt._tf import keras

    k = keras()
    sub = k.Model(net.inputs, net.outputs[:outputs] if outputs > 1 else net.outputs[0], name=net.name)
    clean = k.models.clone_model(sub)
    clean.set_weights(sub.get_weights())
    return clean
