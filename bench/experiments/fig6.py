"""Figure 6: (a) individual-model accuracy against the collective checkpoint (task index) the
learngene was taken from; (b) learning curves when the 3 inherited blocks come from the front,
middle or top of a uniform-width collective network (no widening), as the paper describes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.cell_env import Cell, Env, RunSpec, run_cell_episodes
from bench.experiments.selection import facts_of, methods_for
from bench.plots import line_with_band
from bench.profiles import ExperimentSettings, experiment_settings
from bench.report import ReportContext, method_sort_key

NAME = "fig6"
DESCRIPTION = "Figure 6: learngene vs collective checkpoint (a) and inherited-block position (b)"
#: The two panels, as the experiments methods declare (`MethodFacts.experiments`).
CHECKPOINT, POSITION = f"{NAME}:checkpoint", f"{NAME}:position"


@dataclass(frozen=True)
class Settings(ExperimentSettings):
    """`[experiments.fig6]`; its checkpoints reach the one shared collective run through
    `bench.profiles.collective_settings` (every learngene variant keeps them), its uniform width
    reaches panel b's variants as the cell option `collective.uniform_width`."""

    shots: int = field(default=20, metadata={"gt": 0})
    """5-way shots of the Figure 6 tasks."""
    checkpoints: tuple[int, ...] = ()
    """Collective tasks the learngene is taken from (panel a)."""
    uniform_width: int = field(default=256, metadata={"gt": 0})
    """Channels of the uniform-width collective network (panel b), before `width`."""
    tasks: int | None = None
    """Episodes per seed (None = [episodes] tasks)."""


def cells(spec: RunSpec, methods: list[str]) -> list[Cell]:
    cfg = experiment_settings(spec.profile, NAME, Settings)
    seeds = cfg.seed_range(spec.profile)
    out = []
    out += [Cell(NAME, m, {"panel": "checkpoint", "checkpoint": t, "shots": cfg.shots, "seed": s,
                           "method_options": {"checkpoint": t}})
            for m in methods_for(CHECKPOINT, methods) for s in seeds for t in cfg.checkpoints]
    out += [Cell(NAME, m, {"panel": "position", "shots": cfg.shots, "seed": s,
                           "method_options": {"collective.uniform_width": cfg.uniform_width}})
            for s in seeds for m in methods_for(POSITION, methods)]
    return out


def run(cell: Cell, env: Env) -> list[dict]:
    # only panel b draws curves; panel a reads the final accuracy
    return run_cell_episodes(env, cell, "novel", experiment_settings(env.spec.profile, NAME, Settings).tasks,
                             curve=cell.params["panel"] == "position")


def report(df: pd.DataFrame, ctx: ReportContext) -> list[Path]:
    out = []
    for key, g in ctx.groups(df):
        a = g[(g.panel == "checkpoint") & (g.metric == "accuracy")]
        if not a.empty:
            out.append(line_with_band(
                a, "checkpoint", "method", ctx.figure_path("fig6a_checkpoint", key),
                title=f"Fig. 6(a): accuracy vs the collective checkpoint the learngene came from\n{key.dataset} "
                      f"{key.image_size}px, 5-way {int(a['shots'].iloc[0])}-shot, profile {key.profile}",
                xlabel="collective-model task index at extraction", ylabel="final test accuracy (%)",
                note="bands: 95% t-CI over tasks × seeds"))
        b = g[(g.panel == "position") & (g.metric == "curve")]
        if not b.empty:
            labels = {m: facts_of(m).label or m for m in b["method"].unique()}
            b = b.assign(position=b["method"].map(labels))
            out.append(line_with_band(
                b, "epoch", "position", ctx.figure_path("fig6b_position", key),
                title=f"Fig. 6(b): learngene position in a uniform-width collective network\n{key.dataset} "
                      f"{key.image_size}px, 5-way {int(b['shots'].iloc[0])}-shot, profile {key.profile}",
                xlabel="training epoch", ylabel="test accuracy on novel classes (%)",
                hue_order=[labels[m] for m in sorted(labels, key=method_sort_key)],
                note="bands: 95% t-CI over tasks × seeds"))
    return out
