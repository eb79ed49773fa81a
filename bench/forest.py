"""The verdict figure: every method's paired accuracy difference to a reference method (a forest plot).

Why: it answers the question readers come with ("what beats learngene, by how much, and is it
resolved?") before any table. Each point is `bench.summary.paired_gap` (method − reference over the
episodes both ran, 95% Student-t CI), the statistic of `results/README.md` and `bench compare`; the
colour is the same verdict (`bench.summary.verdict`). One figure per dataset and profile, one row
per image size, one panel per shot count, methods in the same order in every panel. It is drawn from
the collected rows alone, so `report` rebuilds it from `runs.csv` when the cells are not kept.
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

import bench.plots  # noqa: F401 - the Agg backend and the shared seaborn theme
from bench.compare import paired_gaps
from bench.report import ReportContext
from bench.summary import verdict

VERDICT_STYLE = {  # verdict word -> (colour, legend text); colour-blind-safe
    "yes": (sns.color_palette("colorblind")[0], "better than {ref} (CI above 0)"),
    "no": (sns.color_palette("colorblind")[3], "worse than {ref} (CI below 0)"),
    "not": ("0.55", "not resolved (CI spans 0)"),
}


def forest_table(df: pd.DataFrame, reference: str, experiment: str = "table3") -> pd.DataFrame:
    """One row per (dataset, image size, profile, shots, method): mean, half, n of method − reference."""
    rows = []
    others = sorted(set(df.loc[df.experiment == experiment, "method"]) - {reference})
    for method in others:
        for g in paired_gaps(df, method, reference, experiment):
            rows.append({**g._asdict(), "method": method,
                         "verdict": verdict(g.mean, g.half).split()[0]})  # n = 1: no CI, not resolved
    return pd.DataFrame(rows)


def forest_plot(tab: pd.DataFrame, reference: str, path: Path, title: str) -> Path:
    """Rows = image sizes, columns = shots; x = accuracy points of method − reference."""
    sizes = sorted(tab.image_size.unique())
    shots = sorted(tab.shots.unique())
    order = tab.groupby("method")["mean"].mean().sort_values(ascending=False).index.tolist()
    ypos = {m: i for i, m in enumerate(order)}
    lo = float(((tab["mean"] - tab["half"].fillna(0)) * 100).min())
    hi = float(((tab["mean"] + tab["half"].fillna(0)) * 100).max())
    pad = 0.06 * (hi - lo or 1.0)
    label_room = 0.55 * (hi - lo or 1.0)  # right margin of each panel for the numbers
    height = 1.1 + len(sizes) * (0.8 + 0.34 * len(order))
    fig, axes = plt.subplots(len(sizes), len(shots), squeeze=False, sharey=True, layout="constrained",
                             figsize=(1.4 + 4.8 * len(shots), height))
    for r, px in enumerate(sizes):
        for c, k in enumerate(shots):
            ax = axes[r][c]
            sub = tab[(tab.image_size == px) & (tab.shots == k)]
            ax.axvline(0, color="0.15", lw=1.1, zorder=1)
            for row in sub.itertuples():
                colour = VERDICT_STYLE[row.verdict][0]
                half = 0.0 if pd.isna(row.half) else row.half * 100
                ax.errorbar(row.mean * 100, ypos[row.method], xerr=half, fmt="o", ms=6, color=colour,
                            ecolor=colour, elinewidth=2.2, capsize=3, zorder=3)
                ax.text(0.985, ypos[row.method], f"{row.mean * 100:+.1f} ± {half:.1f} (n={row.n})", ha="right", va="center",
                        fontsize=8.5, color=colour, transform=ax.get_yaxis_transform())
            ax.set_xlim(lo - pad, hi + pad + label_room)
            ax.axvspan(hi + pad, hi + pad + label_room, color="white", zorder=2)  # the numbers' column
            ax.set_xticks([t for t in ax.get_xticks() if lo - pad <= t <= hi + pad])
            ax.set_ylim(len(order) - 0.5, -0.5)
            ax.set_yticks(range(len(order)), order)
            ns = sorted({int(v) for v in sub["n"]}) if len(sub) else [0]  # rows may differ (episodes per row)
            n_text = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}–{ns[-1]}"
            ax.set_title(f"{px} px, {k}-shot ({n_text} paired episodes; ± = 95% t-CI)", fontsize=11)
            if r == len(sizes) - 1:
                ax.set_xlabel(f"accuracy of method − {reference} (points)")
            ax.tick_params(axis="y", labelsize=10)
    handles = [plt.Line2D([], [], marker="o", ls="-", color=col, lw=2.2, label=text.format(ref=reference))
               for col, text in VERDICT_STYLE.values()]
    fig.suptitle(title, fontsize=12.5)
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False, fontsize=10)
    bench.plots.save_figure(fig, path)
    plt.close(fig)
    return path


def figure_name(dataset: str, profile: str) -> str:
    return f"forest_{dataset}_{profile}.png"


def write_forest(df: pd.DataFrame, ctx: ReportContext, reference: str = "learngene",
                 experiment: str = "table3") -> list[Path]:
    """One forest plot per dataset/profile whose Table 3 has the reference and another method."""
    sub = df[(df.experiment == experiment) & (df.metric == "accuracy")]
    if sub.empty:
        return []
    if reference not in set(sub.method):
        print(f"note: no forest plot: '{reference}' has no {experiment} results (pass report --reference METHOD)",
              file=sys.stderr)
        return []
    written = []
    for (dataset, profile), g in sub.groupby(["dataset", "profile"], sort=True):
        tab = forest_table(g, reference, experiment)
        if tab.empty:
            continue
        synthetic = " — SYNTHETIC data, checks the machinery only" if bool(g["synthetic"].any()) else ""
        title = (f"Which methods beat {reference}? {dataset}, profile {profile}{synthetic}\n"
                 f"paired difference over the same Table 3 episodes, mean ± 95% Student-t CI")
        ctx.figures_dir.mkdir(parents=True, exist_ok=True)
        written.append(forest_plot(tab, reference, ctx.figures_dir / figure_name(str(dataset), str(profile)), title))
    return written

