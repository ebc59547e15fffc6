"""Terminal output: one stderr console for progress and warnings, so stdout stays clean for tables and JSON."""
from __future__ import annotations

import contextlib
from functools import lru_cache
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


@lru_cache(maxsize=None)
def err_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def warn(message: str) -> None:
    err_console().print(f"[yellow]warning:[/yellow] {message}")


def info(message: str) -> None:
    err_console().print(message)


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner while a step without measurable progress runs (a conversion, an import)."""
    con = err_console()
    if not con.is_terminal:
        con.print(message)
        yield
        return
    with con.status(message):
        yield


def track(items: Iterable[T], description: str, *, total: int | None = None) -> Iterator[T]:
    """A progress bar over ``items`` on a terminal; plain iteration otherwise (CI logs, pipes)."""
    con = err_console()
    if not con.is_terminal:
        yield from items
        return
    from rich.progress import track as rich_track

    yield from rich_track(items, description=description, total=total, console=con, transient=True)
