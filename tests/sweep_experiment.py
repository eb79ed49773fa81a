"""A throw-away sweep, the way a user adds one: this module plus an `[experiments.sweep]` section.

It runs the methods the section names on Table 3's novel episodes once per value of one settings
field (a cell option, so each value is its own cell with its own key) and reports mean accuracy per
value. `tests/test_method_facts_and_sweep.py` installs it as `bench.experiments.sweep` and runs it
through the command line on the smoke grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.cell_env import Cell, Env, RunSpec, run_cell_episodes
from bench.profiles import ExperimentSettings, episode_settings, experiment_settings
from bench.report import ReportContext
from bench.stats import mean_ci95

NAME = "sweep"
DESCRIPTION = "Sweep: accuracy against one settings field's values"


@dataclass(frozen=True)
class Settings(ExperimentSettings):
    """`[experiments.sweep]`."""

    methods: tuple[str, ...] = ("scratch",)
    """Methods swept (those of them that --method selects)."""
    field: str = "lr"
    """The settings field each cell overrides."""
    values: tuple[float, ...] = ()
    """Its values, one cell per value, shot count and seed."""


def cells(spec: RunSpec, methods: list[str]) -> list[Cell]:
    cfg = experiment_settings(spec.profile, NAME, Settings)
    shots = episode_settings(spec.profile).shots
    return [Cell(NAME, m, {"pool": "novel", "shots": k, "seed": s, cfg.field: v, "method_options": {cfg.field: v}})
            for m in cfg.methods if m in methods for v in cfg.values for k in shots for s in cfg.seed_range(spec.profile)]


def run(cell: Cell, env: Env) -> list[dict]:
    return run_cell_episodes(env, cell, cell.params["pool"], curve=False)


def report(df: pd.DataFrame, ctx: ReportContext) -> list[Path]:
    sections = []
    for key, g in ctx.groups(df):
        field = experiment_settings(ctx.profile(key) or {}, NAME, Settings).field
        acc = g[g.metric == "accuracy"]
        lines = [f"## {key.dataset} {key.image_size}px, profile {key.profile}", "",
                 f"| method | shots | {field} | accuracy (mean ± 95% CI) | n |", "|---|---|---|---|---|"]
        for (m, k, v), r in acc.groupby(["method", "shots", field]):
            mean, half, n = mean_ci95(r["value"] * 100)
            lines.append(f"| {m} | {int(k)} | {v:g} | {mean:.2f} ± {half:.2f} | {n} |")
        sections.append("\n".join(lines))
    return [ctx.write_table(NAME, "# Sweep", sections)]
