"""Import parity: the Keras model against onnxruntime on the original file, on the same inputs.

Errors are reported per output: ``max_abs_error``, ``mean_abs_error``, the output's ``scale`` (max |reference|)
and ``max_rel_error = max_abs_error / max(scale, ABS_FLOOR)``: relative to the output's scale, so a logit layer in
the hundreds and a probability layer in [0, 1] are judged alike, and absolute below ``ABS_FLOOR`` (a sigmoid map
at 1e-5 everywhere is judged by an absolute error of at most ``tolerance * ABS_FLOOR``, 1e-6 at the default
tolerance, not by a relative error that float32 rounding alone can push to 1e-2).

An output that random inputs leave almost constant (its spread over the samples below ``FLAT_SPREAD`` of its
scale) says little about the import; on random inputs such an output is marked ``inconclusive`` instead of
failing, and the report asks for real data. float16 models are compared with the same graph evaluated in
float32, so the numbers measure the import rather than fp16 rounding.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edgeopt.errors import ModelFileError, ParityError
from edgeopt.frontends.spec import ImportedModel


ABS_FLOOR = 1e-2  # outputs smaller than this are judged by absolute error
FLAT_SPREAD = 1e-3  # max - min over the samples below this fraction of the scale: a near-constant output


def _session(model_bytes: bytes):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def _float32_bytes(path: Path) -> tuple[bytes | None, bytes | None]:
    """The float32 graph the importer maps and the original, as bytes, when they differ (a float16 model, or a
    QDQ model whose activation fake-quantization the importer removes); (None, None) when the file is that graph.

    External weight files are read from beside ``path``, wherever the command runs.
    """
    from edgeopt.frontends.onnx.fold import has_float16, to_float32
    from edgeopt.frontends.onnx.loader import read
    from edgeopt.frontends.onnx.patterns import strip_activation_qdq

    original = read(Path(path))
    f16 = has_float16(original)
    model = to_float32(original) if f16 else original  # both rewrites return copies
    model, pairs, _ = strip_activation_qdq(model)
    if not (f16 or pairs):
        return None, None
    return model.SerializeToString(), original.SerializeToString()


@lru_cache(maxsize=4)
def _reference_session(path: str, mtime: float):
    """One onnxruntime session per model file (and version of it): the float32 graph the importer maps.

    A file that needs no rewriting is opened by path, so external weights (and models over 2 GB) load from
    beside it.
    """
    model32, _ = _float32_bytes(Path(path))
    return _session(path if model32 is None else model32)


def reference_session(path):
    """The cached onnxruntime session of ``path`` (re-created when the file changes); ModelFileError when it
    cannot be loaded."""
    try:
        p = Path(path).resolve()
        return _reference_session(str(p), p.stat().st_mtime)
    except Exception as exc:
        raise ModelFileError(f"onnxruntime cannot load {path}: {str(exc)[:300]}") from None


def reference_outputs(path, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """onnxruntime's outputs for ``feeds`` (ONNX layout), float16 models evaluated in float32.

    >>> outs = reference_outputs("mnist.onnx", {"Input3": np.zeros((1, 1, 28, 28), np.float32)})  # doctest: +SKIP
    """
    sess = reference_session(path)
    return [np.asarray(o, np.float32) for o in sess.run(None, {k: np.asarray(v, np.float32) for k, v in feeds.items()})]


def _original_drift(path: Path, feeds: Mapping[str, np.ndarray], ref: list[np.ndarray]) -> tuple[str, list] | None:
    """(kind, max |original - float32 graph| per output) for a float16 or QDQ original, for information."""
    _, raw = _float32_bytes(path)
    if raw is None:
        return None
    try:
        sess = _session(raw)
        types = {i.name: i.type for i in sess.get_inputs()}
        f16 = any(t == "tensor(float16)" for t in types.values())
        outs = sess.run(None, {k: np.asarray(v, np.float16 if types.get(k) == "tensor(float16)" else np.float32)
                               for k, v in feeds.items()})
    except Exception:
        return None
    return ("float16" if f16 else "qdq",
            [float(np.max(np.abs(np.asarray(o, np.float32) - r))) for o, r in zip(outs, ref)])


def random_samples(imported: ImportedModel, *, n: int, seed: int) -> list[np.ndarray]:
    """Uniform [0, 1) inputs in ONNX layout, batch ``n`` (the range of normalised image pixels)."""
    rng = np.random.default_rng(seed)
    out = []
    for spec in imported.inputs:
        shape = list(spec.onnx_shape)
        shape[spec.perm[0] if spec.perm else 0] = n  # the batch axis (1 for a sequence-first [T, B, C] input)
        out.append(rng.random(shape, dtype=np.float32))
    return out


def _keras_outputs(imported: ImportedModel, samples: Sequence[np.ndarray]) -> list[np.ndarray]:
    outs = imported.model(imported.to_keras_inputs(samples), training=False)
    if not isinstance(outs, (list, tuple)):
        outs = [outs]
    return imported.to_onnx_outputs([np.asarray(o) for o in outs])


def _compare(name: str, got: np.ndarray, ref: np.ndarray) -> dict:
    """Errors of one output; ``spread`` is max - min of the reference over all samples and elements.

    >>> _compare("p", np.full((2, 3), 1e-5 + 1e-7), np.full((2, 3), 1e-5))["max_rel_error"] < 1e-4
    True
    """
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    spread = float(np.ptp(ref)) if ref.size else 0.0
    if got.size != ref.size:
        return {"name": name, "max_abs_error": float("inf"), "max_rel_error": float("inf"),
                "mean_abs_error": float("inf"), "scale": scale, "spread": spread,
                "shape_mismatch": [list(got.shape), list(ref.shape)]}
    diff = np.abs(got.reshape(ref.shape).astype(np.float64) - ref.astype(np.float64))
    max_abs = float(diff.max()) if diff.size else 0.0
    return {"name": name, "max_abs_error": max_abs, "max_rel_error": max_abs / max(scale, ABS_FLOOR),
            "mean_abs_error": float(diff.mean()) if diff.size else 0.0, "scale": scale, "spread": spread}


def check_parity(imported: ImportedModel, *, samples: Sequence[np.ndarray] | None = None, num_random: int = 4,
                 seed: int = 0, tolerance: float = 1e-4, raise_on_fail: bool = True) -> dict:
    """Compare the imported Keras model with onnxruntime on ``samples`` (or ``num_random`` random inputs).

    ``samples``: one ONNX-layout array per input, batch N. Random inputs are uniform in [0, 1).

    >>> report = check_parity(load_model("mnist.onnx"))  # doctest: +SKIP
    >>> report["passed"], report["outputs"][0]["max_rel_error"] < 1e-4
    (True, True)
    """
    import onnxruntime as ort

    random = samples is None
    if random:
        samples = random_samples(imported, n=num_random, seed=seed)
    samples = [np.asarray(s, np.float32) for s in samples]
    n = int(samples[0].shape[0]) if samples else 0
    if imported.source_format != "onnx":
        return {"tolerance": tolerance, "passed": None, "outputs": [], "samples": n, "reference": None,
                "note": "the source is a Keras model: there is no ONNX reference to compare with"}
    feeds = {spec.name: s for spec, s in zip(imported.inputs, samples)}
    axes = [spec.perm[0] if spec.perm else 0 for spec in imported.outputs]  # where each output has its batch
    ref = _ref_batched(imported.source, feeds, n, axes)
    got = _keras_outputs(imported, samples)
    outputs = [_compare(spec.name, g, r) for spec, g, r in zip(imported.outputs, got, ref)]
    drift = _original_drift(imported.source, {k: v[:1] for k, v in feeds.items()}, [r[:1] for r in ref])
    flat = []
    for o in outputs:
        if random and n > 1 and o["max_rel_error"] > tolerance and o["spread"] < FLAT_SPREAD * max(o["scale"], 1e-30):
            o["inconclusive"] = True
            flat.append(o["name"])
    judged = [o for o in outputs if not o.get("inconclusive")]
    report = {"tolerance": tolerance, "passed": all(o["max_rel_error"] <= tolerance for o in judged) if judged
              else None, "outputs": outputs, "samples": n, "inputs": "random" if random else "data",
              "reference": f"onnxruntime {ort.__version__}"}
    notes = []
    if drift is not None and drift[0] == "float16":
        report["float16_vs_float32_max_abs"] = drift[1]
        notes.append("float16 model: reference evaluated in float32")
    elif drift is not None:
        report["qdq_vs_float32_max_abs"] = drift[1]
        notes.append("QDQ model: reference is the same graph without its activation fake-quantization")
    if flat:
        report["inconclusive"] = flat
        notes.append(f"random inputs give near-constant values on output(s) {', '.join(flat)}, so parity there "
                     "cannot be judged; pass --calib with real inputs to check it")
    if notes:
        report["note"] = "; ".join(notes)
    if raise_on_fail and report["passed"] is False:
        worst = max(judged, key=lambda o: o["max_rel_error"])
        raise ParityError(f"imported model differs from onnxruntime on output '{worst['name']}': max_rel_error "
                          f"{worst['max_rel_error']:.3g} > tolerance {tolerance:g} (max_abs_error "
                          f"{worst['max_abs_error']:.3g}, output scale {worst['scale']:.3g})",
                          hint="report the model; the per-op parity tests show which op family is off")
    return report


def _ref_batched(path: Path, feeds: Mapping[str, np.ndarray], n: int, batch_axes: Sequence[int]) -> list[np.ndarray]:
    """Reference outputs for a batch; models with a fixed batch of 1 are run one sample at a time, and their
    outputs joined on each output's batch axis (a sequence-first output ``[T, B, C]`` has it at 1)."""
    try:
        return reference_outputs(path, feeds)
    except Exception:
        if n <= 1:
            raise
    per = [reference_outputs(path, {k: v[i:i + 1] for k, v in feeds.items()}) for i in range(n)]
    return [np.concatenate([p[j] for p in per], axis=batch_axes[j]) for j in range(len(per[0]))]
