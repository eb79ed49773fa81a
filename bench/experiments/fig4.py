"""Figure 4: learngene vs learning from scratch.

(a/b) test accuracy per epoch with many shots per class (the paper used 200; capped by the profile);
(c/d) accuracy after a fixed number of epochs (the paper: 10) against samples per class.
The paper's (a)/(c) are CIFAR and (b)/(d) ImageNet; ours are one figure per dataset and image size.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.plots import line_with_band
from bench.report import ReportContext
from bench.runner import Cell, Env, RunSpec, run_episodes

NAME = "fig4"
DESCRIPTION = "Figure 4: learning curves and sample efficiency, learngene vs scratch"
METHODS = ("learngene", "scratch")


def _cfg(profile: dict) -> dict:
    return profile.get("experiments", {}).get("fig4", {})


def cells(spec: RunSpec, methods: list[str]) -> list[Cell]:
    cfg = _cfg(spec.profile)
    seeds = int(cfg.get("seeds", spec.profile["episodes"]["seeds"]))
    chosen = [m for m in METHODS if m in methods]
    out = []
    for s in range(seeds):
        for m in chosen:
            out.append(Cell(NAME, m, {"panel": "curves", "shots": int(cfg["shots"]), "epochs": int(cfg["epochs"]),
                                      "seed": s}))
            for n in cfg["sample_sizes"]:
                out.append(Cell(NAME, m, {"panel": "samples", "shots": int(n), "epochs": int(cfg["sample_epochs"]),
                                          "seed": s}))
    return out


def run(cell: Cell, env: Env) -> list[dict]:
    cfg = _cfg(env.spec.profile)
    p = cell.params
    return run_episodes(env, cell.method, "novel", p["shots"], p["seed"], n_tasks=int(cfg["curve_tasks"]),
                        profile_patch={"individual": {"epochs": p["epochs"]}})


def report(df: pd.DataFrame, ctx: ReportContext) -> list[Path]:
    out = []
    for key, g in ctx.groups(df):
        curves = g[(g.panel == "curves") & (g.metric == "curve")]
        if not curves.empty:
            shots = int(curves["shots"].iloc[0])
            out.append(line_with_band(
                curves, "epoch", "method", ctx.figure_path("fig4ab_curves", key),
                title=f"Fig. 4(a/b): accuracy per epoch, 5-way {shots}-shot\n{key.dataset} {key.image_size}px, profile {key.profile}",
                xlabel="training epoch", ylabel="test accuracy on novel classes (%)", hue_order=list(METHODS),
                note="bands: 95% t-CI over tasks × seeds; paper used 200 shots/class (capped here by the profile)"))
        samples = g[(g.panel == "samples") & (g.metric == "accuracy")]
        if not samples.empty:
            epochs = int(samples["epochs"].iloc[0])
            out.append(line_with_band(
                samples, "shots", "method", ctx.figure_path("fig4cd_samples", key),
                title=f"Fig. 4(c/d): accuracy after {epochs} epochs vs samples per class\n{key.dataset} "
                      f"{key.image_size}px, profile {key.profile}",
                xlabel="training samples per class", ylabel="test accuracy on novel classes (%)",
                hue_order=list(METHODS), note="bands: 95% t-CI over tasks × seeds"))
    return out
