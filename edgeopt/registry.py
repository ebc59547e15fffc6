"""The stage registry: every stage is a plain function registered by name with a frozen ``Params`` dataclass.

The CLI, the Python API and recipes all look stages up here. Stages register in the modules listed in
:data:`STAGE_MODULES`, which are imported explicitly on first lookup (never through import order).
"""
from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .errors import RecipeError

# The modules that define stages; imported on first lookup so `edgeopt --help` does not import TensorFlow.
STAGE_MODULES = (
    "edgeopt.stages",
    "edgeopt.train.stage",
    "edgeopt.pruning.stage",
    "edgeopt.distillation.stage",
    "edgeopt.quantization.stage",
)


@dataclass(frozen=True)
class StageSpec:
    name: str
    params: type
    fn: Callable[..., Any]
    doc: str


_STAGES: dict[str, StageSpec] = {}


def stage(name: str, params: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn(artifact, params, ctx) -> Artifact`` under ``name`` with its frozen ``params`` dataclass.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class NoParams: pass
    >>> @stage("example.noop", NoParams)
    ... def noop(artifact, params, ctx):
    ...     return artifact
    >>> lookup("example.noop").name
    'example.noop'
    """
    if not (dataclasses.is_dataclass(params) and params.__dataclass_params__.frozen):
        raise TypeError(f"stage {name!r}: params must be a frozen dataclass")

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        doc = (fn.__doc__ or "").strip().splitlines()
        _STAGES[name] = StageSpec(name, params, fn, doc[0] if doc else "")
        return fn

    return register


def _load_all() -> None:
    for mod in STAGE_MODULES:
        importlib.import_module(mod)


def all_stages() -> list[StageSpec]:
    _load_all()
    return [_STAGES[k] for k in sorted(_STAGES)]


def lookup(name: str) -> StageSpec:
    if name not in _STAGES:
        _load_all()
    if name not in _STAGES:
        known = ", ".join(sorted(_STAGES))
        raise RecipeError(f"unknown stage {name!r}", hint=f"known stages: {known}")
    return _STAGES[name]


def field_info(params: type) -> list[tuple[str, str, Any, str]]:
    """(name, type text, default, help) for each field of a Params dataclass; help comes from field metadata."""
    hints = typing.get_type_hints(params)
    out = []
    for f in dataclasses.fields(params):
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        out.append((f.name, _type_text(hints[f.name]), default, f.metadata.get("help", "")))
    return out


def _type_text(t: Any) -> str:
    origin = typing.get_origin(t)
    if origin is typing.Literal:
        return "|".join(str(a) for a in typing.get_args(t))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_text(a) for a in typing.get_args(t))
    if origin is tuple:
        return f"list of {_type_text(typing.get_args(t)[0])}"
    return getattr(t, "__name__", str(t))


def make_params(spec: StageSpec, values: Mapping[str, Any], *, where: str = "") -> Any:
    """Build ``spec.params`` from a mapping, checking names and types; unknown keys name the known ones."""
    fields = {f.name: f for f in dataclasses.fields(spec.params)}
    hints = typing.get_type_hints(spec.params)
    unknown = sorted(set(values) - set(fields))
    place = f" ({where})" if where else ""
    if unknown:
        raise RecipeError(
            f"stage {spec.name!r}{place}: unknown key(s) {', '.join(unknown)}",
            hint=f"known keys: {', '.join(fields)}",
        )
    kwargs = {k: _coerce(v, hints[k], f"{spec.name}.{k}{place}") for k, v in values.items()}
    try:
        return spec.params(**kwargs)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"stage {spec.name!r}{place}: {exc}") from None


def _coerce(value: Any, t: Any, where: str) -> Any:
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except RecipeError as e:
                errors.append(e)
        raise errors[0]
    if origin is typing.Literal:
        if value not in args:
            raise RecipeError(f"{where}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(v, args[0], where) for v in value)
    if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if t is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if t is bool and isinstance(value, bool):
        return value
    if t is str and isinstance(value, str):
        return value
    if t is typing.Any:
        return value
    raise RecipeError(f"{where}: expected {_type_text(t)}, got {value!r}")
