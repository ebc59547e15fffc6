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

from .artifact import Artifact, Step
from .context import Context
from .errors import EdgeoptError, ModelFileError, OutputError
from .params import DataParams, ReportParams
from .registry import lookup, make_params


@dataclass(frozen=True)
class StageCall:
    """One entry of a recipe: a stage name and its parameter values (checked against the stage's Params)."""

    use: str
    values: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    artifact: Artifact
    output: Path | None
    report: dict | None
    report_paths: tuple[Path, ...] = ()


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
) -> RunResult:
    """Run ``calls`` on ``model``; write the final artifact to ``output`` and, when asked, its report beside it.

    >>> run("model.onnx", [StageCall("import"), StageCall("quantize.ptq")], output="m_int8.tflite")  # doctest: +SKIP
    """
    resolved = resolve(calls)
    out = None
    if output is not None:
        from .outputs import check_writable

        out = check_writable(output)
        _check_suffix(out, resolved)
    artifact = source_artifact(model)
    versions = _versions()
    workdir = Path(tempfile.mkdtemp(prefix="edgeopt-"))
    try:
        ctx = Context(workdir=workdir, data=data, quiet=quiet, history=[artifact])
        for spec, params in resolved:
            t0 = time.perf_counter()
            new = spec.fn(artifact, params, ctx)
            step = Step(
                stage=spec.name,
                params=dataclasses.asdict(params),
                input_hash=artifact.hash(),
                output_hash=new.hash(),
                versions=versions,
                seconds=time.perf_counter() - t0,
            )
            artifact = new.evolve(lineage=artifact.lineage + (step,))
            ctx.history.append(artifact)
        rep = None
        paths: tuple[Path, ...] = ()
        if report is not None and artifact.format == "tflite":
            from .report import build_report

            rep = build_report(ctx, params=report)
        if out is not None:
            _write_output(artifact, out)
            if rep is not None:
                from .report import write_report

                rep["output"] = str(out)
                paths = write_report(rep, out)
        return RunResult(artifact=artifact, output=out, report=rep, report_paths=paths)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _check_suffix(out: Path, resolved) -> None:
    last_is_keras = not resolved or resolved[-1][0].name == "import"
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
