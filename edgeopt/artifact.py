"""Artifacts and their lineage.

Every stage takes an :class:`Artifact` and returns a new one; nothing is mutated. The lineage (one :class:`Step`
per stage, with resolved parameters, input/output hashes, tool versions and seconds) is the provenance printed in
the report and enough to replay a run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

FORMATS = ("onnx", "keras", "tflite")


def file_hash(path: str | Path) -> str:
    """Short sha256 of a file (or of every file below a directory, in name order)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for q in files:
        with open(q, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def _freeze(d: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class Step:
    """One stage run: what ran, with which parameters, on what, producing what, how long it took."""

    stage: str
    params: Mapping[str, Any]
    input_hash: str | None
    output_hash: str
    versions: Mapping[str, str]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "params": _jsonable(dict(self.params)),
            "input_hash": self.input_hash,
            "output_hash": self.output_hash,
            "versions": dict(self.versions),
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class Artifact:
    """A model at one point of the pipeline.

    ``path`` and ``format`` say where the model is; ``metrics`` holds its measurements (size, params, MACs, parity,
    ...); ``meta`` holds facts later stages need (input/output specs, layouts); ``lineage`` is the list of steps
    that produced it. ``model`` optionally carries the in-memory Keras model so stages do not reload it; it takes
    no part in equality.

    >>> a = Artifact(path=Path("m.onnx"), format="onnx")
    >>> a.evolve(metrics={"size_bytes": 10}).metrics["size_bytes"]
    10
    """

    path: Path
    format: str
    metrics: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    lineage: tuple[Step, ...] = ()
    model: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown artifact format {self.format!r}; known: {', '.join(FORMATS)}")
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "metrics", _freeze(self.metrics))
        object.__setattr__(self, "meta", _freeze(self.meta))
        object.__setattr__(self, "lineage", tuple(self.lineage))

    def evolve(self, **changes: Any) -> "Artifact":
        """A copy with some fields replaced; ``metrics`` and ``meta`` given here are merged into the old ones."""
        for key in ("metrics", "meta"):
            if key in changes:
                changes[key] = {**getattr(self, key), **changes[key]}
        return dataclasses.replace(self, **changes)

    def hash(self) -> str:
        return file_hash(self.path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "metrics": _jsonable(dict(self.metrics)),
            "meta": _jsonable(dict(self.meta)),
            "lineage": [s.to_dict() for s in self.lineage],
        }


def _jsonable(obj: Any) -> Any:
    """Plain JSON types from numpy scalars/arrays, paths, tuples and mappings."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    json.dumps(obj)
    return obj


jsonable = _jsonable
