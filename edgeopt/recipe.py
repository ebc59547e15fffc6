"""Recipes: TOML files of ``[[stage]]`` tables, plus optional ``[data]`` and ``[report]`` tables.

```toml
[data]
calib_samples = 256

[[stage]]
use = "import"

[[stage]]
use = "quantize.ptq"
io_type = "int8"
```

Every key other than ``use`` is a field of that stage's ``Params`` (``edgeopt stages`` lists them); an unknown key
is an error that names the known ones.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RecipeError
from .params import DataParams, ReportParams
from .pipeline import StageCall, resolve
from .registry import StageSpec, make_params

TOP_LEVEL = ("stage", "data", "report")


@dataclass(frozen=True)
class Recipe:
    path: Path
    calls: tuple[StageCall, ...]
    data: dict[str, Any]
    report: dict[str, Any] | None

    def data_params(self, **overrides: Any) -> DataParams:
        values = {**self.data, **{k: v for k, v in overrides.items() if v is not None}}
        return make_params(_as_spec("data", DataParams), values, where=str(self.path))

    def report_params(self) -> ReportParams | None:
        if self.report is None:
            return ReportParams()
        return make_params(_as_spec("report", ReportParams), self.report, where=str(self.path))


def _as_spec(name: str, params: type) -> StageSpec:
    return StageSpec(f"[{name}]", params, lambda *a: None, "")


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe: TOML syntax, known tables, known stages, known keys, value types.

    >>> load_recipe("recipes/int8_ptq.toml").calls[0].use   # doctest: +SKIP
    'import'
    """
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise RecipeError(f"recipe {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"recipe {p} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"recipe {p} is not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - set(TOP_LEVEL))
    if unknown:
        raise RecipeError(f"recipe {p}: unknown table(s) {', '.join(unknown)}",
                          hint="a recipe has [[stage]] tables and optional [data] and [report]")
    stages = doc.get("stage", [])
    if not isinstance(stages, list) or not stages:
        raise RecipeError(f"recipe {p} has no [[stage]] tables")
    calls = []
    for i, table in enumerate(stages):
        if "use" not in table:
            raise RecipeError(f"recipe {p}: stage {i + 1} has no `use` key naming the stage")
        values = {k: v for k, v in table.items() if k != "use"}
        calls.append(StageCall(str(table["use"]), values))
    recipe = Recipe(p, tuple(calls), dict(doc.get("data", {})), doc.get("report"))
    resolve(recipe.calls)  # fail now, before any work, on unknown stages or keys
    recipe.data_params()
    recipe.report_params()
    return recipe


def dump_recipe(calls, *, data: DataParams | None = None, report: ReportParams | None = None) -> str:
    """TOML text for a list of stage calls (the recipe equivalent of a `compress` command line)."""
    lines: list[str] = []
    for name, obj in (("data", data), ("report", report)):
        if obj is not None:
            lines.append(f"[{name}]")
            lines += [f"{k} = {_toml(v)}" for k, v in dataclasses.asdict(obj).items() if v is not None]
            lines.append("")
    for c in calls:
        lines += ["[[stage]]", f'use = "{c.use}"'] + [f"{k} = {_toml(v)}" for k, v in c.values.items()
                                                      if v is not None] + [""]
    return "\n".join(lines)


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
