"""`results/README.md`: a page a reader can skim — what ran, how long, which claims hold."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from bench.atomic import atomic_write_text
from bench.experiments.scale import verdict_sentences as scale_verdicts
from bench.experiments.selection import facts_of, headline, with_role
from bench.experiments.why import verdict_sentences as why_verdicts
from bench.report import ReportContext, method_sort_key
from bench.stats import mean_ci95
from bench.verdicts import DECISIVE_HALF_WIDTH, figure_verdicts, floor_check, n_to_decide
from methods import registry


def paired_gap(df: pd.DataFrame, a: str, b: str) -> tuple[float, float, int] | None:
    """Mean ± 95% CI of accuracy(a) − accuracy(b) over paired episodes (same seed, shots, episode).

    `df` holds one dataset/size/profile (and experiment); `bench compare` and the forest plot use it too."""
    keys = ["seed", "shots", "episode"]
    acc = df[df.metric == "accuracy"]
    left = acc[acc.method == a].set_index(keys)["value"]
    right = acc[acc.method == b].set_index(keys)["value"]
    diff = (left - right).dropna()
    return mean_ci95(diff) if len(diff) else None


def headline_opponents() -> list[str]:
    """Table 3's headline comparisons: the headline method against every method with the role `opponent`
    in this order: its control (scratch: inheritance vs architecture), its own variants (λ=0: the retain
    loss), then every baseline in table order."""
    def key(m: str) -> tuple:
        f = registry.facts(m)
        return "control" not in f.roles, not f.needs_ancestor, method_sort_key(m)

    return sorted(with_role("opponent"), key=key)


def table3_by_shots(df: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """("<dataset> <px>px, <k>-shot", its Table 3 rows) for every dataset/size/profile and shot count."""
    for key, g in ReportContext.groups(df[df.experiment == "table3"]):
        for shots in sorted(g["shots"].dropna().unique()):
            yield f"{key.dataset} {key.image_size}px, {int(shots)}-shot", g[g.shots == shots]


def claims(df: pd.DataFrame) -> list[str]:
    """Checks of the paper's headline claims on Table 3 data, per dataset/size/shots. A comparison is
    decided when its paired CI excludes 0 or is within ±`verdicts.DECISIVE_HALF_WIDTH` points; an
    undecided one says about how many paired episodes would decide it."""
    out = []
    lg = headline()
    for where, gs in table3_by_shots(df):
        for other in headline_opponents():
            if {lg, other} <= set(gs.method) and (res := paired_gap(gs, lg, other)):
                out.append("- " + claim(where, lg, other, res) + decided_note(res))
    return out


def decided_note(gap: tuple[float, float, int]) -> str:
    """'' when the CI excludes 0; else whether it is within ±DECISIVE_HALF_WIDTH (decided) or how many
    paired episodes would decide it."""
    m, h, n = gap[0] * 100, gap[1] * 100, gap[2]
    if abs(m) > h:
        return ""
    if h <= DECISIVE_HALF_WIDTH:
        return f" (no difference beyond ±{DECISIVE_HALF_WIDTH:g}: decided)"
    return f" (undecided: about n={n_to_decide(m, h, n)} would decide it)"


def recipe_checks(df: pd.DataFrame) -> list[str]:
    """Each recipe check (role `recipe-check`: learngene variants that change one recipe knob,
    methods/learngene/recipe_checks.py) minus the headline method (and minus its control), paired,
    per dataset/size/shots."""
    refs = [headline(), *with_role("control")]
    return ["- " + claim(where, check, ref, res) + decided_note(res) for where, gs in table3_by_shots(df)
            for check in with_role("recipe-check") for ref in refs
            if {check, ref} <= set(gs.method) and (res := paired_gap(gs, check, ref))]


def verdict(mean: float, half: float) -> str:
    """'yes' only when the 95% CI of a − b lies above 0; 'no' when it lies below; else not resolved."""
    return "yes" if mean - half > 0 else ("no (it is worse)" if mean + half < 0 else "not resolved (CI spans 0)")


def claim(where: str, a: str, b: str, gap: tuple[float, float, int], bold: bool = True) -> str:
    """The results README's sentence for one paired gap of a over b (accuracy in [0, 1], shown in points)."""
    m, h, n = gap
    word = f"**{verdict(m, h)}**" if bold else verdict(m, h)
    return f"{where}: {a} beats {b}: {word}, by {m * 100:+.2f} ± {h * 100:.2f} points (paired, n={n})"


