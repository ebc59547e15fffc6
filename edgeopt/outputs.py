"""Writing outputs safely: checked before the work starts, written under a temporary name, renamed at the end.

A failed or interrupted run therefore never leaves a half-written `.tflite` or report behind.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import OutputError


def default_output(model: str | Path, precision: str) -> Path:
    """The output ``compress`` writes without ``-o``: ``<model stem>_<precision>.tflite`` in the current folder.

    >>> str(default_output("models/mnist.onnx", "int8")), str(default_output("saved_model_dir", "fp16"))
    ('mnist_int8.tflite', 'saved_model_dir_fp16.tflite')
    """
    p = Path(model)
    return Path(f"{p.stem if p.suffix else p.name}_{precision}.tflite")


def check_not_input(output: str | Path, model: str | Path, *, suggestion: str | Path | None = None) -> None:
    """Refuse, before any work, an output path that names the input model (the run would overwrite its source).

    >>> check_not_input("m_int8.tflite", "m.onnx")   # a different file: fine
    """
    out, src = Path(output), Path(model)
    if not _same_file(out, src):
        return
    hint = f"choose another output name, e.g. -o {suggestion}" if suggestion else "choose another output name with -o"
    raise OutputError(f"output {out} is the input model {src}: writing it would overwrite the model being "
                      "compressed", hint=hint)


def _same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name one file (through links, ``..`` or a relative path)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def check_writable(path: str | Path) -> Path:
    """Fail early, before hours of work, when ``path`` cannot be written."""
    p = Path(path)
    if p.exists() and p.is_dir():
        raise OutputError(f"output path {p} is a directory", hint="give a file name, e.g. model_int8.tflite")
    parent = p.parent if str(p.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write to {parent}: {exc.strerror or exc}",
                          hint="choose another output path with -o") from None
    return p


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".partial", dir=p.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, p)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())
