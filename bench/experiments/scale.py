"""Whether scale changes the headline gap (a scale trend): learngene − scratch on Table 3's novel
episodes at several sizes of the collective model and the individual network together, at more
collective epochs per task, and at another image size, set against the collective model's training
compute (FLOPs).

Each point is a width w (the collective model and the individual network both at w, so learngene and
scratch keep training the same network: the capacity control) or a multiple of `[collective] epochs`
at the profile's width; the image-size point is the same experiment run with `--image-size` (at an
image size other than the profile's `[data] image_size`, only the profile's own width and epochs run).
Every row is a registered method (`scratch`, `learngene-continual`) with cell options (`width`,
`collective.width`, `collective.epochs`), so each point trains its own collective model (cached by its
settings) and the profile's point reuses the one `make run` trained. A learngene cell also stores its
ancestor's training FLOPs and task accuracies (methods/learngene/collective_facts.py) once.

Only a profile with an `[experiments.scale]` section runs it (bench/profiles/study.toml).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns

from bench.cell_env import Cell, Env, RunSpec, cell_options, run_cell_episodes
from bench.experiments.why import decide, paired_diff
from bench.plots import save_figure
from bench.profiles import ExperimentSettings, experiment_settings
from bench.report import GroupKey, ReportContext
from bench.stats import mean_ci95

NAME = "scale"
DESCRIPTION = "Scale trend of learngene - scratch: widths, collective epochs, image size, against collective FLOPs"
REFERENCE = "scratch"
LEARNGENE = "learngene-continual"
#: Per-cell numbers a learngene cell stores once (episode-free rows), from its ancestor.
FACTS = ("ancestor_train_flops", "ancestor_task_acc", "ancestor_final_acc")


@dataclass(frozen=True)
class Settings(ExperimentSettings):
    """`[experiments.scale]`: the points of the trend."""

    shots: tuple[int, ...] = field(default=(10,), metadata={"gt": 0})
    """5-way shots (Table 3's episodes of those shots)."""
    tasks: int | None = None
    """Episodes per seed (None = [episodes] tasks)."""
    widths: tuple[float, ...] = field(default=(0.125, 0.25, 0.5), metadata={"gt": 0})
    """Widths of the collective model and the individual network together (x the paper's channels)."""
    epoch_factors: tuple[int, ...] = field(default=(3,), metadata={"gt": 0})
    """Multiples of `[collective] epochs` per task, at the profile's width (1 is the profile's own point)."""
    grid_image_size: int = field(default=32, metadata={"gt": 0})
    """The image size every point runs at; at another (`--image-size`), only the profile's own width and
    epochs run (the image-size point), and the gap there is set against the one at this size."""


def points(cfg: Settings, profile: dict[str, Any], image_size: int) -> list[tuple[float, int]]:
    """(width, collective epochs per task) of every point run at `image_size`: all of them at
    `grid_image_size`, else only the profile's own point (the image-size point)."""
    width, epochs = float(profile["individual"]["width"]), int(profile["collective"]["epochs"])
    if image_size != cfg.grid_image_size:
        return [(width, epochs)]
    out = [(float(w), epochs) for w in cfg.widths]
    out += [(width, epochs * int(f)) for f in cfg.epoch_factors if f != 1]
    return list(dict.fromkeys(out))


def row_label(method: str, width: float, epochs: int) -> str:
    """'learngene-continual [width 0.5, 10 epochs]': the method and its point."""
    return f"{method} [width {width:g}, {epochs} epochs]" if method != REFERENCE else f"{method} [width {width:g}]"


def rows(cfg: Settings, profile: dict[str, Any], image_size: int) -> list[tuple[str, dict[str, Any], str]]:
    """(method, cell options, row label) of every row at `image_size`: one learngene row per point and one
    scratch row per width (scratch does not read the collective's epochs)."""
    out: list[tuple[str, dict[str, Any], str]] = []
    for w, e in points(cfg, profile, image_size):
        scratch = (REFERENCE, {"width": w}, row_label(REFERENCE, w, e))
        if scratch not in out:
            out.append(scratch)
        out.append((LEARNGENE, {"width": w, "collective.width": w, "collective.epochs": e}, row_label(LEARNGENE, w, e)))
    return out


def cells(spec: RunSpec, methods: list[str]) -> list[Cell]:
    if NAME not in spec.profile.get("experiments", {}):
        return []  # a study: only a profile that asks for it (bench/profiles/study.toml)
    cfg = experiment_settings(spec.profile, NAME, Settings)
    chosen = set(methods)
    return [Cell(NAME, m, {"row": label, "pool": "novel", "shots": k, "seed": s, "method_options": o})
            for s in cfg.seed_range(spec.profile) for k in cfg.shots
            for m, o, label in rows(cfg, spec.profile, spec.image_size) if m in chosen]


def run(cell: Cell, env: Env) -> list[dict]:
    cfg = experiment_settings(env.spec.profile, NAME, Settings)
    out = run_cell_episodes(env, cell, cell.params["pool"], cfg.tasks, curve=False)
    method = env.prepared(cell.method, cell.params["seed"], cell_options(cell))
    facts = method.ancestor_facts() if getattr(method, "ancestor_facts", None) else {}
    return out + [{"metric": k, "value": float(facts[k])} for k in FACTS if k in facts]


def point_table(g: pd.DataFrame, shots: int) -> pd.DataFrame:
    """One row per learngene point (any image size): its settings, its ancestor's numbers, both accuracies,
    the paired gap to scratch at the same width and image size, and its n."""
    acc = g[(g.metric == "accuracy") & (g.shots == shots)]
    out = []
    for (px, row), r in acc[acc.method == LEARNGENE].groupby(["image_size", "row"], sort=True):
        w, e = float(r["opt_width"].iloc[0]), int(r["opt_collective.epochs"].iloc[0])
        here = acc[acc.image_size == px]
        ref = row_label(REFERENCE, w, e)
        gap = paired_diff(here, row, ref)
        m, h, n = mean_ci95(gap)
        facts = g[(g.row == row) & (g.image_size == px) & g.metric.isin(FACTS)].groupby("metric")["value"].first()
        out.append({"px": int(px), "width": w, "epochs": e, "row": row, "scratch_row": ref,
                    "flops": facts.get("ancestor_train_flops", float("nan")),
                    "task_acc": facts.get("ancestor_task_acc", float("nan")) * 100,
                    "final_acc": facts.get("ancestor_final_acc", float("nan")) * 100,
                    "scratch": mean_ci95(here[here.row == ref]["value"] * 100),
                    "learngene": mean_ci95(r["value"] * 100), "gap": m, "gap_half": h, "n": n})
    return pd.DataFrame(out).sort_values(["flops", "px"]).reset_index(drop=True) if out else pd.DataFrame()


def _base_point(pts: pd.DataFrame, profile: dict[str, Any] | None) -> pd.Series | None:
    """The profile's own point (its width and epochs at `grid_image_size`): what the others are set against."""
    if pts.empty or not profile:
        return None
    w, e = float(profile["individual"]["width"]), int(profile["collective"]["epochs"])
    px = experiment_settings(profile, NAME, Settings).grid_image_size
    hit = pts[(pts.width == w) & (pts.epochs == e) & (pts.px == px)]
    return hit.iloc[0] if len(hit) else None


def trend_contrasts(g: pd.DataFrame, shots: int, profile: dict[str, Any] | None) -> list[tuple[str, float, float, int]]:
    """(point, gap there − gap at the profile's point, 95% half-width, n) for every other point: the change
    of the gap, paired by (seed, episode) (the same episodes at every point)."""
    pts = point_table(g, shots)
    base = _base_point(pts, profile)
    if base is None:
        return []
    acc = g[(g.metric == "accuracy") & (g.shots == shots)]
    ref = paired_diff(acc[acc.image_size == base.px], base.row, base.scratch_row)
    out = []
    for p in pts.itertuples():
        if p.row == base.row and p.px == base.px:
            continue
        here = paired_diff(acc[acc.image_size == p.px], p.row, p.scratch_row)
        both = here.to_frame("a").join(ref.to_frame("b"), how="inner")
        out.append((_point_name(p), *mean_ci95(both["a"] - both["b"])))
    return out


def _point_name(p: Any) -> str:
    return f"width {p.width:g}, {p.epochs} epochs, {p.px} px"


def _ci(v: tuple[float, float, int]) -> str:
    return f"{v[0]:.2f} ± {v[1]:.2f}"


def verdict_sentences(df: pd.DataFrame, ctx: ReportContext) -> list[str]:
    """`results/README.md`'s scale sentences: the gap at each point, and its change from the profile's point."""
    out = []
    sub = df[df.experiment == NAME]
    for (ds, _), g in sub.groupby(["dataset", "profile"], sort=True):
        profile = _profile_of(ctx, g)
        for shots in sorted(g["shots"].dropna().unique()):
            for p in point_table(g, shots).itertuples():
                out.append(f"- {ds}, {int(shots)}-shot, scale, {_point_name(p)} (collective training "
                           f"{p.flops / 1e12:.3g} TFLOPs): learngene − scratch = {p.gap:+.2f} ± {p.gap_half:.2f} points "
                           f"(paired, n={p.n}): **{decide(p.gap, p.gap_half)}**")
            for name, m, h, n in trend_contrasts(g, shots, profile):
                out.append(f"- {ds}, {int(shots)}-shot, scale, gap at {name} − gap at the profile's point = "
                           f"{m:+.2f} ± {h:.2f} points (paired, n={n}): **{decide(m, h)}**")
    return out


def _profile_of(ctx: ReportContext, g: pd.DataFrame) -> dict[str, Any] | None:
    """The profile a run of the group recorded (at its smallest image size: the sizes differ only there)."""
    for px in sorted(g["image_size"].unique()):
        prof = ctx.profile(GroupKey(str(g["dataset"].iloc[0]), int(px), str(g["profile"].iloc[0])))
        if prof:
            return prof
    return None


def _section(g: pd.DataFrame, shots: int, heading: str, profile: dict[str, Any] | None) -> str:
    pts = point_table(g, shots)
    lines = [heading, "", "| px | width | collective epochs / task | collective training TFLOPs | collective task "
             "accuracy % (just learnt / at the end) | scratch % | learngene % | learngene − scratch, paired (points) "
             "| n | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for p in pts.itertuples():
        lines.append(f"| {p.px} | {p.width:g} | {p.epochs} | {p.flops / 1e12:.3g} | {p.task_acc:.1f} / "
                     f"{p.final_acc:.1f} | {_ci(p.scratch)} | {_ci(p.learngene)} | {p.gap:+.2f} ± {p.gap_half:.2f} "
                     f"| {p.n} | {decide(p.gap, p.gap_half)} |")
    trend = trend_contrasts(g, shots, profile)
    if trend:
        lines += ["", "| point | gap there − gap at the profile's point (points, paired) | n | verdict |",
                  "|---|---|---|---|"]
        lines += [f"| {name} | {m:+.2f} ± {h:.2f} | {n} | {decide(m, h)} |" for name, m, h, n in trend]
    return "\n".join(lines)


def gap_figure(g: pd.DataFrame, shots: int, path: Path, title: str) -> Path | None:
    """The gap (learngene − scratch, paired 95% CI) against the collective model's training FLOPs, one marker
    per point, labelled; the axis spans the measured points only."""
    pts = point_table(g, shots)
    if len(pts) < 2 or pts["flops"].isna().any():
        return None
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    colours = dict(zip(sorted(pts["px"].unique()), sns.color_palette("colorblind", pts["px"].nunique()), strict=False))
    for px, colour in colours.items():
        ax.plot([], [], "o", color=colour, label=f"{px} px")
    logs = np.log10(pts["flops"].to_numpy())
    for i, p in enumerate(pts.itertuples()):
        ax.errorbar(p.flops, p.gap, yerr=p.gap_half, fmt="o", ms=5, capsize=3, color=colours[p.px])
        # a label goes left of its marker when a point close to its right at about its height would overlap it
        crowded = any(0 < logs[j] - logs[i] < 0.35 and abs(pts["gap"].iloc[j] - p.gap) < 3 for j in range(len(pts)))
        ax.annotate(f"width {p.width:g}, {p.epochs} ep/task", (p.flops, p.gap), textcoords="offset points",
                    xytext=(-6, 4) if crowded else (6, 4), ha="right" if crowded else "left", fontsize=8)
    ax.axhline(0, color="0.3", ls=":", lw=1, label="no gap (learngene = scratch)")
    ax.set_xscale("log")
    ax.margins(x=0.25)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on a short log axis
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("collective model's training FLOPs (forward + backward)")
    ax.set_ylabel("learngene − scratch (points, paired 95% CI)")
    lo, hi = int(pts["n"].min()), int(pts["n"].max())
    ax.legend(fontsize=8, loc="best", title=f"n = {lo if lo == hi else f'{lo}-{hi}'} paired episodes per point",
              title_fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def report(df: pd.DataFrame, ctx: ReportContext) -> list[Path]:
    out, sections = [], []
    for (ds, prof), g in df.groupby(["dataset", "profile"], sort=True):
        profile = _profile_of(ctx, g)
        px = experiment_settings(profile, NAME, Settings).grid_image_size if profile else int(g["image_size"].min())
        key = GroupKey(str(ds), px, str(prof))
        for shots in sorted(g["shots"].dropna().unique()):
            sections.append(_section(g, shots, f"## {ds}, 5-way {int(shots)}-shot, profile {prof}", profile))
            fig = gap_figure(g, shots, ctx.figure_path(f"scale_gap_{int(shots)}shot", key),
                             f"Learngene − scratch against the collective's training compute\n{ds}, 5-way "
                             f"{int(shots)}-shot, profile {prof}")
            out += [fig] if fig else []
    note = ("Points: the collective model and the individual network at one width together (learngene and scratch "
            "train the same network), or more collective epochs per task, or another image size. Collective "
            "training TFLOPs: forward + backward FLOPs of every continual task's image passes at the widths it "
            "trained at (torch's FlopCounterMode; BN, ReLU, pooling and evaluation left out). Task accuracy: the "
            "collective's held-out 5-way accuracy on each task just after learning it / on every task at the end. "
            "Accuracy: mean ± 95% t-CI over episodes x seeds; the gap is paired over the same episodes, and so is "
            "its change from the profile's point.")
    return [ctx.write_table(NAME, f"# Does scale change the gap?\n\n{note}", sections), *out]
