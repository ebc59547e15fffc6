"""Training progress: a bar per epoch with loss, accuracy and ETA on a terminal, one line per epoch in a log,
nothing when quiet."""
from __future__ import annotations

import contextlib
from typing import Iterator


class EpochBar:
    """``update(step, loss=..., acc=...)`` while an epoch runs; ``done(line)`` prints its summary line."""

    def __init__(self, progress, task):
        self._progress, self._task = progress, task

    def update(self, steps: int, **fields: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=steps, metrics="  ".join(f"{k} {v}" for k, v in fields.items()))


@contextlib.contextmanager
def epoch_bar(description: str, *, total: int) -> Iterator[EpochBar]:
    from edgeopt.console import _SPINNERS, err_console, is_quiet

    con = err_console()
    if is_quiet() or not con.is_terminal:
        yield EpochBar(None, None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    paused = _SPINNERS[-1][0] if _SPINNERS else None
    if paused is not None:
        paused.stop()
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                      TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"), console=con, transient=True,
                      redirect_stdout=False, redirect_stderr=False) as progress:
            yield EpochBar(progress, progress.add_task(description, total=total, metrics=""))
    finally:
        if paused is not None and any(live is paused for live, _, _ in _SPINNERS):
            paused.start()


def epoch_line(line: str) -> None:
    """One line per finished epoch, on a terminal and in a log alike (not when quiet)."""
    from edgeopt.console import err_console, is_quiet

    if not is_quiet():
        err_console().print(line, markup=False, highlight=False, soft_wrap=True)
