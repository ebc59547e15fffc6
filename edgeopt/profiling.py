"""Where a run's time goes: named steps timed on the wall clock, each nested step subtracted from its parent.

A run records into one :class:`Profile` (``recording()``); code anywhere marks its work with ``step(name)``, which
costs nothing when no profile is recording. A step entered several times (``data`` is asked for by two stages)
adds up. ``edgeopt compress --profile`` prints the rows; every report.json keeps them under ``profile``.

    >>> with recording() as prof:
    ...     with step("import"):
    ...         with step("parity"):
    ...             pass
    >>> [name for name, _ in prof.rows()]
    ['import', 'parity']
"""
from __future__ import annotations

import contextlib
import time
from contextvars import ContextVar
from typing import Iterator

_ACTIVE: ContextVar["Profile | None"] = ContextVar("edgeopt_profile", default=None)


class Profile:
    """Exclusive seconds per step name, in the order the steps first started, and the total wall time.

    >>> p = Profile()
    >>> p.add("latency", 1.5); p.add("latency", 0.5); p.seconds("latency")
    2.0
    """

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.finished: float | None = None
        self._seconds: dict[str, float] = {}
        self._stack: list[list] = []  # [name, start, seconds spent in nested steps]

    def add(self, name: str, seconds: float) -> None:
        self._seconds[name] = self._seconds.get(name, 0.0) + seconds

    def seconds(self, name: str) -> float:
        return self._seconds.get(name, 0.0)

    def enter(self, name: str) -> list:
        """Start ``name``; returns the token ``leave`` takes."""
        self._seconds.setdefault(name, 0.0)  # keeps the order in which steps first started
        entry = [name, time.perf_counter(), 0.0]
        self._stack.append(entry)
        return entry

    def leave(self, entry: list) -> None:
        """End the step ``entry`` (and any step left open inside it, e.g. by an abandoned generator)."""
        if not any(e is entry for e in self._stack):
            return
        while self._stack:
            name, start, nested = top = self._stack.pop()
            elapsed = time.perf_counter() - start
            self.add(name, elapsed - nested)
            if self._stack:
                self._stack[-1][2] += elapsed
            if top is entry:
                return

    def total(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    def rows(self) -> list[tuple[str, float]]:
        """(step, exclusive seconds) in order of first start; steps still running count up to now."""
        seconds = dict(self._seconds)
        now, inner_elapsed = time.perf_counter(), 0.0
        for name, start, nested in reversed(self._stack):  # innermost first: its time is its parent's nested time
            elapsed = now - start
            seconds[name] += elapsed - nested - inner_elapsed
            inner_elapsed = elapsed
        return list(seconds.items())

    def to_dict(self) -> dict:
        """JSON-able: the steps, the total, and ``other_seconds`` (time outside every named step).

        >>> Profile().to_dict()["steps"]
        []
        """
        total, rows = self.total(), self.rows()
        named = sum(v for _, v in rows)
        return {"steps": [{"step": k, "seconds": round(v, 3)} for k, v in rows],
                "other_seconds": round(max(0.0, total - named), 3), "total_seconds": round(total, 3)}


@contextlib.contextmanager
def recording() -> Iterator[Profile]:
    """Record every ``step`` run inside the block into a new :class:`Profile`."""
    prof = Profile()
    token = _ACTIVE.set(prof)
    try:
        yield prof
    finally:
        prof.finished = time.perf_counter()
        _ACTIVE.reset(token)


def active() -> Profile | None:
    """The profile being recorded, if any."""
    return _ACTIVE.get()


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Time the block as ``name`` in the recording profile (a no-op when none records)."""
    prof = _ACTIVE.get()
    if prof is None:
        yield
        return
    entry = prof.enter(name)
    try:
        yield
    finally:
        prof.leave(entry)
