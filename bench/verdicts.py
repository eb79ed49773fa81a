"""Verdict lines for the paper's claims that live in its figures, and the floor check.

Each function reads the tidy rows of one dataset / image size / profile and returns sentences with a
paired 95 % Student-t CI (over the same episodes: seed, shots, episode index), so a reader sees both
the effect and whether the data can decide it. The rules are stated in each sentence; they are the
definitions below, chosen before looking at any result:

- Figure 4 (a/b), "learngene reaches its plateau in ~10 epochs, scratch in ~40": per episode, the
  plateau epoch is the first epoch whose query accuracy is within `PLATEAU_POINTS` of that episode's
  final-epoch accuracy; compared paired (scratch − learngene).
- Figure 4 (c/d), "60 % with 25 samples per class; scratch needs 3x the samples": learngene's accuracy
  at 25 samples per class against 60 %, and against scratch at 2x and 4x the samples (paired: the
  episodes' classes and queries are the same, a larger support set contains the smaller one).
- Figure 6 (b), "the top position beats middle and front by ~2 points": paired final accuracy of the
  top-position learngene minus each other position.
- Floor: every method's mean accuracy against nearest class mean on random features (the method with
  the role `floor`: `random-ncm`), paired, per shot.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.experiments.selection import facts_of, headline, with_role
from bench.report import method_sort_key
from bench.stats import mean_ci95

#: Accuracy points within which an episode's curve counts as having reached its final accuracy.
PLATEAU_POINTS = 1.0
#: A paired CI half-width (points) at or below which a headline comparison counts as decided by design.
DECISIVE_HALF_WIDTH = 1.5
KEYS = ["seed", "shots", "episode"]


def _fmt(m: float, h: float, n: int, unit: str = "points") -> str:
    half = "n/a" if math.isnan(h) else f"{h:.2f}"
    return f"{m:+.2f} ± {half} {unit} (paired, n={n})"


def n_to_decide(m: float, h: float, n: int, target: float | None = None) -> int:
    """Paired episodes that would decide an unresolved gap, if its mean and SD held: the CI shrinks as
    1/sqrt(n), down to `target` (default: the larger of |m|, which excludes 0 about half of the time,
    and `DECISIVE_HALF_WIDTH`, "no difference beyond ±1.5")."""
    target = target if target is not None else max(abs(m), DECISIVE_HALF_WIDTH)
    return math.ceil(n * (h / target) ** 2) if target > 0 else n


def _decide(m: float, h: float, n: int | None = None, target: float | None = None) -> str:
    if math.isnan(h):
        return "not resolved (one episode)"
    if m - h > 0:
        return "yes"
    if m + h < 0:
        return "no (the opposite holds)"
    more = f"; about n={n_to_decide(m, h, n, target)} would decide it" if n else ""
    return f"not resolved (CI spans 0{more})"


def plateau_epochs(curves: pd.DataFrame, points: float = PLATEAU_POINTS) -> pd.Series:
    """First epoch (as numbered in the rows, 1-based) whose accuracy is within `points` of the episode's final-epoch accuracy,
    per (seed, shots, episode) of one method's curve rows (`epoch`, `value` in [0, 1])."""
    out = {}
    for key, g in curves.groupby(KEYS):
        g = g.sort_values("epoch")
        acc = g["value"].to_numpy() * 100
        out[key] = float(g["epoch"].to_numpy()[int(np.argmax(acc >= acc[-1] - points))])
    return pd.Series(out, dtype=float)


def _has(g: pd.DataFrame, *columns: str) -> bool:
    return all(c in g.columns for c in columns)


def _pair() -> tuple[str, str]:
    """Figure 4's two methods: the headline method (learngene) and its control (scratch)."""
    return headline(), with_role("control")[0]


def fig4_plateau(g: pd.DataFrame) -> list[str]:
    if not _has(g, "panel", "epoch"):
        return []
    c = g[(g.experiment == "fig4") & (g.panel == "curves") & (g.metric == "curve")]
    a, b = _pair()
    if not {a, b} <= set(c.method):
        return []
    lg, sc = plateau_epochs(c[c.method == a]), plateau_epochs(c[c.method == b])
    diff = (sc - lg).dropna()
    if diff.empty:
        return []
    m, h, n = mean_ci95(diff)
    lm, lh, _ = mean_ci95(lg)
    sm, sh, _ = mean_ci95(sc)
    epochs = int(c["epoch"].max())
    return [f"- Fig. 4(a/b) \"learngene reaches its plateau in ~10 epochs, scratch in ~40\" ({int(c['shots'].iloc[0])} "
            f"shots, {epochs} epochs; plateau = first epoch within {PLATEAU_POINTS:g} point of the episode's final "
            f"accuracy): {a} at epoch {lm:.1f} ± {lh:.1f}, {b} at {sm:.1f} ± {sh:.1f}; {a} earlier "
            f"by {_fmt(m, h, n, 'epochs')}: **{_decide(m, h, n, target=abs(m))}**"]