def collective_health(df: pd.DataFrame) -> list[str]:
    """Per dataset/size: how well the collective model learnt each task (accuracy right after it),
    what it kept (final average, forgetting) and its open-world AUROC."""
    out = []
    for key, g in ReportContext.groups(df):
        def val(metric: str, g=g) -> float | None:
            v = g[g.metric == metric]["value"]
            return float(v.mean()) if len(v) else None

        r = g[g.metric == "collective_R"]
        just_learnt = float(r[r.task == r.after_task]["value"].mean()) if len(r) else None
        final, forget, auroc = val("collective_avg_acc"), val("collective_forgetting"), val("detection.auroc")
        if just_learnt is None and auroc is None:
            continue
        parts = []
        if just_learnt is not None:
            parts.append(f"accuracy on each task right after learning it {just_learnt:.3f} (mean over tasks)")
        if final is not None:
            parts.append(f"average over all tasks at the end {final:.3f}")
        if forget is not None:
            parts.append(f"forgetting {forget:.3f}")
        if auroc is not None:
            parts.append(f"open-world AUROC {auroc:.3f}")
        probe = probe_gap(g)
        if probe:
            parts.append(probe)
        verdict = ""
        if just_learnt is not None and just_learnt < 0.3:
            verdict = (" — **near chance: at this budget the collective model has not learnt, so this run cannot "
                       "test the paper's claim that its learngene helps**")
        out.append(f"- {key.dataset} {key.image_size}px ({key.profile}): " + ", ".join(parts) + verdict)
    return out


def probe_gap(g: pd.DataFrame) -> str | None:
    """Nearest class mean on novel episodes with the collective trunk's features, trained vs random."""
    p = g[(g.experiment == "fig3") & (g.metric == "accuracy")]
    present = set(p.method)
    pairs = [(m, ref) for m in sorted(present) if (ref := facts_of(m).compared_with) in present]
    if not pairs:
        return None
    trained, random = pairs[0]  # the probe and the twin it declares (`MethodFacts.compared_with`)
    parts = []
    for shots, gs in p.groupby("shots"):
        m, h, n = paired_gap(gs, trained, random)
        tm = gs[gs.method == trained]["value"].mean() * 100
        rm = gs[gs.method == random]["value"].mean() * 100
        parts.append(f"{int(shots)}-shot {tm:.2f} % vs {rm:.2f} % ({m * 100:+.2f} ± {h * 100:.2f}, n={n})")
    return ("its features (all 13 blocks, so through the inherited top blocks) separate novel classes by nearest "
            "class mean, trained vs randomly initialised: " + "; ".join(parts))


def _estimate(run: dict) -> str:
    """The cost model's estimate at the run's start and its error against the measured wall time."""
    est, wall = run.get("estimated_s"), run.get("wall_s")
    if not est or not wall:
        return "not recorded"
    err = (est - wall) / wall
    return f"{est:.0f} s ({err:+.1%})" if abs(err) < 0.1 else f"{est:.0f} s ({err:+.0%})"  # never "-0%"


