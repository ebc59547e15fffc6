"""Silencing native libraries that print on file descriptor 2 (TensorFlow's start-up lines, the converter's
settings, the interpreter's delegate announcement), which Python-level logging settings do not reach.

Only the native side is silenced: while fd 2 points at /dev/null, Python's ``sys.stderr`` is pointed at a copy of
the real fd 2, so edgeopt's own spinners and progress bars (the INT8 calibration bar is drawn while the converter
runs) stay on the terminal.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Iterator


def _writes_to_fd2(stream) -> bool:
    """Whether Python text written to ``stream`` ends up on fd 2 (rich's live-display proxies unwrapped)."""
    stream = getattr(stream, "rich_proxied_file", stream)
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False  # a capture buffer or StringIO: untouched by the redirect, nothing to do


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what native code prints on fd 2 (the interpreter announces its XNNPACK delegate there).

    >>> with quiet_native_stderr():   # doctest: +SKIP
    ...     converter.convert()       # the converter's C++ settings dump goes nowhere; a rich bar still shows
    """
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    python_stderr = sys.stderr
    keep = _writes_to_fd2(python_stderr)
    terminal = None
    try:
        if keep:
            python_stderr.flush()
            terminal = os.fdopen(saved, "w", buffering=1, closefd=False,
                                 encoding=getattr(python_stderr, "encoding", None) or "utf-8", errors="replace")
            sys.stderr = terminal
        os.dup2(devnull, 2)
        yield
    finally:
        if terminal is not None:
            terminal.flush()
            if sys.stderr is terminal:
                sys.stderr = python_stderr
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
