"""Runs a list of stages on a model, records the lineage, writes the output and its report.

This is the one path behind ``edgeopt compress``, ``edgeopt run recipe.toml`` and :func:`edgeopt.compress`.
"""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ._tf import keras
from .artifact import Artifact, Step
from .console import quieted, status
from .context import Context
from .errors import EdgeoptError, ModelFileError, OutputError, ReportIncompleteError
from .params import DataParams, ReportParams, TrainParams
from .profiling import recording, step
from .registry import lookup, make_params


@dataclass(frozen=True)
class StageCall:
    """One entry of a recipe: a stage name and its parameter values (checked against the stage's Params)."""

    use: str
    values: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    """What a run made: the final artifact, the output path, the report (None without one) and its files, and
    ``profile``: the seconds of each step (:mod:`edgeopt.profiling`), the report writing included."""

    artifact: Artifact
    output: Path | None
    report: dict | None
    report_paths: tuple[Path, ...] = ()
    profile: dict | None = None
    training: dict | None = None  # what the last training stage did (history, strategy, weights digest)
    pruning: dict | None = None  # what the last pruning stage removed (MACs, params, widths per group)
    distillation: dict | None = None  # the student, teacher and student params, MACs and accuracy


def source_artifact(path: str | Path) -> Artifact:
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"model file {p} does not exist")
    if p.is_dir():
        fmt = "keras"  # a SavedModel directory
    else:
        fmt = "onnx" if p.suffix.lower() == ".onnx" else "keras" if p.suffix.lower() in (".h5", ".keras") else "onnx"
    size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    return Artifact(path=p, format=fmt, metrics={"size_bytes": size})


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("edgeopt", "tensorflow", "tf_keras", "onnx", "onnxruntime", "ai-edge-litert"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def resolve(calls: Sequence[StageCall]) -> list[tuple[Any, Any]]:
    """(StageSpec, Params) per call; every unknown stage or key is reported before anything runs."""
    return [(lookup(c.use), make_params(lookup(c.use), c.values, where=f"stage {i + 1}")) for i, c in enumerate(calls)]


def run(
    model: str | Path,
    calls: Sequence[StageCall],
    *,
    output: str | Path | None = None,
    data: DataParams = DataParams(),
    report: ReportParams | None = ReportParams(),
    quiet: bool = False,
    save_keras: str | Path | None = None,
) -> RunResult:
    """Run ``calls`` on ``model``; write the final artifact to ``output`` and, when asked, its report beside it.

    The output is written before the report is measured, so a failed measurement never costs the model: the report
    says what is missing and :class:`ReportIncompleteError` (carrying this RunResult) is raised at the end.
    ``quiet`` hides spinners, progress bars and warnings. ``save_keras`` also keeps the run's last Keras model
    (the fine-tuned one, when a stage trained). Stages that train keep a checkpoint per epoch in ``OUT.ckpt/``
    (removed when the run completes); on a multi-worker run only the chief writes the output, the report and
    ``save_keras``.

    >>> run("model.onnx", [StageCall("import"), StageCall("quantize.ptq")], output="m_int8.tflite")  # doctest: +SKIP
    """
    resolved = resolve(calls)
    out = None if output is None else _checked_output(Path(output), Path(model), resolved)
    keep = None if save_keras is None else _checked_keras_copy(Path(save_keras), Path(model), out)
    _check_data(data, resolved)
    artifact = source_artifact(model)
    workdir = Path(tempfile.mkdtemp(prefix="edgeopt-"))
    training = [p for _, p in resolved if isinstance(p, TrainParams)]
    try:
        with quieted(quiet), recording() as prof:
            ctx = Context(workdir=workdir, data=data, quiet=quiet, history=[artifact])
            if training:
                ctx.split = (training[0].val_split, training[0].seed)
                ctx.checkpoint_root = None if out is None else out.with_name(out.name + ".ckpt")
            with status("loading TensorFlow", step="load TensorFlow"):
                keras()  # once, up front: the import stage and the converter need it
                for p in training:  # collective ops are set up before TensorFlow runs anything
                    if p.strategy == "multi-worker":
                        from .train.strategy import prepare

                        prepare(p.strategy)
            artifact = _run_stages(artifact, resolved, ctx)
            rep, paths = None, ()
            if ctx.chief:  # the other workers of a multi-worker run write nothing
                if out is not None:
                    _write_output(artifact, out)
                if keep is not None:
                    _write_output(_last_keras(ctx), keep)
                rep, paths = _report(ctx, artifact, out, report, prof)
        trained = [a.metrics["training"] for a in ctx.history if a.metrics.get("training")]
        pruned = [a.metrics["pruning"] for a in ctx.history if a.metrics.get("pruning")]
        distilled = [a.metrics["distillation"] for a in ctx.history if a.metrics.get("distillation")]
        result = RunResult(artifact=artifact, output=out if ctx.chief else None, report=rep, report_paths=paths,
                           profile=prof.to_dict(), training=trained[-1] if trained else None,
                           pruning=pruned[-1] if pruned else None,
                           distillation=distilled[-1] if distilled else None)
        if ctx.chief and ctx.checkpoint_root is not None and not any(p.checkpoint_dir for p in training):
            shutil.rmtree(ctx.checkpoint_root, ignore_errors=True)  # the run is complete: nothing left to resume
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if rep is not None and rep["incomplete"]:
        raise _incomplete(result)
    return result


def _last_keras(ctx: Context) -> Artifact:
    return next(a for a in reversed(ctx.history) if a.format == "keras")


def _checked_keras_copy(path: Path, model: Path, out: Path | None) -> Path:
    from .outputs import check_not_input, check_writable

    check_not_input(path, model, suggestion=model.with_name(model.stem + "_trained.keras"))
    if out is not None and path.resolve() == out.resolve():
        raise OutputError(f"--save-keras {path} is the output itself", hint="give it another name")
    if path.suffix.lower() not in (".keras", ".h5"):
        raise OutputError(f"--save-keras {path} should end in .keras or .h5")
    check_writable(path)
    return path


def _check_data(data: DataParams, resolved) -> None:
    """Training data without a stage that trains is a mistake worth saying before any work."""
    from .errors import RecipeError

    trains = any(isinstance(p, TrainParams) for _, p in resolved)
    needs = [spec.name for spec, p in resolved if isinstance(p, TrainParams) and p.needs_data]
    if data.data is not None and not trains:
        raise RecipeError("--data is training data, and no stage of this run trains",
                          hint="add --finetune to train on it, or give the data as --calib (calibration) or "
                               "--val (accuracy)")
    if needs and data.data is None:
        raise RecipeError(f"this run trains ({', '.join(needs)}) and has no training data",
                          hint="give --data DATA, with --labels FILE unless the data carries its labels")


def makes_keras(name: str) -> bool:
    """Whether the stage ``name`` hands on a Keras model (import, training) rather than a .tflite."""
    return not name.startswith(("convert.", "quantize."))


def _checked_output(out: Path, model: Path, resolved) -> Path:
    """Refuse, before any work, an output that is the input, that cannot be written or has the wrong suffix."""
    from .outputs import check_not_input, check_writable, default_output

    last = resolved[-1] if resolved else None
    precision = "keras" if last is None or makes_keras(last[0].name) else getattr(last[1], "precision", "int8")
    check_not_input(out, model, suggestion=default_output(model, precision))
    check_writable(out)
    _check_suffix(out, resolved)
    return out


def _run_stages(artifact: Artifact, resolved, ctx: Context) -> Artifact:
    """Run each stage, timed under its name, and append its Step to the lineage."""
    versions = _versions()
    input_hash = artifact.hash()
    for spec, params in resolved:
        t0 = time.perf_counter()
        with step(spec.name):
            new = spec.fn(artifact, params, ctx)
        output_hash = new.hash()  # each file is hashed once: this output is the next stage's input
        lineage_step = Step(stage=spec.name, params=dataclasses.asdict(params), input_hash=input_hash,
                            output_hash=output_hash, versions=versions, seconds=time.perf_counter() - t0)
        artifact = new.evolve(lineage=artifact.lineage + (lineage_step,))
        input_hash = output_hash
        ctx.history.append(artifact)
    return artifact


def _report(ctx: Context, artifact: Artifact, out: Path | None, params: ReportParams | None, prof):
    """Build the report of a `.tflite` run and write its files beside ``out``; (None, ()) when there is none."""
    if params is None or artifact.format != "tflite":
        return None, ()
    from .report import build_report, write_report

    rep = build_report(ctx, params=params)
    if out is None:
        return rep, ()
    rep["output"] = str(out)
    with step("report files"):
        paths = write_report(rep, out, profile=prof)
    return rep, paths


def _incomplete(result: RunResult) -> ReportIncompleteError:
    """The error that ends a run whose output was written but whose report misses some measurements."""
    failed = result.report["incomplete"]
    what = "; ".join(f"{f['step']} failed ({f['error']})" for f in failed)
    if result.output is not None:
        files = ", ".join(str(p) for p in result.report_paths[:2])
        message = f"the report is incomplete: {what}. The model itself was written to {result.output}"
        hint = f"{files} say which measurements are missing; {_remedy(failed, result.output)}"
    else:
        message = f"the report is incomplete: {what}"
        hint = _remedy(failed, None)
    return ReportIncompleteError(message, hint=hint, result=result)


def _remedy(failed: list[dict], output: Path | None) -> str:
    steps = {f["step"] for f in failed}
    if "delegates" in steps:
        return "--no-delegates skips the delegate analysis"
    if "latency" in steps and output is not None:
        return f"measure the latency separately with `edgeopt bench {output}`"
    if "plot" in steps and output is not None:
        return f"check that {output.with_name(output.stem + '.report.svg')} can be written"
    return "rerun with the same command to see whether the failure repeats"


def _check_suffix(out: Path, resolved) -> None:
    last_is_keras = not resolved or makes_keras(resolved[-1][0].name)
    want = (".keras", ".h5") if last_is_keras else (".tflite",)
    if out.suffix.lower() not in want:
        raise OutputError(f"output {out} should end in {' or '.join(want)} for this pipeline")


def _write_output(artifact: Artifact, out: Path) -> None:
    from .outputs import atomic_path

    if artifact.format == "tflite":
        with atomic_path(out) as tmp:
            shutil.copyfile(artifact.path, tmp)
        return
    # Keras picks the format from the suffix, so save under the real suffix in a private folder, then rename.
    tmpdir = Path(tempfile.mkdtemp(prefix=".edgeopt-", dir=out.parent))
    try:
        tmp = tmpdir / out.name
        try:
            artifact.model.save(tmp)
        except Exception as exc:
            raise EdgeoptError(f"cannot save the Keras model to {out}: {exc}") from None
        tmp.replace(out)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
