"""Table 3: every method on novel classes, 5-way 10- and 20-shot, the same episodes for all."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench import paper
from bench.cell_env import Cell, Env, RunSpec, run_episodes
from bench.experiments.selection import headline, methods_for, with_role
from bench.profiles import ExperimentSettings, episode_settings, rows_by_seed
from bench.report import ReportContext, method_table

NAME = "table3"
DESCRIPTION = "Table 3: all methods on novel classes, 5-way 10/20-shot (paired episodes)"


@dataclass(frozen=True)
class Settings(ExperimentSettings):
    """`[experiments.table3]`: seeds per row (`seeds`, `row_seeds`), each seed [episodes] tasks episodes."""


def cells(spec: RunSpec, methods: list[str]) -> list[Cell]:
    shots = episode_settings(spec.profile).shots
    by_seed = rows_by_seed(spec.profile, NAME, Settings, methods_for(NAME, methods))
    return [Cell(NAME, m, {"pool": "novel", "shots": k, "seed": s})
            for s, rows in by_seed.items() for k in shots for m in rows]


def run(cell: Cell, env: Env) -> list[dict]:
    p = cell.params
    return run_episodes(env, cell.method, p["pool"], p["shots"], p["seed"], curve=False)


#: (section, key, the paper's value, what it means) of the settings a CPU profile changes most.
PAPER_SETTINGS = ((("individual",), "width", 1.0, "width"), (("collective",), "tasks", 50, "collective tasks"),
                  (("collective",), "epochs", 100, "collective epochs per task"),
                  (("collective",), "lr", 0.001, "collective lr"))


def deviations(profile: dict) -> str:
    """'width 0.25 (paper 1), collective lr 0.01 (paper 0.001), ...' for the settings that differ."""
    out = []
    for section, key, ours_paper, label in PAPER_SETTINGS:
        node = profile
        for part in section:
            node = node.get(part, {})
        if key in node and node[key] != ours_paper:
            out.append(f"{label} {node[key]:g} (paper {ours_paper:g})")
    return ", ".join(out)


def recipe_caption(group: pd.DataFrame, profile: dict | None = None) -> str:
    """What the reader must know to compare rows: the capacity control, both support-set recipes, and
    where the suite's settings leave the paper's."""
    params = group[group.metric == "params"].groupby("method")["value"].first()
    parts = []
    lg = headline()
    for ctl in with_role("control", list(params.index)):
        if lg not in params.index:
            break
        same = int(params[ctl]) == int(params[lg])
        parts.append(f"*Control:* {ctl} and {lg} train {'the same' if same else 'DIFFERENT'} network "
                     f"({int(params[ctl]):,} vs {int(params[lg]):,} parameters), so their gap is the "
                     "inheritance, not the architecture.")
    parts.append("*Recipes:* support-set trainers use equal-sized batches (`last_batch = \"balanced\"`); "
                 "`learngene-official` keeps the paper's literal recipe (a short last batch, double softmax, no "
                 "EWC, weights carried from task to task). *Deviations from the paper:* "
                 + (f"{deviations(profile)}; " if profile and deviations(profile) else "")
                 + "budgets by the rule in README \"Budgets\" (see the profile's TOML), chosen on validation classes, "
                 "never on these novel classes.")
    return "\n".join(parts)


def report(df: pd.DataFrame, ctx: ReportContext) -> list[Path]:
    sections = []
    for key, group in ctx.groups(df):
        acc = group[group.metric == "accuracy"]
        shots = sorted(int(s) for s in acc["shots"].dropna().unique())
        sections.append(method_table(
            acc, ctx.meta(key), columns=[(f"{k}-shot", acc.shots == k, lambda m, k=k, key=key: paper.table3(m, key.image_size, k))
                                         for k in shots],
            title="Table 3: novel classes, 5-way", paper_col=paper.column_for(key.image_size),
            extra_caption=recipe_caption(group, ctx.profile(key))))
    return [ctx.write_table(NAME, "# Table 3: 5-way accuracy on novel classes", sections)]
