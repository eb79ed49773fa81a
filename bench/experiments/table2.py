"""Table 2 (reconstructed protocol): every method on 5-way tasks drawn from the open-world classes,
20 shots, plus the collective model's open-world recognition metrics.

The paper does not say how its baselines met the open-world classes; we reconstruct it so:
baselines (meta-)trained on base classes are adapted on the open-world tasks' shots; learngene's individual model inherits from
the collective model *after* it recognised open-world instances (P̂ = 1 − max softmax > λ_open) and
learnt those classes incrementally.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench import paper
from bench.cell_env import Cell, Env, RunSpec, run_episodes
from bench.experiments.selection import artifact_seeds, methods_for, paper_row
from bench.profiles import ExperimentSettings, collective_settings, episode_settings, rows_by_seed
from bench.report import ReportContext, caption, method_table
from methods import registry
from methods.learngene.stages import open_world_artifact

NAME = "table2"
DESCRIPTION = "Table 2: all methods on open-world classes (20-shot), + open-world recognition metrics"
RECONSTRUCTED = ("**Reconstructed protocol** (the paper is ambiguous): 5-way 20-shot tasks on the 16 open-world "
                 "classes; learngene inherits from the collective model after it recognised and learnt them.")


@dataclass(frozen=True)
class Settings(ExperimentSettings):
    """`[experiments.table2]`: seeds per row (`seeds`, `row_seeds`), each seed [episodes] tasks episodes."""


def cells(spec: RunSpec, methods: list[str]) -> list[Cell]:
    ep = episode_settings(spec.profile)
    chosen = methods_for(NAME, methods)
    out = [Cell(NAME, m, {"pool": "open_world", "shots": ep.open_world_shots, "seed": s})
           for s, rows in rows_by_seed(spec.profile, NAME, Settings, chosen).items() for m in rows]
    # a row inheriting from the collective model (the open-world variant) also reports the model's
    # open-world recognition, once per collective model
    out += [Cell(NAME, m, {"analysis": "recognition", "seed": s}) for m in chosen if registry.facts(m).needs_ancestor
            for s in artifact_seeds(spec.profile)]
    return out


def _recognition_rows(env: Env, seed: int) -> list[dict]:
    """The collective model's open-world stage as tidy rows: detection metrics (AUROC, FPR@95 both
    conventions, AUPR-in/out, closed-set accuracy, OSCR, thresholded accuracy) and the incremental
    stage's average accuracy, forgetting and BWT before/after learning the recognised classes."""
    ow = open_world_artifact(env.source(seed), collective_settings(env.spec.profile), env.cache, env.device)
    detection = {**ow["metrics"], "recognised": len(ow["recognised"]), "new_tasks": len(ow["new_tasks"])}
    stages = {"before": {**ow["continual"]["before"], "n_tasks": len(ow["R"]) - len(ow["new_tasks"])},
              "after": {**ow["continual"]["after"], "n_tasks": len(ow["R"]),
                        "base_avg_acc_after": ow["continual"]["base_avg_acc_after"]}}
    named = [(f"detection.{k}", v) for k, v in detection.items()]
    named += [(f"incremental.{stage}.{k}", v) for stage, vals in stages.items() for k, v in vals.items()]
    return [{"metric": name, "value": float(v), "positive": "open-world" if name.startswith("detection.") else ""}
            for name, v in named if isinstance(v, int | float) and not isinstance(v, bool)]


def run(cell: Cell, env: Env) -> list[dict]:
    p = cell.params
    if p.get("analysis") == "recognition":
        return _recognition_rows(env, p["seed"])
    return run_episodes(env, cell.method, p["pool"], p["shots"], p["seed"], curve=False)


def _paper(method: str, image_size: int):
    return paper.table2(paper_row(method), image_size)


def report(df: pd.DataFrame, ctx: ReportContext) -> list[Path]:
    sections = []
    for key, group in ctx.groups(df):
        meta = ctx.meta(key)
        acc = group[group.metric == "accuracy"]
        if not acc.empty:
            shots = int(acc["shots"].dropna().iloc[0])
            sections.append(method_table(
                acc, meta, columns=[(f"{shots}-shot", acc.shots == shots, lambda m, key=key: _paper(m, key.image_size))],
                title="Table 2: open-world classes, 5-way", paper_col=paper.column_for(key.image_size),
                extra_caption=RECONSTRUCTED))
        rec = group[group.metric.astype(str).str.startswith(("detection.", "incremental."))]
        if not rec.empty:
            sections.append(_recognition_table(rec, meta))
    return [ctx.write_table(NAME, "# Table 2: 5-way accuracy on open-world classes (reconstructed protocol)", sections)]


def _recognition_table(rec: pd.DataFrame, meta: dict) -> str:
    from bench.stats import mean_ci95

    key = meta["key"]
    lines = [f"## Open-world recognition by the collective model: {key.dataset}, {key.image_size} px, profile `{key.profile}`",
             "", caption(meta, rec, "Base-class test images are in-distribution, open-world-class test images are "
                         "out-of-distribution; the score is P̂ = 1 − max softmax (paper Eq. 2). FPR@95 names its "
                         "positive class in the metric name. Forgetting = mean over earlier tasks of (best earlier "
                         "accuracy − final accuracy). n = seeds of the collective model."),
             "", "| Metric | value (mean ± 95% CI) | n |", "|---|---|---|"]
    for metric, g in rec.groupby("metric", sort=True):
        m, h, n = mean_ci95(g["value"])
        val = f"{m:.4f}" + (f" ± {h:.4f}" if n > 1 else " (one run)")
        lines.append(f"| {metric} | {val} | {n} |")
    return "\n".join(lines)
