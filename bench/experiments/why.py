"""Why learngene loses here: the ancestor comparison and the inheritance matrix, on Table 3's
novel episodes (the same seeds and episodes as Table 3, so every row is paired with scratch).

- Ancestors: learngene from the continual collective model (the paper), from the same network trained
  jointly, from the fine-tuning baseline's pre-trained network, from a random network (with fresh BN
  statistics, as inherited, and with BN statistics of base-class images); beside each,
  the ancestor's own nearest-class-mean accuracy (its probe); scratch, fine-tuning (frozen features)
  and full fine-tuning (all 7 pre-trained blocks trained) as references.
- Matrix: k = 1..6 inherited top blocks (k = 0 is scratch exactly), position x ancestor x EWC-trained
  or frozen, and the top blocks with the individual network pooling where the ancestor did (the
  resolution confound: at 32 px the collective's top blocks ran at 2x2, the template runs them at 4x4).

Every row is one registered study method plus cell options (`inherit_blocks`, `inherit_position`,
`frozen_gene`, `match_resolution`). Only a profile with an `[experiments.why]` section runs it
(bench/profiles/study.toml), so `--experiment all` under the paper's profiles does not grow; the
section's methods are run where `--method` selects them (the study rows are not in `all`: name them).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import matplotlib.ticker
import pandas as pd
import seaborn as sns

from bench.cell_env import Cell, Env, RunSpec, run_cell_episodes
from bench.plots import aggregate, save_figure
from bench.profiles import ExperimentSettings, experiment_settings
from bench.report import ReportContext
from bench.stats import mean_ci95
from bench.verdicts import DECISIVE_HALF_WIDTH
from methods import registry

NAME = "why"
DESCRIPTION = "Why learngene loses: ancestors, inherited blocks k, position, frozen vs EWC, resolution"
REFERENCE = "scratch"


@dataclass(frozen=True)
class Settings(ExperimentSettings):
    """`[experiments.why]`: which rows run (each a registered method, with cell options for the matrix)."""

    shots: tuple[int, ...] = field(default=(10,), metadata={"gt": 0})
    """5-way shots (Table 3's episodes of those shots)."""
    tasks: int | None = None
    """Episodes per seed (None = [episodes] tasks)."""
    references: tuple[str, ...] = ("scratch", "finetune", "finetune-full")
    """Rows run as registered: scratch (the paired reference), fine-tuning, full fine-tuning."""
    ancestors: tuple[str, ...] = ("learngene-continual", "learngene-joint", "learngene-pretrained", "learngene-random",
                                  "learngene-random-bn")
    """Learngene variants compared at the top 3 blocks, EWC-trained (one per ancestor)."""
    probes: tuple[str, ...] = ("collective-ncm", "ancestor-ncm-joint", "ancestor-ncm-pretrained", "ancestor-ncm-random",
                               "ancestor-ncm-random-bn")
    """Each ancestor's own feature quality (nearest class mean through its blocks)."""
    k_ancestors: tuple[str, ...] = ("learngene-continual", "learngene-joint")
    """Variants whose number of inherited top blocks is swept."""
    ks: tuple[int, ...] = field(default=(1, 2, 3, 4, 5, 6), metadata={"gt": 0})
    """Inherited top blocks (1..6: one fresh front block at least; k = 0 is scratch)."""
    position_ancestors: tuple[str, ...] = ("learngene-continual", "learngene-joint", "learngene-random",
                                           "learngene-random-bn")
    """Variants whose position x (EWC | frozen) is swept at 3 blocks."""
    positions: tuple[str, ...] = ("front", "middle", "top")
    """Where the 3 blocks are taken from."""
    frozen: tuple[bool, ...] = (False, True)
    """EWC-trained (false) and frozen (true) inherited blocks."""
    matched: tuple[str, ...] = ("learngene-continual", "learngene-joint")
    """Variants also run with the individual pooling where the ancestor did (top 3, EWC)."""


def _lg(k: int = 3, position: str = "top", frozen: bool = False, matched: bool = False) -> dict[str, Any]:
    return {"inherit_blocks": k, "inherit_position": position, "frozen_gene": frozen, "match_resolution": matched}


def row_label(method: str, options: dict[str, Any]) -> str:
    """How a row is named in the table: the method, then the options that differ from the paper's."""
    if not options:
        return method
    bits = [f"k={options['inherit_blocks']}", options["inherit_position"]]
    bits += ["frozen"] * bool(options["frozen_gene"]) + ["matched px"] * bool(options["match_resolution"])
    return f"{method} [{' '.join(bits)}]"


def rows(cfg: Settings) -> list[tuple[str, dict[str, Any]]]:
    """Every (method, options) row, each once (the top-3 EWC row is shared by the panels)."""
    out: list[tuple[str, dict[str, Any]]] = []
    wanted = [(m, {}) for m in (*cfg.references, *cfg.probes)]
    wanted += [(m, _lg()) for m in cfg.ancestors]
    wanted += [(m, _lg(k)) for m in cfg.k_ancestors for k in cfg.ks]
    wanted += [(m, _lg(3, p, f)) for m in cfg.position_ancestors for p in cfg.positions for f in cfg.frozen]
    wanted += [(m, _lg(matched=True)) for m in cfg.matched]
    for row in wanted:
        if row not in out:
            out.append(row)
    return out


def cells(spec: RunSpec, methods: list[str]) -> list[Cell]:
    if NAME not in spec.profile.get("experiments", {}):
        return []  # a study: only a profile that asks for it (bench/profiles/study.toml)
    cfg = experiment_settings(spec.profile, NAME, Settings)
    chosen = set(methods)
    return [Cell(NAME, m, {"row": row_label(m, o), "pool": "novel", "shots": k, "seed": s, "method_options": o})
            for s in cfg.seed_range(spec.profile) for k in cfg.shots for m, o in rows(cfg) if m in chosen]


def run(cell: Cell, env: Env) -> list[dict]:
    cfg = experiment_settings(env.spec.profile, NAME, Settings)
    return run_cell_episodes(env, cell, cell.params["pool"], cfg.tasks, curve=False)


def paired_diff(acc: pd.DataFrame, row: str, other: str = REFERENCE) -> pd.Series:
    """Per-episode `row` minus `other` accuracy in points, on the (seed, episode) pairs both ran."""
    a = acc[acc.row == row].set_index(["seed", "episode"])["value"]
    b = acc[acc.row == other].set_index(["seed", "episode"])["value"]
    both = a.to_frame("a").join(b.to_frame("b"), how="inner")
    return (both["a"] - both["b"]) * 100


def paired(acc: pd.DataFrame, row: str, other: str = REFERENCE) -> tuple[float, float, int]:
    """Mean, 95% CI half-width and n of `row` minus `other`, paired by seed and episode (points)."""
    return mean_ci95(paired_diff(acc, row, other))


def contrasts(cfg: Settings) -> list[tuple[str, str, str]]:
    """(question, row, compared row) pairs each study question reads: ancestor (each against the paper's
    continual one), position (top against front and middle), frozen against EWC, another ancestor's
    frozen top blocks against the paper's trained ones, matched pools against the template's, and k
    against the paper's 3."""
    top = {m: row_label(m, _lg()) for m in (*cfg.ancestors, *cfg.k_ancestors, *cfg.position_ancestors)}
    paper = top.get(cfg.ancestors[0]) if cfg.ancestors else None
    out = [("ancestor", top[m], paper) for m in cfg.ancestors[1:] if paper]
    out += [("position", top[m], row_label(m, _lg(3, p))) for m in cfg.position_ancestors for p in cfg.positions
            if p != "top"]
    out += [("frozen", row_label(m, _lg(3, p, True)), row_label(m, _lg(3, p))) for m in cfg.position_ancestors
            for p in cfg.positions if True in cfg.frozen]
    # a frozen ancestor's top blocks against the paper's trained ones: are the inherited weights worse
    # than fixed ones of another ancestor (random with base-image BN statistics, say)?
    out += [("frozen vs paper", row_label(m, _lg(3, "top", True)), paper) for m in cfg.position_ancestors
            if paper and "top" in cfg.positions and True in cfg.frozen and row_label(m, _lg()) != paper]
    out += [("resolution", row_label(m, _lg(matched=True)), top[m]) for m in cfg.matched if m in top]
    out += [("k", row_label(m, _lg(k)), top[m]) for m in cfg.k_ancestors for k in cfg.ks if k != 3]
    return out


def decide(m: float, h: float) -> str:
    """The suite's decision rule (bench.verdicts): the CI excludes 0, or its half-width is within
    `DECISIVE_HALF_WIDTH` points."""
    if abs(m) > h:
        return "differs"
    return f"no difference beyond ±{DECISIVE_HALF_WIDTH:g}" if h <= DECISIVE_HALF_WIDTH else "undecided"


def contrast_results(acc: pd.DataFrame, cfg: Settings) -> list[tuple[str, str, str, float, float, int]]:
    """(question, row, compared row, paired mean, 95% half-width, n) for every contrast both of whose
    rows ran; 'ancestor vs scratch' (each ancestor's top-3 row against scratch) first."""
    top = [row_label(m, _lg()) for m in cfg.ancestors]
    wanted = [("ancestor vs scratch", r, REFERENCE) for r in top] + contrasts(cfg)
    return [(q, a, b, *paired(acc, a, b)) for q, a, b in wanted if {a, b} <= set(acc.row)]


def _contrast_lines(acc: pd.DataFrame, cfg: Settings) -> list[str]:
    """One line per contrast both of whose rows ran: the paired difference and whether it is decided."""
    lines = [f"| {q} | {a} − {b} | {m:+.2f} ± {h:.2f} | {n} | {decide(m, h)} |"
             for q, a, b, m, h, n in contrast_results(acc, cfg) if q != "ancestor vs scratch"]
    if not lines:
        return []
    return ["", "| question | contrast | paired difference (points) | n | verdict |", "|---|---|---|---|---|", *lines]


def verdict_sentences(df: pd.DataFrame, ctx: ReportContext) -> list[str]:
    """`results/README.md`'s "Why learngene loses here": one sentence per study contrast (paired 95% t-CI, n)."""
    out = []
    for key, g in ctx.groups(df[df.experiment == NAME]):
        cfg = experiment_settings(ctx.profile(key) or {}, NAME, Settings)
        for shots in sorted(g["shots"].dropna().unique()):
            acc = g[(g.metric == "accuracy") & (g.shots == shots)]
            for q, a, b, m, h, n in contrast_results(acc, cfg):
                out.append(f"- {key.dataset} {key.image_size}px, {int(shots)}-shot, {q}: {a} − {b} = "
                           f"{m:+.2f} ± {h:.2f} points (paired, n={n}): **{decide(m, h)}**")
    return out


def probe_of(method: str, probes: list[str]) -> str | None:
    """The probe of the ancestor `method` inherits from (the registered `ancestor` option they share)."""
    def ancestor(name: str) -> str:
        return registry.entry(name).options.get("ancestor", "continual")
    return next((p for p in probes if registry.entry(method).settings is registry.entry(p).settings
                 and ancestor(p) == ancestor(method)), None)


def _px(g: pd.DataFrame, row: str) -> str:
    """'trained 2 → runs 4 px' for the row's first and last inherited block ('' for rows inheriting none)."""
    vals = g[g.row == row].groupby("metric")["value"].first()
    names = ["gene_trained_px_first", "gene_trained_px_last", "gene_runs_px_first", "gene_runs_px_last"]
    if not set(names) <= set(vals.index):
        return ""
    a, b, c, d = (int(vals[n]) for n in names)
    return f"{a}{f'–{b}' if b != a else ''} → {c}{f'–{d}' if d != c else ''}"


def _section(g: pd.DataFrame, shots: int, heading: str, cfg: Settings) -> str:
    acc = g[(g.metric == "accuracy") & (g.shots == shots)]
    params = g[g.metric == "params"].groupby("row")["value"].first()
    known = [row_label(m, o) for m, o in rows(cfg)]
    order = [r for r in known if r in set(acc.row)] + sorted(set(acc.row) - set(known))
    probes = {m: probe_of(m, [p for p in cfg.probes if p in set(acc.method)]) for m in set(acc.method)}
    lines = [heading, "", "| row | accuracy % (mean ± 95% CI) | − scratch, paired (points) | n | its ancestor's NCM % "
             "| inherited blocks' px (trained → runs) | parameters |", "|---|---|---|---|---|---|---|"]
    for row in order:
        r = acc[acc.row == row]
        mean, half, n = mean_ci95(r["value"] * 100)
        d, dh, dn = paired(acc, row) if row != REFERENCE else (float("nan"), float("nan"), 0)
        diff = "" if row == REFERENCE or dn == 0 else f"{d:+.2f} ± {dh:.2f}"
        probe = probes.get(r["method"].iloc[0])
        ncm = "" if probe is None or row in cfg.probes else "{:.2f} ± {:.2f}".format(
            *mean_ci95(acc[acc.row == probe]["value"] * 100)[:2])
        p = f"{int(params[row]):,}" if row in params.index else ""
        lines.append(f"| {row} | {mean:.2f} ± {half:.2f} | {diff} | {n} | {ncm} | {_px(g, row)} | {p} |")
    return "\n".join(lines + _contrast_lines(acc, cfg))


def k_figure(g: pd.DataFrame, shots: int, path: Path, title: str, cfg: Settings) -> Path | None:
    """Accuracy against k (inherited top blocks, EWC, template pools), one line per `k_ancestors` variant,
    k = 0 being scratch; scratch and full fine-tuning as reference lines."""
    acc = g[(g.metric == "accuracy") & (g.shots == shots)]
    if not {"opt_inherit_blocks", "opt_inherit_position", "opt_frozen_gene", "opt_match_resolution"} <= set(acc):
        return None  # no learngene row ran
    lines = acc[acc.method.isin(cfg.k_ancestors) & acc["opt_inherit_position"].eq("top")
                & ~acc["opt_frozen_gene"].fillna(False).astype(bool)
                & ~acc["opt_match_resolution"].fillna(False).astype(bool)]
    if lines.empty or lines["opt_inherit_blocks"].nunique() < 2:
        return None
    scratch = acc[acc.row == REFERENCE]
    zero = pd.concat([scratch.assign(method=m, opt_inherit_blocks=0) for m in lines["method"].unique()])
    agg = aggregate(pd.concat([lines, zero]).assign(k=lambda d: d["opt_inherit_blocks"].astype(int)), "k", "method")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for colour, (m, a) in zip(sns.color_palette("colorblind", agg["method"].nunique()), agg.groupby("method"),
                              strict=False):
        a = a.sort_values("k")
        ax.plot(a["k"], a["mean"] * 100, marker="o", ms=3, color=colour, label=f"{m} (n={int(a['n'].min())})")
        ax.fill_between(a["k"], (a["mean"] - a["half"]) * 100, (a["mean"] + a["half"]) * 100, color=colour, alpha=0.2)
    for ref, style in ((REFERENCE, ":"), ("finetune-full", "--")):
        v = acc[acc.row == ref]["value"]
        if not v.empty:
            ax.axhline(v.mean() * 100, color="0.3", ls=style, lw=1, label=f"{ref} (n={len(v)})")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("inherited top blocks k (7 - k fresh front blocks; k = 0 is scratch)")
    ax.set_ylabel("test accuracy on novel classes (%)")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def report(df: pd.DataFrame, ctx: ReportContext) -> list[Path]:
    out, sections = [], []
    for key, g in ctx.groups(df):
        cfg = experiment_settings(ctx.profile(key) or {}, NAME, Settings)
        for shots in sorted(g["shots"].dropna().unique()):
            sections.append(_section(g, shots, f"## {key.dataset} {key.image_size}px, 5-way {int(shots)}-shot, "
                                               f"profile {key.profile}", cfg))
            fig = k_figure(g, shots, ctx.figure_path(f"why_k_{int(shots)}shot", key),
                           f"Accuracy against inherited blocks k\n{key.dataset} {key.image_size}px, "
                           f"5-way {int(shots)}-shot, profile {key.profile}", cfg)
            out += [fig] if fig else []
    note = ("Rows: registered methods with cell options (k inherited top blocks, position, frozen = weights and BN "
            "statistics fixed, matched px = the individual pools where the ancestor did). Accuracy: mean ± 95% t-CI "
            "over episodes × seeds; − scratch: the paired difference on the same episodes. Its ancestor's NCM: "
            "nearest class mean through the ancestor's blocks on the same episodes (no support-set training). "
            "px: the feature-map side the first–last inherited block was trained at in its ancestor → runs at here.")
    return [ctx.write_table(NAME, f"# Why learngene loses here\n\n{note}", sections), *out]
