"""The models users bring: small but structurally faithful PP-OCR det/cls/rec, YOLOv8n, MTCNN R-Net/O-Net, CRNN
and MobileNetV3-Small, exported to ONNX as their projects export them (torchscript exporter; Paddle2ONNX's form of
Constant-node weights, Paddle tensor names and dynamic axes for the PP-OCR models).

Weights are seeded, and LayerNorm, PReLU and PP-LCNetV3's affine scalars are randomised, so a dropped or
mis-ordered parameter shows up as a parity error. Every BatchNorm has a random affine part and running statistics
measured in one batch on :func:`zoo.real_data.training_array`, 128 samples made by the model's own preprocessing
from the calibration photos only: activations keep unit scale on real inputs, as after training. Statistics measured
on random pixels instead (as :mod:`zoo.torch_models` does) let activations grow to 30-50x on real photos through
YOLOv8n, whose box outputs then differ between any two float32 runtimes by 1e-4 of their scale. Calibration data for
each entry: :mod:`zoo.real_data`.

    >>> item = real_entry("ppocr_cls-paddle14")
    >>> real_model(item, out_dir=tmp_path).name
    'ppocr_cls-paddle14.onnx'
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import onnx
import torch
from torch import nn

from . import face_text_models, ppocr_models, torch_models, yolo_models
from .paddle_style import initializers_as_constants
from .real_data import training_array


@dataclass(frozen=True)
class Architecture:
    """A builder and the logit statistics of its heads.

    Fresh heads give near-uniform softmaxes (a 97-class CTC head: every probability near 0.01) and sigmoid maps
    near 0.5, on which any quantization error looks small. ``heads`` maps each head layer (a module path) to the
    (mean, std) its outputs are rescaled to on the training samples, the confident logits of a trained model:
    e.g. the detector's text map mostly near 0 with confident text regions, sigmoid(-2 +- 3).
    """

    builder: Callable[[], nn.Module]
    heads: dict[str, tuple[float, float]]


_DB_HEAD = {"head.body.6": (-2.0, 3.0)}
_YOLO_HEADS = {**{f"detect.cv2.{i}.2": (0.0, 2.0) for i in range(3)},  # box distance bins
               **{f"detect.cv3.{i}.2": (-4.0, 2.0) for i in range(3)}}  # class logits: most anchors background

ARCHITECTURES: dict[str, Architecture] = {
    "ppocr_det_v4": Architecture(lambda: ppocr_models.DBNet(act=nn.Hardswish), _DB_HEAD),
    "ppocr_det_v5": Architecture(lambda: ppocr_models.DBNet(act=nn.GELU), _DB_HEAD),
    "ppocr_cls": Architecture(ppocr_models.DirectionClassifier, {"fc": (0.0, 2.0)}),
    "ppocr_rec_v4": Architecture(ppocr_models.SVTRRecognizer, {"fc": (0.0, 3.0)}),
    "yolov8n": Architecture(lambda: yolo_models.YOLOv8(image_size=128), _YOLO_HEADS),
    "mtcnn_rnet": Architecture(face_text_models.RNet, {"prob": (0.0, 2.0)}),
    "mtcnn_onet": Architecture(face_text_models.ONet, {"prob": (0.0, 2.0)}),
    "crnn": Architecture(face_text_models.CRNN, {"rnn.1.embedding": (0.0, 3.0)}),
    "dbnet_mobilenet_v3": Architecture(lambda: ppocr_models.DBNet(backbone="mobilenet_v3"), _DB_HEAD),
    "pp_lcnet": Architecture(ppocr_models.LCNetClassifier, {"fc": (0.0, 3.0)}),
    "mobilenet_v3_small": Architecture(lambda: torch_models.MobileNetV3Small(num_classes=1000),
                                       {"classifier.3": (0.0, 3.0)}),
}


@dataclass(frozen=True)
class RealModel:
    """One exported file: the architecture, its input, how its calibration data is made, and the export form."""

    name: str  # a key of ARCHITECTURES
    input_shape: tuple[int, ...]  # batch 1
    data: str  # a key of zoo.real_data.MAKERS: the model's own preprocessing
    opset: int = 17
    paddle: bool = False  # Paddle2ONNX form: Constant-node weights
    input_name: str = "input"
    output_names: tuple[str, ...] = ("output",)
    dynamic_in: tuple[int, ...] = ()  # dynamic input axes
    dynamic_out: tuple[int, ...] = ()  # dynamic axes of every output

    @property
    def id(self) -> str:
        return f"{self.name}-{'paddle' if self.paddle else 'torchscript'}{self.opset}"

    @property
    def import_params(self) -> dict:
        """What a user must tell edgeopt about the file: the static shape of inputs with dynamic H, W."""
        if set(self.dynamic_in) - {0}:
            return {"input_shape": (f"{self.input_name}:{','.join(map(str, self.input_shape))}",)}
        return {}


_DET = dict(input_name="x", output_names=("sigmoid_0.tmp_0",))
_CLS = dict(input_name="x", output_names=("softmax_0.tmp_0",))
_REC = dict(input_name="x", output_names=("softmax_2.tmp_0",))

REAL_MODELS: list[RealModel] = [
    RealModel("ppocr_det_v4", (1, 3, 128, 128), "ppocr_det", **_DET),
    # PaddleOCR's exported det models take any batch and any H, W (multiples of 32).
    RealModel("ppocr_det_v4", (1, 3, 128, 128), "ppocr_det", opset=14, paddle=True, dynamic_in=(0, 2, 3),
              dynamic_out=(0, 2, 3), **_DET),
    RealModel("ppocr_det_v5", (1, 3, 128, 128), "ppocr_det", **_DET),  # GELU as x * 0.5 * (1 + erf(x / sqrt 2))
    RealModel("ppocr_det_v5", (1, 3, 128, 128), "ppocr_det", opset=20, **_DET),  # GELU as one Gelu node
    RealModel("ppocr_cls", (1, 3, 48, 192), "ppocr_cls", **_CLS),
    RealModel("ppocr_cls", (1, 3, 48, 192), "ppocr_cls", opset=14, paddle=True, dynamic_in=(0,), dynamic_out=(0,),
              **_CLS),
    RealModel("ppocr_rec_v4", (1, 3, 48, 192), "ppocr_rec", **_REC),  # LayerNormalization (opset 17)
    RealModel("ppocr_rec_v4", (1, 3, 48, 192), "ppocr_rec", opset=14, paddle=True, dynamic_in=(0,),
              dynamic_out=(0,), **_REC),  # LayerNorm spelt ReduceMean, Sub, Pow, Sqrt, Div
    RealModel("yolov8n", (1, 3, 128, 128), "letterbox", input_name="images", output_names=("output0",)),
    RealModel("mtcnn_rnet", (1, 3, 24, 24), "mtcnn", output_names=("box", "prob")),
    RealModel("mtcnn_onet", (1, 3, 48, 48), "mtcnn", output_names=("box", "landmarks", "prob")),
    RealModel("crnn", (1, 1, 32, 100), "crnn"),
    RealModel("mobilenet_v3_small", (1, 3, 96, 96), "imagenet"),
]


def real_entry(entry_id: str, /) -> RealModel:
    """The REAL_MODELS entry with this id, e.g. ``"yolov8n-torchscript17"``."""
    for item in REAL_MODELS:
        if item.id == entry_id:
            return item
    raise KeyError(f"no real-model entry {entry_id!r}; known: {', '.join(i.id for i in REAL_MODELS)}")


def _randomize_extras(model: nn.Module) -> None:
    """Random LayerNorm affine parts, PReLU slopes and PP-LCNetV3 affine scalars (fresh ones are 1, 0, 0.25)."""
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, 0.0, 0.2)
        elif isinstance(m, nn.PReLU):
            nn.init.uniform_(m.weight, 0.05, 0.5)
        elif isinstance(m, ppocr_models.LearnableAffine):
            nn.init.uniform_(m.scale, 0.8, 1.2)
            nn.init.normal_(m.bias, 0.0, 0.1)


def _rescale_heads(model: nn.Module, heads: dict[str, tuple[float, float]], sample: torch.Tensor) -> None:
    """Scale and shift each head's weight and bias so its outputs on ``sample`` have the given mean and std."""
    layers = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    hooks = [layers[name].register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o))
             for name in heads]
    with torch.no_grad():
        model(sample)
        for hook in hooks:
            hook.remove()
        for name, (mean, std) in heads.items():
            k = std / float(seen[name].std())
            layers[name].weight.mul_(k)  # y' = k (y - mean(y)) + mean
            layers[name].bias.copy_(k * (layers[name].bias - float(seen[name].mean())) + mean)


