"""The student zoo: mobile architectures in tf_keras, built for a teacher's input size, channels and classes.

>>> from edgeopt.distillation.students import build_student
>>> model = build_student("shufflenet_v2_x0_5", (28, 28, 1), classes=10)  # doctest: +SKIP

``small`` (default: inputs under 64 pixels on a side) gives the CIFAR-style stem that keeps resolution: the stem
does not downsample (MobileNets: stride 16 overall instead of 32; ShuffleNetV2, whose stem also max-pools: 8), so
a 28x28 image ends on a 2x2 or 4x4 map. ``PAPER`` holds each model's parameters and MACs
at 224x224 with 1000 classes as its paper gives them; a test checks the builds against them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

SMALL_INPUT = 64  # inputs with a side below this get the resolution-keeping stem


@dataclass(frozen=True)
class Student:
    name: str
    family: str
    width: float
    paper_params: float  # millions, 224x224, 1000 classes
    paper_macs: float  # millions
    source: str
    make: Callable


def _lazy(module: str, **options):
    """The builder of ``module`` with ``options`` (width, size), imported when first called."""
    def make(shape, classes, small, name):
        from importlib import import_module

        return import_module(f"{__name__}.{module}").build(shape, classes, small=small, name=name, **options)
    return make


_V2 = "MobileNetV2 (Sandler et al. 2018), the authors' table of MACs and parameters per width at 224x224"
_V3 = "MobileNetV3 (Howard et al. 2019), Table 3"
_SH = "ShuffleNetV2 (Ma et al. 2018), Table 5"
STUDENTS: dict[str, Student] = {s.name: s for s in (
    Student("mobilenet_v2_035", "MobileNetV2", 0.35, 1.66, 59, _V2, _lazy("mobilenet_v2", width=0.35)),
    Student("mobilenet_v2_050", "MobileNetV2", 0.5, 1.95, 97, _V2, _lazy("mobilenet_v2", width=0.5)),
    Student("mobilenet_v2_075", "MobileNetV2", 0.75, 2.61, 209, _V2, _lazy("mobilenet_v2", width=0.75)),
    Student("mobilenet_v2_100", "MobileNetV2", 1.0, 3.47, 300, _V2, _lazy("mobilenet_v2", width=1.0)),
    Student("mobilenet_v2_130", "MobileNetV2", 1.3, 5.34, 509, _V2, _lazy("mobilenet_v2", width=1.3)),
    Student("mobilenet_v2_140", "MobileNetV2", 1.4, 6.06, 582, _V2, _lazy("mobilenet_v2", width=1.4)),
    Student("mobilenet_v3_small", "MobileNetV3-Small", 1.0, 2.5, 56, _V3, _lazy("mobilenet_v3", size="small")),
    Student("mobilenet_v3_large", "MobileNetV3-Large", 1.0, 5.4, 219, _V3, _lazy("mobilenet_v3", size="large")),
    Student("shufflenet_v2_x0_5", "ShuffleNetV2", 0.5, 1.4, 41, _SH, _lazy("shufflenet_v2", width=0.5)),
    Student("shufflenet_v2_x1_0", "ShuffleNetV2", 1.0, 2.3, 146, _SH, _lazy("shufflenet_v2", width=1.0)),
    Student("shufflenet_v2_x1_5", "ShuffleNetV2", 1.5, 3.5, 299, _SH, _lazy("shufflenet_v2", width=1.5)),
    Student("shufflenet_v2_x2_0", "ShuffleNetV2", 2.0, 7.4, 591, _SH, _lazy("shufflenet_v2", width=2.0)),
)}


def student(name: str) -> Student:
    """The zoo entry ``name``; a RecipeError listing the names for an unknown one."""
    from edgeopt.errors import RecipeError

    if name not in STUDENTS:
        import difflib

        close = difflib.get_close_matches(name, STUDENTS, n=1)
        raise RecipeError(f"unknown student {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
                          hint="`edgeopt students` lists them: " + ", ".join(STUDENTS))
    return STUDENTS[name]


def build_student(name: str, input_shape, classes: int, *, small: bool | None = None):
    """The untrained tf_keras model ``name`` for inputs of ``input_shape`` (H, W, C) and ``classes`` logits."""
    from edgeopt.errors import RecipeError

    entry = student(name)
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise RecipeError(f"student {name}: the input must be an image (H, W, C), not {shape}")
    if classes < 2:
        raise RecipeError(f"student {name}: a classifier needs at least 2 classes, not {classes}")
    if small is None:
        small = min(shape[:2]) < SMALL_INPUT
    minimum = 16 if small else 32
    if min(shape[:2]) < minimum:
        raise RecipeError(f"student {name}: inputs of {shape[0]}x{shape[1]} are too small (at least {minimum} "
                          f"pixels a side{'' if small else ' without the small-input stem'})")
    return entry.make(shape, int(classes), bool(small), name)


def summaries(input_shape=(224, 224, 3), classes: int = 1000, *, small: bool | None = None) -> list[dict]:
    """Every student's params and MACs when built for ``input_shape`` and ``classes``, beside its paper's figures
    at 224x224 with 1000 classes."""
    from edgeopt.analyze.keras_summary import keras_summary

    rows = []
    for entry in STUDENTS.values():
        summary = keras_summary(build_student(entry.name, input_shape, classes, small=small))
        rows.append({"name": entry.name, "family": entry.family, "width": entry.width,
                     "params": summary["params"], "trainable_params": summary["trainable_params"],
                     "macs": summary["macs"], "paper_params": entry.paper_params * 1e6,
                     "paper_macs": entry.paper_macs * 1e6, "source": entry.source})
    return rows
