"""The zoo's list of models and the helpers that export them to ONNX, once per output folder.

Torch models go through both torch exporters (``torchscript``: ``dynamo=False``; ``dynamo``: ``torch.export`` +
onnxscript); tf_keras models through tf2onnx. Each export is written under a temporary name and renamed, so a file
that exists is complete and is re-used.

    >>> path = zoo_model(entry("resnet18", exporter="torchscript"), out_dir=tmp_path)
    >>> x = sample_input(entry("resnet18", exporter="torchscript"))   # (3, 3, 64, 64) float32 in [-1, 1]
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

DEFAULT_OPSET = {"torchscript": 17, "dynamo": 18, "tf2onnx": 15}


@dataclass(frozen=True)
class ZooEntry:
    """One model × exporter: what the file's input looks like and what the source model holds.

    ``params`` is the source framework's own count: ``sum(p.numel())`` of torch parameters, or Keras
    ``count_params()`` (which includes the BatchNorm moving statistics).
    """

    name: str
    exporter: str
    input_shape: tuple[int, ...]  # the shape exported with; batch 1
    params: int
    kind: str = "classifier"  # or "segmenter"
    classes: int = 10
    opset: int | None = None  # None: the exporter's default, DEFAULT_OPSET
    dynamic_batch: bool = False
    input_range: tuple[float, float] = (-1.0, 1.0)
    slow: bool = False

    @property
    def id(self) -> str:
        return f"{self.name}-{self.exporter}{self.opset or ''}"

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Logits (N, classes) of a classifier; per-pixel logits (N, classes, H, W) of the NCHW segmenter."""
        return (1, self.classes, *self.input_shape[2:]) if self.kind == "segmenter" else (1, self.classes)

    @property
    def layout(self) -> str:
        return "NHWC" if self.exporter == "tf2onnx" else "NCHW"

    @property
    def resolved_opset(self) -> int:
        return self.opset or DEFAULT_OPSET[self.exporter]


# Full-width torch models at 10 classes (100 for ResNet-18); 1000-class counts, as in the papers / torchvision:
# ResNet-18 11,689,512; MobileNetV2 3,504,872; MobileNetV3-Small 2,542,856; ShuffleNetV2 x1.0 2,278,604;
# EfficientNet-B0 5,288,548. Fewer classes remove (1000 - n) * (fc inputs + 1) parameters, e.g. ResNet-18 at 100:
# 11,689,512 - 900 * 513 = 11,227,812.
_T = {"resnet18": 11_227_812, "mobilenet_v2": 2_236_682, "mobilenet_v3_small": 1_528_106,
      "shufflenet_v2": 1_263_854, "efficientnet_b0": 4_020_358, "unet": 476_627}


def _torch_entries(exporter: str) -> list[ZooEntry]:
    slow = exporter == "dynamo"
    return [
        ZooEntry("resnet18", exporter, (1, 3, 64, 64), _T["resnet18"], classes=100, dynamic_batch=True),
        ZooEntry("mobilenet_v2", exporter, (1, 3, 64, 64), _T["mobilenet_v2"], dynamic_batch=True),
        ZooEntry("mobilenet_v3_small", exporter, (1, 3, 64, 64), _T["mobilenet_v3_small"], slow=slow),
        ZooEntry("shufflenet_v2", exporter, (1, 3, 64, 64), _T["shufflenet_v2"], slow=slow),
        ZooEntry("efficientnet_b0", exporter, (1, 3, 64, 64), _T["efficientnet_b0"], slow=slow),
        ZooEntry("unet", exporter, (1, 3, 64, 64), _T["unet"], kind="segmenter", classes=3,
                 dynamic_batch=exporter == "dynamo"),
    ]


ZOO: list[ZooEntry] = [
    *_torch_entries("torchscript"),
    *_torch_entries("dynamo"),
    # Opset 13 keeps the older operator forms (ReduceMean axes as an attribute, Resize with an roi input).
    ZooEntry("shufflenet_v2", "torchscript", (1, 3, 64, 64), _T["shufflenet_v2"], opset=13),
    ZooEntry("unet", "torchscript", (1, 3, 64, 64), _T["unet"], kind="segmenter", classes=3, opset=13),
    # tf_keras counts include BatchNorm moving statistics (non-trainable); tf2onnx exports keep a dynamic batch.
    ZooEntry("keras_mobilenet_v2", "tf2onnx", (1, 96, 96, 3), 423_018, dynamic_batch=True),
    ZooEntry("keras_mobilenet_v3_small", "tf2onnx", (1, 96, 96, 3), 1_540_218, dynamic_batch=True,
             input_range=(0.0, 255.0)),
    ZooEntry("keras_efficientnet_b0", "tf2onnx", (1, 96, 96, 3), 4_062_381, dynamic_batch=True,
             input_range=(0.0, 255.0), slow=True),
    ZooEntry("keras_small_cnn", "tf2onnx", (1, 32, 32, 3), 82_538, dynamic_batch=True),
]