def write_summary(df: pd.DataFrame, ctx: ReportContext) -> Path:
    lines = ["# Results", "",
             "Generated by `python -m bench report` from the stored cells; every number is reproducible from the",
             "recorded command, commit and profile (see `meta/`). Tables: `tables/`; figures: `figures/`; all rows: `runs.csv`.",
             ""]
    for f in sorted(ctx.figures_dir.glob("forest_*.png")):  # the verdict at a glance, before any table
        lines += [f"![Paired difference of every method to the reference: {f.stem}](figures/{f.name})", ""]
    lines += ["## What ran", "", "| dataset | px | profile | command | commit | wall time | estimate at start "
              "(error) | CPU | CPU s / wall s | cells run / skipped | peak RSS driver / worker |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in ctx.run_meta:
        lines.append(f"| {m.get('dataset')} | {m.get('image_size')} | {m.get('profile')} | `{m.get('command')}` | "
                     f"{m.get('commit')} | {m.get('wall_s')} s | {_estimate(m)} | {m.get('cpu') or 'not recorded'} | "
                     f"{m.get('cpu_per_wall', '–')} | "
                     f"{m.get('cells_run')} / {m.get('cells_skipped')} | "
                     f"{m.get('peak_rss_mib_driver')} / {m.get('peak_rss_mib_worker', '–')} MiB |")
    lines += ["", "## The paper's claims on our data", "",
              "Paired differences of final accuracy over the same episodes (mean ± 95% t-CI); 'yes' only when the CI "
              "excludes 0.", ""]
    lines += claims(df) or ["- (no Table 3 cells with learngene and a comparison method yet)"]
    figure_lines, floor_lines = [], []
    for key, g in ReportContext.groups(df):
        for line in figure_verdicts(g):
            figure_lines.append(line.replace("- ", f"- {key.dataset} {key.image_size}px: ", 1))
        for line in floor_check(g):
            floor_lines.append(line.replace("- ", f"- {key.dataset} {key.image_size}px, ", 1))
    checks = recipe_checks(df)
    if checks:
        lines += ["", "## Is learngene's result our recipe?", "",
                  "One knob changed per variant (methods/learngene/recipe_checks.py), same episodes; paired 95% t-CI:", ""]
        lines += checks
    lines += ["", "## The paper's figure claims on our data", "",
              "Rules fixed before the run (bench/verdicts.py); paired 95% t-CI over the same episodes.", ""]
    lines += figure_lines or ["- (no Figure 4 / 6 cells yet)"]
    lines += ["", "## The floor", "",
              "No trained method should sit at or below nearest class mean on randomly initialised features "
              "(`random-ncm`, same backbone, same episodes):", ""]
    lines += floor_lines or ["- (no random-ncm cells yet)"]
    lines += ["", "## Did the collective model learn?", "",
              "Learngene can only help if the collective model it inherits from learnt something. Its own numbers "
              "(task-aware 5-way accuracy on held-out images of its continual tasks, chance = 0.20; open-world AUROC, "
              "chance = 0.50):", ""]
    lines += collective_health(df) or ["- (no Figure 3 / Table 2 recognition cells yet)"]
    why = why_verdicts(df, ctx)
    if why:
        lines += ["", "## Why learngene loses here", "",
                  "The study's rows (`make study`, tables/why.md): each contrast is paired over the same episodes "
                  "(mean ± 95% t-CI, points); **differs** = the CI excludes 0, **no difference beyond ±1.5** = a "
                  "half-width within 1.5 points, else **undecided**.", ""]
        lines += why
    trend = scale_verdicts(df, ctx)
    if trend:
        lines += ["", "## Does scale change the gap?", "",
                  "The scale trend (`make study`, tables/scale.md): learngene − scratch at each point (the collective "
                  "model and the individual network at one width together, more collective epochs, another image "
                  "size), paired over the same episodes, and its change from the profile's own point "
                  "(mean ± 95% t-CI, points; the same decision rule as above).", ""]
        lines += trend
    if df["synthetic"].any():
        lines += ["", "**Some results come from SYNTHETIC procedural data; they check the machinery only.**"]
    lines += ["", "## Tables", ""]
    for t in sorted(ctx.tables_dir.glob("*.md")):
        lines.append(f"- [{t.stem}](tables/{t.name})")
    lines += ["", "## Figures", ""]
    for f in sorted(ctx.figures_dir.glob("*.png")):
        lines.append(f"- [{f.stem}](figures/{f.name})")
    path = ctx.results_dir / "README.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
