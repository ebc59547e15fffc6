"""Quantization-aware training (QAT) with tensorflow-model-optimization's default 8-bit scheme.

:func:`quantize` wraps every layer of a tf_keras model for QAT: fake-quantized weights (per channel for convs,
per tensor for Dense) and activations with moving-average ranges, as ``tfmot.quantization.keras.quantize_model``
does. The default scheme refuses layers it does not know (``Multiply``, a lone ``BatchNormalization``, and every
custom layer of the ONNX importer); each such layer is annotated here with one of two QuantizeConfigs:

- :class:`OutputQuantizeConfig` for a layer that computes new values (hard-swish, SE multiply, a constant scale,
  normalization, a math function): its output gets a fake-quant with a learned range, like an activation. Its own
  weights, if any, stay float during training; the converter quantizes them.
- :class:`PassThroughQuantizeConfig` for a layer that only moves values (slices, splits, pads, reshapes,
  transposes, reverses): the int8 kernels keep the input's scale, so no range is learned. Recurrent layers and
  layers with several outputs get it too (scheme ``calibrated``): the converter calibrates them on the samples.

A linear conv or Dense read only by a layer the converter folds into it (hard-sigmoid, clip, a constant scale or
shift) keeps tfmot's weight fake-quant but not its output one (scheme ``weights``), so the fold still happens.

The model is then fine-tuned through the shared trainer (:func:`edgeopt.train.trainer.train`) and converted with
the learned ranges by :func:`to_int8`. Ranges the training did not learn (a layer left pass-through) come from the
calibration samples, so the file is full-integer all the same.

>>> qat_model, plan = quantize(model)  # doctest: +SKIP
>>> [p for p in plan if p["scheme"] != "default"][:1]  # doctest: +SKIP
[{'layer': 'hardswish_1', 'type': 'HardSwish', 'scheme': 'output'}]
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import numpy as np

from edgeopt._tf import keras
from edgeopt.errors import ConversionError

# Layers that only move or select values: int8 kernels carry the input's scale through them.
_PASS_THROUGH = {"Slice", "Split", "Pad", "Reverse", "Reshape", "Permute", "Flatten", "Cropping1D", "Cropping2D",
                 "ZeroPadding1D", "ZeroPadding2D", "RepeatVector", "Dropout", "SpatialDropout2D"}
# Layers whose outputs get no fake-quant although they compute (several outputs, or recurrent layers whose int8
# kernels the converter calibrates itself): their ranges come from the calibration samples at conversion.
_CALIBRATED = {"LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional"}
# Activations the default scheme's Activation config accepts (tfmot 0.8: Default8BitActivationQuantizeConfig)
_ACTIVATIONS = {"relu", "swish", "gelu", "relu6", "linear", "softmax", "sigmoid", "tanh"}

# Activations tfmot's QuantizeAwareActivation wraps inside a conv or Dense (tfmot 0.8)
_LAYER_ACTIVATIONS = {"linear", "relu", "swish", "gelu", "softmax", "sigmoid", "tanh", "NoOpActivation"}

_CLASSES: dict | None = None


_FOLDABLE = {"HardSigmoid", "Clip", "ConstantOp"}


def _single_reader_linear_conv(layer) -> bool:
    """Whether ``layer`` is a Conv2D, DepthwiseConv2D or Dense without activation whose output one layer reads
    (Conv2DTranspose excluded): the producer tfmot's conv transforms and the converter's folds expect."""
    k = keras()
    if not isinstance(layer, (k.layers.Conv2D, k.layers.DepthwiseConv2D, k.layers.Dense)) or \
            isinstance(layer, k.layers.Conv2DTranspose):
        return False
    return getattr(layer.activation, "__name__", "") == "linear" and len(getattr(layer, "_outbound_nodes", [])) == 1


def _folds_next(layer) -> bool:
    """Whether ``layer`` is a linear Conv2D, DepthwiseConv2D or Dense read only by a layer the converter folds into
    it (:data:`_FOLDABLE`; a ConstantOp only for add, sub and mul)."""
    if not _single_reader_linear_conv(layer):
        return False
    reader = layer._outbound_nodes[0].outbound_layer
    name = type(reader).__name__
    return name in _FOLDABLE and (name != "ConstantOp" or getattr(reader, "op", "") in ("add", "sub", "mul"))


def _weights_only_config(layer):
    """tfmot's config for ``layer`` without its output fake-quant (per-channel weights for convs)."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry)

    k = keras()
    if isinstance(layer, k.layers.DepthwiseConv2D):
        return registry.Default8BitConvQuantizeConfig(["depthwise_kernel"], [], False)
    if isinstance(layer, k.layers.Conv2D):
        return registry.Default8BitConvQuantizeConfig(["kernel"], [], False)
    return registry.Default8BitQuantizeConfig(["kernel"], [], False)


