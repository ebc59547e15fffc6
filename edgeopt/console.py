"""Terminal output: one stderr console for progress and warnings, so stdout stays clean for tables and JSON.

Every step that can take a while shows a spinner (``status``) or a bar (``track``) on a terminal, prints one line
per step in a log (not a terminal), and shows nothing inside ``quieted()`` (the Python API's default).

    >>> with quieted():
    ...     with status("converting to fp32 .tflite", step="convert.tflite"):
    ...         pass
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from functools import lru_cache
from typing import Iterable, Iterator, TypeVar

from .profiling import step as profile_step

T = TypeVar("T")

_QUIET: ContextVar[bool] = ContextVar("edgeopt_quiet", default=False)
_SPINNERS: list = []  # (Live, Spinner, message) per nested step; the first owns the display, a bar pauses it


@lru_cache(maxsize=None)
def err_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def is_quiet() -> bool:
    return _QUIET.get()


@contextlib.contextmanager
def quieted(quiet: bool = True) -> Iterator[None]:
    """No spinners, bars or step lines inside the block when ``quiet`` (warnings are the caller's choice)."""
    token = _QUIET.set(quiet)
    try:
        yield
    finally:
        _QUIET.reset(token)


def warn(message: str) -> None:
    err_console().print(f"[yellow]warning:[/yellow] {message}")


def info(message: str) -> None:
    err_console().print(message)


@contextlib.contextmanager
def status(message: str, *, step: str | None = None) -> Iterator[None]:
    """A spinner while a step without measurable progress runs (a conversion, an import); with ``step``, the
    block is also timed under that name in the run's profile (:mod:`edgeopt.profiling`)."""
    with profile_step(step) if step else contextlib.nullcontext():
        con = err_console()
        if is_quiet():
            yield
        elif not con.is_terminal:
            con.print(message, markup=False, highlight=False, soft_wrap=True)
            yield
        elif _SPINNERS:  # one live display at a time: a nested step re-labels the spinner on screen
            live, spinner, _ = _SPINNERS[-1]
            _SPINNERS.append((live, spinner, message))
            spinner.update(text=message)
            try:
                yield
            finally:
                _SPINNERS.pop()
                spinner.update(text=_SPINNERS[-1][2])
        else:
            from rich.spinner import Spinner

            spinner = Spinner("dots", text=message, style="status.spinner")
            with _live(spinner) as live:
                _SPINNERS.append((live, spinner, message))
                try:
                    yield
                finally:
                    _SPINNERS.pop()


def _live(renderable):
    """A transient live display that leaves ``sys.stdout``/``sys.stderr`` alone: it keeps drawing wherever
    ``sys.stderr`` points, which is the real terminal even while native output is muted (``edgeopt._quiet``)."""
    from rich.live import Live

    return Live(renderable, console=err_console(), transient=True, refresh_per_second=12.5,
                redirect_stdout=False, redirect_stderr=False)


def track(items: Iterable[T], description: str, *, total: int | None = None) -> Iterator[T]:
    """A progress bar over ``items`` on a terminal (pausing the spinner around it: one live display at a time);
    one line in a log; nothing when quiet."""
    con = err_console()
    if is_quiet():
        yield from items
        return
    if not con.is_terminal:
        con.print(description, markup=False, highlight=False, soft_wrap=True)
        yield from items
        return
    from rich.progress import Progress

    paused = _SPINNERS[-1][0] if _SPINNERS else None
    if paused is not None:
        paused.stop()
    try:
        with Progress(*Progress.get_default_columns(), console=con, transient=True, redirect_stdout=False,
                      redirect_stderr=False) as progress:
            yield from progress.track(items, total=total, description=description)
    finally:
        if paused is not None and any(live is paused for live, _, _ in _SPINNERS):
            paused.start()