@lru_cache(maxsize=None)
def build(item: RealModel, /, *, seed: int = 0) -> nn.Module:
    """The seeded torch model behind an entry, in eval mode, built once (the global torch RNG is left untouched)."""
    arch = ARCHITECTURES[item.name]
    sample = torch.from_numpy(training_array(item))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = arch.builder()
        with torch.no_grad():
            _randomize_extras(model)
        # One batch: the statistics are the sample's own (an average of small-batch ones misses between-batch spread)
        torch_models.settle_batchnorm(model, sample, batch=len(sample))
        _rescale_heads(model, arch.heads, sample)
    return model


def export(item: RealModel, path: Path) -> Path:
    """Export an entry with the torchscript exporter to ``path`` (written under a temporary name, then renamed)."""
    model = build(item)
    example = torch.zeros(item.input_shape)
    axes = {item.input_name: {a: f"p2o.DynamicDimension.{i}" for i, a in enumerate(item.dynamic_in)}}
    axes.update({name: {a: f"p2o.DynamicDimension.{i}" for i, a in enumerate(item.dynamic_out)}
                 for name in item.output_names})
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(tmp), dynamo=False, opset_version=item.opset,
                          input_names=[item.input_name], output_names=list(item.output_names),
                          dynamic_axes=axes if item.dynamic_in else None)
    if item.paddle:
        onnx.save(initializers_as_constants(onnx.load(str(tmp))), str(tmp))
    os.replace(tmp, path)
    return path


_EXPORTED: dict[RealModel, Path] = {}


def real_model(item: RealModel, /, *, out_dir: Path) -> Path:
    """The ONNX file of an entry in ``out_dir``, exported on first use and re-used after (also across folders)."""
    if item in _EXPORTED and _EXPORTED[item].exists():
        return _EXPORTED[item]
    # "real-": the session's zoo folder also holds the classifier zoo, whose mobilenet_v3_small-torchscript17 is
    # another model (64x64, 10 classes)
    path = Path(out_dir) / f"real-{item.id}.onnx"
    if not path.exists():
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        export(item, path)
    _EXPORTED[item] = path
    return path