def _after_linear_conv(bn) -> bool:
    """Whether a BatchNormalization reads a Conv2D, DepthwiseConv2D or Dense without activation that feeds
    nothing else (the pattern of tfmot's conv + BatchNorm transforms)."""
    nodes = getattr(bn, "_inbound_nodes", [])
    if len(nodes) != 1:
        return False
    inbound = nodes[0].inbound_layers
    if isinstance(inbound, (list, tuple)):
        if len(inbound) != 1:
            return False
        inbound = inbound[0]
    return _single_reader_linear_conv(inbound)


def _config_classes() -> dict:
    """The two QuantizeConfig classes, defined once TensorFlow is loaded (importing edgeopt never imports TF)."""
    global _CLASSES
    if _CLASSES is not None:
        return _CLASSES
    import tensorflow_model_optimization as tfmot

    base = tfmot.quantization.keras.QuantizeConfig
    quantizers = tfmot.quantization.keras.quantizers

    class _NoWeights(base):
        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_config(self):
            return {}

    class OutputQuantizeConfig(_NoWeights):
        """Fake-quantize the layer's output (asymmetric, per tensor, 8 bits, moving-average range).

        ``quantize_output`` is the switch tfmot's transforms turn off where the next layer quantizes the same
        tensor (a Concatenate's inputs); it is part of the config, so a clone keeps it."""

        def __init__(self, quantize_output: bool = True):
            self.quantize_output = quantize_output

        def get_output_quantizers(self, layer):
            if not self.quantize_output:
                return []
            return [quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                      narrow_range=False)]

        def get_config(self):
            return {"quantize_output": self.quantize_output}

    class PassThroughQuantizeConfig(_NoWeights):
        """No fake-quant: the layer moves values, and its int8 kernel keeps the input's scale."""

        def get_output_quantizers(self, layer):
            return []

    _CLASSES = {"OutputQuantizeConfig": OutputQuantizeConfig, "PassThroughQuantizeConfig": PassThroughQuantizeConfig}
    return _CLASSES


def custom_objects() -> dict:
    """Everything a QAT model needs to be cloned or reloaded: edgeopt's QuantizeConfigs and custom layers."""
    from edgeopt.frontends.onnx import layers as importer_layers

    objects = dict(_config_classes())
    objects.update(importer_layers.custom_objects())
    return objects


@contextmanager
def quantize_scope():
    """tfmot's quantize scope with edgeopt's configs and layers: cloning and loading QAT models happen inside it."""
    import tensorflow_model_optimization as tfmot

    with tfmot.quantization.keras.quantize_scope(custom_objects()):
        yield


def scheme_of(layer, registry=None) -> str:
    """How :func:`quantize` treats ``layer``: ``default`` (tfmot's own scheme), ``output`` (a learned output range),
    ``pass-through`` (moves values: keeps its input's scale) or ``calibrated`` (no fake-quant in training: the
    converter calibrates the layer, e.g. recurrent layers and layers with several outputs). :func:`quantize` turns
    ``default`` into ``weights`` (tfmot's weight fake-quant, no output one) for a conv the next layer folds into.

    >>> scheme_of(keras().layers.Multiply())  # doctest: +SKIP
    'output'
    """
    import tensorflow_model_optimization as tfmot

    registry = registry or tfmot.quantization.keras.default_8bit.Default8BitQuantizeRegistry()
    name = type(layer).__name__
    k = keras()
    if isinstance(layer, k.layers.Activation):
        fn = getattr(layer.activation, "__name__", "")
        return "default" if fn in _ACTIVATIONS else "output"
    if isinstance(layer, k.layers.BatchNormalization) and _after_linear_conv(layer):
        return "default"  # tfmot's conv + BatchNorm transforms take the pair: folded into the conv at conversion
    if registry.supports(layer):
        fn = getattr(getattr(layer, "activation", None), "__name__", "linear")
        # a conv or Dense with an activation tfmot cannot wrap (relu6, elu, ...): its output range is learned
        return "default" if fn in _LAYER_ACTIVATIONS else "output"
    if name in _PASS_THROUGH:
        return "pass-through"
    if _outputs(layer) > 1 or name in _CALIBRATED:
        return "calibrated"
    return "output"


