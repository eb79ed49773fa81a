"""Table 2 (reconstructed protocol): every method on 5-way tasks drawn from the open-world classes,
20 shots, plus the collective model's open-world recognition metrics.

The paper is ambiguous here (spec §4.2); we follow its recommendation: baselines (meta-)trained on
base classes are adapted on the open-world tasks' shots; learngene's individual model inherits from
the collective model *after* it recognised open-world instances (P̂ = 1 − max softmax > λ_open) and
learnt those classes incrementally.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench import paper
from bench.experiments.selection import OPEN_WORLD_VARIANT, artifact_seeds, table2_methods
from bench.report import ReportContext, caption, method_table
from bench.runner import Cell, Env, RunSpec, run_episodes

NAME = "table2"
DESCRIPTION = "Table 2: all methods on open-world classes (20-shot), + open-world recognition metrics"
RECONSTRUCTED = ("**Reconstructed protocol** (the paper is ambiguous): 5-way 20-shot tasks on the 16 open-world "
                 "classes; learngene inherits from the collective model after it recognised and learnt them.")


def cells(spec: RunSpec, methods: list[str]) -> list[Cell]:
    ep = spec.profile["episodes"]
    shots = int(ep.get("open_world_shots", 20))
    chosen = table2_methods(methods)
    out = [Cell(NAME, m, {"pool": "open_world", "shots": shots, "seed": s})
           for s in range(int(ep["seeds"])) for m in chosen]
    if OPEN_WORLD_VARIANT in chosen:
        out += [Cell(NAME, OPEN_WORLD_VARIANT, {"analysis": "recognition", "seed": s}) for s in artifact_seeds(spec.profile)]
    return out


def _recognition_rows(env: Env, seed: int) -> list[dict]:
    from methods.learngene.method import open_world_rows

    rows = []
    for r in open_world_rows(env.source(seed), env.spec.profile, env.cache, env.device):
        kind = r.get("kind", "")
        stage = r.get("stage")
        for k, v in r.items():
            if k in {"dataset", "kind", "stage"} or isinstance(v, bool) or not isinstance(v, int | float):
                continue
            rows.append({"metric": f"{kind}.{stage}.{k}" if stage else f"{kind}.{k}", "value": float(v),
                         "positive": r.get("positive", "")})
    return rows


def run(cell: Cell, env: Env) -> list[dict]:
    p = cell.params
    if p.get("analysis") == "recognition":
        return _recognition_rows(env, p["seed"])
    return run_episodes(env, cell.method, p["pool"], p["shots"], p["seed"])


def _paper(method: str, image_size: int):
    return paper.table2("learngene" if method == OPEN_WORLD_VARIANT else method, image_size)


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
