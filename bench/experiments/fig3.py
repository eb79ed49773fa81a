"""Figure 3: the judgement criterion ρ(layer, task) over the collective model's continual training.

ρ is the fraction of a conv layer's weight-gradient entries above σ, averaged over the task's
batches and epochs (paper Eq. 4); `signed` counts g > σ as the official code, `abs` counts |g| > σ
as the paper's Eq. 4 reads. The paper reads "large, then steadily small" as the mark of a learngene
layer; `rank_layers_by_trend` scores exactly that. The rows come from the cached collective model
(`methods.learngene.stages`), the one Table 2, Table 3 and Figures 4 and 6 also use.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.cell_env import Cell, Env, RunSpec, run_cell_episodes
from bench.experiments.selection import artifact_seeds, headline, methods_for, needs_ancestor
from bench.plots import heatmap
from bench.profiles import collective_settings, episode_settings
from bench.report import ReportContext
from methods.learngene.openworld import continual_metrics
from methods.learngene.stages import collective_artifact

NAME = "fig3"
DESCRIPTION = "Figure 3: judgement-criterion heat map rho(layer, task) of the collective model"


def cells(spec: RunSpec, methods: list[str]) -> list[Cell]:
    """The collective run's ρ and accuracy matrix, plus the feature probes on Table 3's novel episodes
    (nearest class mean on the trained collective trunk and on a random one, paired)."""
    ep = episode_settings(spec.profile)
    out = []
    if needs_ancestor(methods):  # the collective run's rows, under the headline method's name
        out += [Cell(NAME, headline(), {"seed": s}) for s in artifact_seeds(spec.profile)]
    out += [Cell(NAME, m, {"analysis": "probe", "pool": "novel", "shots": k, "seed": s})
            for s in range(ep.seeds) for k in ep.shots for m in methods_for(NAME, methods)]
    return out


def rank_layers_by_trend(rows: list[dict[str, Any]], mode: str = "signed",
                         early_frac: float = 1 / 3) -> list[dict[str, Any]]:
    """Rank layers by the paper's learngene signal: ρ large early, then steadily small.

    early = mean ρ over the first `early_frac` of tasks, late = mean over the rest, late_std = its
    spread; score = (early − late) / (late_std + 1e-3). Highest score first; `rank` starts at 1.
    """
    by_layer: dict[int, list[tuple[int, float]]] = {}
    for r in rows:
        if r["mode"] == mode and "epoch" not in r:
            by_layer.setdefault(int(r["layer"]), []).append((int(r["task"]), float(r["rho"])))
    out = []
    for layer, vals in by_layer.items():
        vals.sort()
        rho = np.array([v for _, v in vals])
        cut = max(1, int(round(len(rho) * early_frac)))
        early, late = float(rho[:cut].mean()), rho[cut:] if len(rho) > cut else rho[-1:]
        drop = early - float(late.mean())
        out.append({"layer": layer, "mode": mode, "early": early, "late": float(late.mean()),
                    "late_std": float(late.std()), "drop": drop, "score": drop / (float(late.std()) + 1e-3)})
    out.sort(key=lambda r: -r["score"])
    for i, r in enumerate(out):
        r["rank"] = i + 1
    return out


def run(cell: Cell, env: Env) -> list[dict]:
    if cell.params.get("analysis") == "probe":
        return run_cell_episodes(env, cell, "novel", curve=False)
    art = collective_artifact(env.source(cell.params["seed"]), collective_settings(env.spec.profile), env.cache,
                              env.device)
    rows = [{"metric": f"rho_{r['mode']}", "task": int(r["task"]), "layer": int(r["layer"]), "value": float(r["rho"]),
             "sigma": float(r["sigma"])} for r in art["rho"]]
    for mode in sorted({r["mode"] for r in art["rho"]}):
        for r in rank_layers_by_trend(art["rho"], mode=mode):
            rows.append({"metric": f"trend_rank_{mode}", "layer": r["layer"], "value": float(r["rank"])})
    rows += [{"metric": "collective_R", "task": i, "after_task": t, "value": float(a)}
             for t, row in enumerate(art["R"]) for i, a in enumerate(row)]
    summary = {**continual_metrics(art["R"]), "train_s": art.get("train_s")}
    rows += [{"metric": f"collective_{k}", "value": float(v)} for k, v in summary.items()
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
                note=f"mean over {rho['seed'].nunique()} seed(s) of the collective model; top rows = top layers"))
    return out