def _outputs(layer) -> int:
    try:
        out = layer.output
    except (AttributeError, ValueError):  # a layer used more than once has no single output
        return 1
    return len(out) if isinstance(out, (list, tuple)) else 1


def quantize(model):
    """(QAT model, plan): ``model`` with every layer annotated and wrapped for quantization-aware training, and
    one ``{"layer", "type", "scheme"}`` entry per layer (input layers left out). ``model`` is not changed."""
    import tensorflow_model_optimization as tfmot

    k = keras()
    q = tfmot.quantization.keras
    registry = q.default_8bit.Default8BitQuantizeRegistry()
    classes = _config_classes()
    plan: list[dict] = []
    for layer in model.layers:
        if isinstance(layer, k.layers.InputLayer):
            continue
        plan.append({"layer": layer.name, "type": type(layer).__name__, "scheme": scheme_of(layer, registry)})
    # a linear conv or Dense whose only reader is an affine-and-clip layer (hard-sigmoid, a constant scale or
    # shift, a clip): the converter folds that layer into the conv, so the conv's own output gets no fake-quant
    for p in plan:
        if p["scheme"] == "default" and _folds_next(model.get_layer(p["layer"])):
            p["scheme"] = "weights"
    schemes = {p["layer"]: p["scheme"] for p in plan}
    nested = [p["layer"] for p in plan if isinstance(model.get_layer(p["layer"]), k.Model)]
    if nested:
        raise ConversionError(f"QAT needs a flat model; layer {nested[0]!r} is a whole model inside it",
                              hint="export the model flat (or use PTQ: --int8 without --qat)")

    def annotate(layer):
        scheme = schemes.get(layer.name)
        if scheme == "output":
            return q.quantize_annotate_layer(layer, classes["OutputQuantizeConfig"]())
        if scheme in ("pass-through", "calibrated"):
            return q.quantize_annotate_layer(layer, classes["PassThroughQuantizeConfig"]())
        if scheme == "weights":
            return q.quantize_annotate_layer(layer, _weights_only_config(layer))
        if scheme == "default":
            return q.quantize_annotate_layer(layer)
        return layer

    qat = None
    with quantize_scope():
        for attempt in range(2):
            annotated = k.models.clone_model(model, clone_function=annotate)
            annotated.set_weights(model.get_weights())
            try:
                qat = q.quantize_apply(annotated)
                break
            except (ValueError, RuntimeError, TypeError) as exc:
                paired = [p for p in plan if p["type"] == "BatchNormalization" and p["scheme"] == "default"]
                if attempt == 0 and paired and "BatchNormalization" in str(exc):
                    for p in paired:  # a pair tfmot's transforms did not take: each BatchNorm learns its range
                        p["scheme"] = schemes[p["layer"]] = "output"
                    continue
                raise ConversionError(f"the model cannot be prepared for QAT: {str(exc).splitlines()[0][:300]}",
                                      hint="use PTQ (--int8 without --qat)") from None
    return qat, plan


def to_int8(qat_model, calib: Sequence[np.ndarray], *, input_names: Sequence[str], output_names: Sequence[str],
            io_type: str = "int8") -> bytes:
    """Full-integer `.tflite` bytes of a QAT model: the learned ranges, and ``calib`` (Keras-layout arrays, one per
    input) for any tensor without one."""
    from ..converter import to_tflite
    from .ptq import calibration_samples

    return to_tflite(qat_model, input_names=input_names, output_names=output_names, precision="int8",
                     representative=lambda: calibration_samples(calib, input_names), io_type=io_type,
                     per_channel=True)


