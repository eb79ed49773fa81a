"""Figure 3: the judgement criterion ρ(layer, task) over the collective model's continual training.

ρ is the fraction of a conv layer's weight-gradient entries above σ, averaged over the task's
batches and epochs (spec §2.5); `signed` counts g > σ as the official code, `abs` counts |g| > σ
as the paper's Eq. 4. The paper reads "large, then steadily small" as the mark of a learngene layer.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.experiments.selection import artifact_seeds
from bench.plots import heatmap
from bench.report import ReportContext
from bench.runner import Cell, Env, RunSpec

NAME = "fig3"
DESCRIPTION = "Figure 3: judgement-criterion heat map rho(layer, task) of the collective model"


def cells(spec: RunSpec, methods: list[str]) -> list[Cell]:
    if not any(m.startswith("learngene") for m in methods):
        return []
    return [Cell(NAME, "learngene", {"seed": s}) for s in artifact_seeds(spec.profile)]


def run(cell: Cell, env: Env) -> list[dict]:
    from methods.learngene.method import accuracy_rows, rank_layers_by_trend, rho_rows

    source = env.source(cell.params["seed"])
    raw = rho_rows(source, env.spec.profile, env.cache, env.device)
    rows = [{"metric": f"rho_{r['mode']}", "task": int(r["task"]), "layer": int(r["layer"]), "value": float(r["rho"]),
             "sigma": float(r["sigma"])} for r in raw]
    for mode in sorted({r["mode"] for r in raw}):
        for r in rank_layers_by_trend(raw, mode=mode):
            rows.append({"metric": f"trend_rank_{mode}", "layer": r["layer"], "value": float(r["rank"])})
    for r in accuracy_rows(source, env.spec.profile, env.cache, env.device):
        if r.get("kind") == "R":
            rows.append({"metric": "collective_R", "task": int(r["task"]), "after_task": int(r["after_task"]),
                         "value": float(r["acc"])})
        else:
            rows += [{"metric": f"collective_{k}", "value": float(v)} for k, v in r.items()
                     if isinstance(v, int | float) and not isinstance(v, bool)]
    return rows


def report(df: pd.DataFrame, ctx: ReportContext) -> list[Path]:
    out = []
    for key, g in ctx.groups(df):
        for mode in ("signed", "abs"):
            rho = g[g.metric == f"rho_{mode}"]
            if rho.empty:
                continue
            mat = rho.groupby(["layer", "task"])["value"].mean().unstack("task").sort_index(ascending=False)
            mat.columns = [int(c) + 1 for c in mat.columns]
            mat.index = [int(i) for i in mat.index]
            sigma = float(rho["sigma"].iloc[0])
            name = "fig3_rho" if mode == "signed" else "fig3_rho_abs"
            out.append(heatmap(
                mat, ctx.figure_path(name, key),
                title=f"Fig. 3: judgement criterion ρ ({mode}, σ={sigma:g}) per conv layer and task\n"
                      f"{key.dataset} {key.image_size}px, profile {key.profile}",
                xlabel="continual task", ylabel="conv layer (1 = input side)", cbar=f"ρ ({mode}: "
                f"{'g > σ' if mode == 'signed' else '|g| > σ'})",
                note=f"mean over {g['seed'].nunique()} seed(s) of the collective model; top rows = top layers"))
    return out
