"""Figure 4: learngene vs learning from scratch.

(a/b) test accuracy per epoch with many shots per class (the paper used 200; capped by the profile);
(c/d) accuracy after a fixed number of epochs (the paper: 10) against samples per class.
The paper's (a)/(c) are CIFAR and (b)/(d) ImageNet; ours are one figure per dataset and image size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.cell_env import Cell, Env, RunSpec, run_cell_episodes
from bench.experiments.selection import facts_of, methods_for
from bench.plots import line_with_band
from bench.profiles import ExperimentSettings, experiment_settings
from bench.report import ReportContext

NAME = "fig4"
DESCRIPTION = "Figure 4: learning curves and sample efficiency, learngene vs scratch"


@dataclass(frozen=True)
class Settings(ExperimentSettings):
    """`[experiments.fig4]`."""

    shots: int = field(default=200, metadata={"gt": 0})
    """Shots per class of the learning curves (paper: 200)."""
    epochs: int = field(default=100, metadata={"gt": 0})
    """Epochs of the learning curves (paper: 100)."""
    sample_epochs: int = field(default=10, metadata={"gt": 0})
    """Fixed epoch budget of panels c/d (paper: 10)."""
    sample_sizes: tuple[int, ...] = (10, 25, 50, 100)
    """Shots per class of panels c/d."""
    curve_tasks: int = field(default=5, metadata={"gt": 0})
    """Episodes per seed."""


def cells(spec: RunSpec, methods: list[str]) -> list[Cell]:
    cfg = experiment_settings(spec.profile, NAME, Settings)
    chosen = methods_for(NAME, methods)
    out = []
    for s in cfg.seed_range(spec.profile):
        for m in chosen:
            out.append(Cell(NAME, m, {"panel": "curves", "shots": cfg.shots, "epochs": cfg.epochs, "seed": s,
                                      "method_options": {"epochs": cfg.epochs}}))
            for n in cfg.sample_sizes:
                out.append(Cell(NAME, m, {"panel": "samples", "shots": n, "epochs": cfg.sample_epochs, "seed": s,
                                          "method_options": {"epochs": cfg.sample_epochs}}))
    return out


def run(cell: Cell, env: Env) -> list[dict]:
    # only panel a/b draws curves; panel c/d reads the final accuracy
    return run_cell_episodes(env, cell, "novel", experiment_settings(env.spec.profile, NAME, Settings).curve_tasks,
                             curve=cell.params["panel"] == "curves")


def hue_order(methods: list[str]) -> list[str]:
    """The figure's legend: the headline method first, then the others (its control) by name."""
    return sorted(set(methods), key=lambda m: ("headline" not in facts_of(m).roles, m))


def report(df: pd.DataFrame, ctx: ReportContext) -> list[Path]:
    out = []
    for key, g in ctx.groups(df):
        curves = g[(g.panel == "curves") & (g.metric == "curve")]
        if not curves.empty:
            shots = int(curves["shots"].iloc[0])
            out.append(line_with_band(
                curves, "epoch", "method", ctx.figure_path("fig4ab_curves", key),
                title=f"Fig. 4(a/b): accuracy per epoch, 5-way {shots}-shot\n{key.dataset} {key.image_size}px, profile {key.profile}",
                xlabel="training epoch", ylabel="test accuracy on novel classes (%)", hue_order=hue_order(curves.method),
                note="bands: 95% t-CI over tasks × seeds; paper used 200 shots/class (capped here by the profile)"))
        samples = g[(g.panel == "samples") & (g.metric == "accuracy")]
        if not samples.empty:
            epochs = int(samples["epochs"].iloc[0])
            out.append(line_with_band(
                samples, "shots", "method", ctx.figure_path("fig4cd_samples", key),
                title=f"Fig. 4(c/d): accuracy after {epochs} epochs vs samples per class\n{key.dataset} "
                      f"{key.image_size}px, profile {key.profile}",
                xlabel="training samples per class", ylabel="test accuracy on novel classes (%)",
                hue_order=hue_order(samples.method), note="bands: 95% t-CI over tasks × seeds"))
    return out