def _weight_range(weight, quantizer, v) -> None:
    """The range a LastValueQuantizer records on its first training step (it starts at [-6, 6])."""
    w = np.asarray(weight.numpy(), np.float64)
    if getattr(quantizer, "per_axis", False):
        axes = tuple(range(w.ndim - 1))
        lo, hi = w.min(axis=axes), w.max(axis=axes)
    else:
        lo, hi = np.array(w.min()), np.array(w.max())
    lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
    if getattr(quantizer, "symmetric", False):
        hi = np.maximum(-lo, hi)
        lo = -hi
    v["min_var"].assign(np.broadcast_to(lo, v["min_var"].shape).astype(np.float32))
    v["max_var"].assign(np.broadcast_to(hi, v["max_var"].shape).astype(np.float32))


def _linear_output(layer):
    """The float tensor of ``layer`` (a conv or Dense with an activation) before its activation: a copy of the layer
    with a linear activation and the same weights, applied to the layer's input."""
    config = {**layer.get_config(), "activation": "linear", "name": f"{layer.name}_linear_probe"}
    copy = layer.__class__.from_config(config)
    out = copy(layer.input)
    copy.set_weights(layer.get_weights())
    return out


def initialise_ranges(qat_model, float_model, calib: Sequence[np.ndarray], *, batch: int = 32) -> int:
    """Set every activation range of ``qat_model`` to the min/max (0 included) of the matching tensor of
    ``float_model`` on ``calib``, as post-training calibration would, and every weight range to its weights';
    returns how many activation ranges were set.

    tfmot starts every range at [-6, 6] and moves it by an exponential average with decay 0.999, so a short
    fine-tuning would otherwise end with ranges that still remember the start: calibrated ranges make QAT start
    where PTQ ends. A range whose tensor the float model does not have (a layer tfmot's transforms made) keeps
    its start and learns.
    """
    import tensorflow_model_optimization as tfmot

    k = keras()
    q = tfmot.quantization.keras
    targets: list[tuple[object, object, object]] = []  # (float tensor, min var, max var)
    by_name = {layer.name: layer for layer in float_model.layers}
    for layer in qat_model.layers:
        if isinstance(layer, q.QuantizeWrapperV2) or type(layer).__name__.startswith("QuantizeWrapper"):
            inner = by_name.get(layer.layer.name)
            if inner is None or _outputs(inner) > 1:
                continue
            pairs = []
            out_vars = getattr(layer, "_output_quantizer_vars", None)
            if out_vars:
                pairs.append(out_vars)
            pre = []
            for act in getattr(layer, "_quantize_activations", []) or []:
                post = getattr(act, "_post_activation_vars", None)
                if post:
                    pairs.append(post)
                if getattr(act, "_pre_activation_vars", None):
                    pre.append(act._pre_activation_vars)
            for v in pairs:
                targets.append((inner.output, v["min_var"], v["max_var"]))
            if pre:  # softmax, sigmoid, tanh inside a layer quantize its input: the layer's linear output
                linear = _linear_output(inner)
                for v in pre:
                    targets.append((linear, v["min_var"], v["max_var"]))
            for weight, quantizer, v in getattr(layer, "_weight_vars", []) or []:
                _weight_range(weight, quantizer, v)
        elif type(layer).__name__ == "QuantizeLayer" and "min_var" in (getattr(layer, "quantizer_vars", None) or {}):
            # the input quantizer (it starts at [0, 0] and widens as it sees values): the range of the layer it reads
            inbound = layer._inbound_nodes[0].inbound_layers
            source = by_name.get((inbound[0] if isinstance(inbound, (list, tuple)) else inbound).name)
            if source is not None and _outputs(source) == 1:
                targets.append((source.output, layer.quantizer_vars["min_var"], layer.quantizer_vars["max_var"]))
    if not targets:
        return 0
    probe = k.Model(float_model.inputs, [t for t, _, _ in targets])
    lo = np.zeros(len(targets), np.float64)
    hi = np.zeros(len(targets), np.float64)
    n = len(calib[0])
    for s in range(0, n, batch):
        outs = probe([np.asarray(a[s:s + batch], np.float32) for a in calib] if len(calib) > 1
                     else np.asarray(calib[0][s:s + batch], np.float32), training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for i, o in enumerate(outs):
            o = np.asarray(o)
            lo[i] = min(lo[i], float(o.min()))
            hi[i] = max(hi[i], float(o.max()))
    for i, (_, vmin, vmax) in enumerate(targets):
        vmin.assign(np.full(vmin.shape, lo[i], np.float32))
        vmax.assign(np.full(vmax.shape, max(hi[i], lo[i] + 1e-6), np.float32))
    return len(targets)