def _paired(a: pd.Series, b: pd.Series) -> tuple[float, float, int]:
    diff = (a - b).dropna() * 100
    return mean_ci95(diff)


def fig4_samples(g: pd.DataFrame) -> list[str]:
    if not _has(g, "panel"):
        return []
    s = g[(g.experiment == "fig4") & (g.panel == "samples") & (g.metric == "accuracy")]
    a, b = _pair()
    if not {a, b} <= set(s.method):
        return []

    def acc(method: str, shots: int) -> pd.Series:
        r = s[(s.method == method) & (s.shots == shots)]
        return r.set_index(["seed", "episode"])["value"]

    out = []
    lg25 = acc(a, 25)
    if len(lg25):
        m, h, n = mean_ci95(lg25 * 100)
        word = "yes" if m - h >= 60 else ("no" if m + h < 60 else "not resolved (CI spans 60 %)")
        out.append(f"- Fig. 4(c/d) \"60 % with 25 samples per class\": {a} reaches {m:.2f} ± {h:.2f} % "
                   f"(n={n}): **{word}**")
        for factor in (2, 4):
            sc = acc(b, 25 * factor)
            if len(sc):
                m, h, n = _paired(lg25, sc)
                out.append(f"- Fig. 4(c/d) \"scratch needs 3x the samples\": {a} with 25 samples per class minus "
                           f"{b} with {25 * factor}: {_fmt(m, h, n)} — {a} still ahead: **{_decide(m, h, n)}**")
    for shots in sorted(s.shots.unique()):
        m, h, n = _paired(acc(a, int(shots)), acc(b, int(shots)))
        if n:
            out.append(f"- Fig. 4(c/d) at {int(shots)} samples per class: {a} minus {b} {_fmt(m, h, n)}: "
                       f"**{_decide(m, h, n)}**")
    return out


def fig6_positions(g: pd.DataFrame) -> list[str]:
    if not _has(g, "panel"):
        return []
    b = g[(g.experiment == "fig6") & (g.panel == "position") & (g.metric == "accuracy")]
    # Figure 6b's positions in their declared order (front, middle, top): the last is the top position
    positions = sorted((m for m in set(b.method) if "fig6:position" in facts_of(m).experiments), key=method_sort_key)
    if not positions or not facts_of(positions[-1]).label.startswith("top"):
        return []
    ref = b[b.method == positions[-1]].set_index(KEYS)["value"]
    out = []
    for other in reversed(positions[:-1]):
        label = facts_of(other).label.split(" ")[0]
        o = b[b.method == other].set_index(KEYS)["value"]
        m, h, n = _paired(ref, o)
        if n:
            out.append(f"- Fig. 6(b) \"the top position beats {label} by ~2 points\": top minus {label} {_fmt(m, h, n)}: "
                       f"**{_decide(m, h, n)}**")
    return out


def floor_check(g: pd.DataFrame, experiment: str = "table3") -> list[str]:
    """Methods whose mean accuracy is not above the random-feature floor (paired, per shot)."""
    t = g[(g.experiment == experiment) & (g.metric == "accuracy")]
    floors = with_role("floor", sorted(set(t.method)))
    if not floors:
        return []
    out = []
    for shots, gs in t.groupby("shots"):
        floor = gs[gs.method == floors[0]].set_index(KEYS)["value"]
        fm, fh, _ = mean_ci95(floor * 100)
        below = []
        for method, gm in gs.groupby("method"):
            if method == floors[0]:
                continue
            m, h, n = _paired(gm.set_index(KEYS)["value"], floor)
            if n and m <= 0:
                below.append(f"{method} ({_fmt(m, h, n)})")
        verdict = ("every method is above it" if not below else "**at or below it: " + "; ".join(below) + "**")
        out.append(f"- {int(shots)}-shot floor (random features + nearest class mean): {fm:.2f} ± {fh:.2f} %; {verdict}")
    return out


def figure_verdicts(g: pd.DataFrame) -> list[str]:
    return fig4_plateau(g) + fig4_samples(g) + fig6_positions(g)
