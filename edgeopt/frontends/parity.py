"""Import parity: the Keras model against onnxruntime on the original file, on the same inputs.

Errors are reported per output: ``max_abs_error``, ``mean_abs_error``, the output's ``scale`` (max |reference|)
and ``max_rel_error = max_abs_error / scale`` (relative to the output's scale, so a logit layer in the
hundreds and a probability layer in [0, 1] are judged alike). float16 models are compared with the same graph
evaluated in float32, so the numbers measure the import rather than fp16 rounding.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edgeopt.errors import ModelFileError, ParityError
from edgeopt.frontends.spec import ImportedModel


def _session(model_bytes: bytes):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def _float32_bytes(path: Path) -> tuple[bytes, bytes | None]:
    """The model as float32 (bytes), and the original bytes when it was float16 (else None)."""
    import onnx

    from edgeopt.frontends.onnx.fold import has_float16, to_float32

    raw = Path(path).read_bytes()
    model = onnx.load_model_from_string(raw)
    if not has_float16(model):
        return raw, None
    return to_float32(model).SerializeToString(), raw


def reference_outputs(path, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """onnxruntime's outputs for ``feeds`` (ONNX layout), float16 models evaluated in float32.

    >>> outs = reference_outputs("mnist.onnx", {"Input3": np.zeros((1, 1, 28, 28), np.float32)})  # doctest: +SKIP
    """
    try:
        model32, _ = _float32_bytes(Path(path))
        sess = _session(model32)
    except Exception as exc:
        raise ModelFileError(f"onnxruntime cannot load {path}: {str(exc)[:300]}") from None
    return [np.asarray(o, np.float32) for o in sess.run(None, {k: np.asarray(v, np.float32) for k, v in feeds.items()})]


def _fp16_drift(path: Path, feeds: Mapping[str, np.ndarray], ref: list[np.ndarray]) -> list[float] | None:
    """Max |fp16 - fp32| per output of the original float16 graph, for information."""
    _, raw16 = _float32_bytes(path)
    if raw16 is None:
        return None
    try:
        sess = _session(raw16)
        outs = sess.run(None, {k: np.asarray(v, np.float16) for k, v in feeds.items()})
    except Exception:
        return None
    return [float(np.max(np.abs(np.asarray(o, np.float32) - r))) for o, r in zip(outs, ref)]


def random_samples(imported: ImportedModel, *, n: int, seed: int) -> list[np.ndarray]:
    """Uniform [0, 1) inputs in ONNX layout, batch ``n`` (the range of normalised image pixels)."""
    rng = np.random.default_rng(seed)
    return [rng.random((n, *spec.onnx_shape[1:]), dtype=np.float32) for spec in imported.inputs]


def _keras_outputs(imported: ImportedModel, samples: Sequence[np.ndarray]) -> list[np.ndarray]:
    outs = imported.model(imported.to_keras_inputs(samples), training=False)
    if not isinstance(outs, (list, tuple)):
        outs = [outs]
    return imported.to_onnx_outputs([np.asarray(o) for o in outs])


def _compare(name: str, got: np.ndarray, ref: np.ndarray) -> dict:
    if got.size != ref.size:
        return {"name": name, "max_abs_error": float("inf"), "max_rel_error": float("inf"),
                "mean_abs_error": float("inf"), "scale": float(np.max(np.abs(ref))) if ref.size else 0.0,
                "shape_mismatch": [list(got.shape), list(ref.shape)]}
    diff = np.abs(got.reshape(ref.shape).astype(np.float64) - ref.astype(np.float64))
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    max_abs = float(diff.max()) if diff.size else 0.0
    return {"name": name, "max_abs_error": max_abs, "max_rel_error": max_abs / max(scale, 1e-12),
            "mean_abs_error": float(diff.mean()) if diff.size else 0.0, "scale": scale}


def check_parity(imported: ImportedModel, *, samples: Sequence[np.ndarray] | None = None, num_random: int = 4,
                 seed: int = 0, tolerance: float = 1e-4, raise_on_fail: bool = True) -> dict:
    """Compare the imported Keras model with onnxruntime on ``samples`` (or ``num_random`` random inputs).

    ``samples``: one ONNX-layout array per input, batch N. Random inputs are uniform in [0, 1).

    >>> report = check_parity(load_model("mnist.onnx"))  # doctest: +SKIP
    >>> report["passed"], report["outputs"][0]["max_rel_error"] < 1e-4
    (True, True)
    """
    import onnxruntime as ort

    if samples is None:
        samples = random_samples(imported, n=num_random, seed=seed)
    samples = [np.asarray(s, np.float32) for s in samples]
    n = int(samples[0].shape[0]) if samples else 0
    if imported.source_format != "onnx":
        return {"tolerance": tolerance, "passed": None, "outputs": [], "samples": n, "reference": None,
                "note": "the source is a Keras model: there is no ONNX reference to compare with"}
    feeds = {spec.name: s for spec, s in zip(imported.inputs, samples)}
    ref = _ref_batched(imported.source, feeds, n)
    got = _keras_outputs(imported, samples)
    outputs = [_compare(spec.name, g, r) for spec, g, r in zip(imported.outputs, got, ref)]
    drift = _fp16_drift(imported.source, {k: v[:1] for k, v in feeds.items()}, [r[:1] for r in ref])
    report = {"tolerance": tolerance, "passed": all(o["max_rel_error"] <= tolerance for o in outputs),
              "outputs": outputs, "samples": n, "reference": f"onnxruntime {ort.__version__}"}
    if drift is not None:
        report["float16_vs_float32_max_abs"] = drift
        report["note"] = "float16 model: reference evaluated in float32"
    if raise_on_fail and not report["passed"]:
        worst = max(outputs, key=lambda o: o["max_rel_error"])
        raise ParityError(f"imported model differs from onnxruntime on output '{worst['name']}': max_rel_error "
                          f"{worst['max_rel_error']:.3g} > tolerance {tolerance:g} (max_abs_error "
                          f"{worst['max_abs_error']:.3g}, output scale {worst['scale']:.3g})",
                          hint="report the model; the per-op parity tests show which op family is off")
    return report


def _ref_batched(path: Path, feeds: Mapping[str, np.ndarray], n: int) -> list[np.ndarray]:
    """Reference outputs for a batch; models with a fixed batch of 1 are run one sample at a time."""
    try:
        return reference_outputs(path, feeds)
    except Exception:
        if n <= 1:
            raise
    per = [reference_outputs(path, {k: v[i:i + 1] for k, v in feeds.items()}) for i in range(n)]
    return [np.concatenate([p[j] for p in per]) for j in range(len(per[0]))]
