"""One module per table or figure. Each defines NAME, DESCRIPTION and three functions:

- `cells(spec, methods) -> list[Cell]`: the grid it needs for the selected methods;
- `run(cell, env) -> list[dict]`: tidy rows for one cell (executed on a worker);
- `report(df, ctx) -> list[Path]`: tables/figures from the collected rows of this experiment.

An experiment with its own profile section `[experiments.<name>]` also defines `Settings`, a frozen
dataclass the profile is validated against (see `bench.profiles`).
"""
from __future__ import annotations

import importlib
from types import ModuleType

from bench.errors import UsageError

EXPERIMENT_NAMES = ("table3", "table2", "fig3", "fig4", "fig6")


def get_experiment(name: str) -> ModuleType:
    if name not in EXPERIMENT_NAMES:
        raise UsageError(f"unknown experiment '{name}'; choose all or one of: {', '.join(EXPERIMENT_NAMES)}")
    return importlib.import_module(f"bench.experiments.{name}")