def entry(name: str, /, *, exporter: str, opset: int | None = None) -> ZooEntry:
    """The ZOO entry for a model and exporter (opset None: the exporter's default one).

    >>> entry("unet", exporter="dynamo").kind
    'segmenter'
    """
    for item in ZOO:
        if item.name == name and item.exporter == exporter and item.opset == opset:
            return item
    known = ", ".join(item.id for item in ZOO)
    raise KeyError(f"no zoo entry {name!r} × {exporter!r} (opset {opset}); known: {known}")


@lru_cache(maxsize=None)
def source_model(name: str):
    """The framework model behind a zoo name: a torch module in eval mode, or a tf_keras model (built once).

    >>> source_model("unet").training
    False
    """
    item = next(e for e in ZOO if e.name == name)
    if name.startswith("keras_"):
        from . import keras_models

        return keras_models.build(name, image_size=item.input_shape[1], input_range=item.input_range,
                                  num_classes=item.classes)
    from . import torch_models

    return torch_models.build(name, num_classes=item.classes, image_size=item.input_shape[-1])


def sample_input(item: ZooEntry, /, *, batch: int | None = None, seed: int = 0) -> np.ndarray:
    """Seeded uniform float32 inputs in the entry's range; batch 3 where the batch axis is dynamic, else 1.

    >>> sample_input(entry("keras_mobilenet_v3_small", exporter="tf2onnx")).max() <= 255.0
    True
    """
    if batch is None:
        batch = 3 if item.dynamic_batch else 1
    low, high = item.input_range
    shape = (batch, *item.input_shape[1:])
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def export_torch(name: str, out_dir: Path, *, dynamo: bool, opset: int | None = None) -> Path:
    """Export a torch zoo model to ``out_dir/<name>-<exporter><opset>.onnx`` with weights inside the file.

    >>> export_torch("unet", tmp_path, dynamo=True).name
    'unet-dynamo18.onnx'
    """
    import torch

    exporter = "dynamo" if dynamo else "torchscript"
    item = entry(name, exporter=exporter, opset=opset if opset != DEFAULT_OPSET[exporter] else None)
    path = Path(out_dir) / f"{name}-{exporter}{item.resolved_opset}.onnx"
    if path.exists():
        return path
    model, example = source_model(name), torch.from_numpy(sample_input(item, batch=1))
    tmp = path.with_suffix(".tmp.onnx")
    kwargs = dict(input_names=["input"], output_names=["output"], opset_version=item.resolved_opset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            shapes = ({0: torch.export.Dim("batch")},) if item.dynamic_batch else None
            torch.onnx.export(model, (example,), str(tmp), dynamo=True, external_data=False, verbose=False,
                              dynamic_shapes=shapes, **kwargs)
        else:
            axes = {"input": {0: "batch"}, "output": {0: "batch"}} if item.dynamic_batch else None
            torch.onnx.export(model, (example,), str(tmp), dynamo=False, dynamic_axes=axes, **kwargs)
    os.replace(tmp, path)
    return path


def export_keras_tf2onnx(name: str, out_dir: Path) -> Path:
    """Export a tf_keras zoo model with ``tf2onnx.convert.from_keras``: NHWC input named ``input``, dynamic batch.

    >>> export_keras_tf2onnx("keras_small_cnn", tmp_path).name
    'keras_small_cnn-tf2onnx15.onnx'
    """
    from edgeopt._tf import tf

    item = entry(name, exporter="tf2onnx")
    path = Path(out_dir) / f"{name}-tf2onnx{item.resolved_opset}.onnx"
    if path.exists():
        return path
    model = source_model(name)
    tf()  # tf2onnx imports TensorFlow itself: Keras 2 must be selected first
    import tf2onnx

    spec = (tf().TensorSpec((None, *item.input_shape[1:]), tf().float32, name="input"),)
    tmp = path.with_suffix(".tmp.onnx")
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=item.resolved_opset, output_path=str(tmp))
    os.replace(tmp, path)
    return path


_EXPORTED: dict[ZooEntry, Path] = {}


def zoo_model(item: ZooEntry, /, *, out_dir: Path) -> Path:
    """The ONNX file of a zoo entry in ``out_dir``, exported on first use and re-used after.

    >>> zoo_model(entry("mobilenet_v2", exporter="dynamo"), out_dir=tmp_path).suffix
    '.onnx'
    """
    # One export per process even when several test modules hand in different folders.
    if item in _EXPORTED and _EXPORTED[item].exists():
        return _EXPORTED[item]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    if item.exporter == "tf2onnx":
        path = export_keras_tf2onnx(item.name, out_dir)
    else:
        path = export_torch(item.name, out_dir, dynamo=item.exporter == "dynamo", opset=item.opset)
    _EXPORTED[item] = path
    return path
