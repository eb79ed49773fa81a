"""One module per table or figure. Each defines NAME, DESCRIPTION and three functions:

- `cells(spec, methods) -> list[Cell]`: the grid it needs for the selected methods;
- `run(cell, env) -> list[dict]`: tidy rows for one cell (executed on a worker);
- `report(df, ctx) -> list[Path]`: tables/figures from the collected rows of this experiment.

An experiment with its own profile section `[experiments.<name>]` also defines `Settings`, a frozen
dataclass the profile is validated against (see `bench.profiles`).
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path
from types import ModuleType

from bench.errors import UsageError

#: The paper's experiments, in the order a run and a report take them.
BUILT_IN = ("table3", "table2", "fig3", "fig4", "fig6")
#: Functions a module must define at top level to be an experiment.
REQUIRED = ("cells", "run", "report")


def discover(folder: Path = Path(__file__).parent) -> tuple[str, ...]:
    """The built-in experiments, then every other module in `folder` that defines `cells`, `run` and
    `report` (by name), so adding a sweep is one file here and one profile section; read from the
    source, not imported, so a module that is not an experiment (`selection`) costs nothing."""
    found = []
    for path in sorted(folder.glob("[!_]*.py")):
        if path.stem in BUILT_IN:
            continue
        tree = ast.parse(path.read_text())
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        if set(REQUIRED) <= names:
            found.append(path.stem)
    return (*BUILT_IN, *found)


EXPERIMENT_NAMES = discover()


def get_experiment(name: str) -> ModuleType:
    if name not in EXPERIMENT_NAMES:
        raise UsageError(f"unknown experiment '{name}'; choose all or one of: {', '.join(EXPERIMENT_NAMES)}")
    return importlib.import_module(f"bench.experiments.{name}")
