"""Silencing native libraries that print on file descriptor 2 (TensorFlow's start-up lines, the converter's
settings, the interpreter's delegate announcement), which Python-level logging settings do not reach."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what native code prints on fd 2 (the interpreter announces its XNNPACK delegate there)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
