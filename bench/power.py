"""How many seeds each Table 3 row needs for its headline comparison to be decided, from the paired
SDs a results store already holds.

    python -m bench.power --results-dir results                # markdown plan + the profile's row_seeds

Why: every episode of the learngene rows costs seconds of training, and most baselines differ from
learngene by 10-25 points, which 25 paired episodes decide; a uniform 125 episodes per row spends
most of a regeneration on questions already answered. A comparison counts as decided (the rule of
`bench.verdicts`) when its paired 95 % CI excludes 0, or its half-width is at most
`DECISIVE_HALF_WIDTH` points ("no difference beyond ±1.5"). For each headline comparison (the
headline method against every `opponent`, per shot count) this plans the smallest n that
(a) excludes 0 with the requested power if the true gap is the stored mean (paired t-test, two-sided
α = 0.05), or (b) reaches the half-width target at the stored SD, whichever is smaller; for the
`--precise` opponents (default: scratch, the paper's central claim, whose size a reader wants to
know and not only its sign) whichever is larger; rows run
whole seeds (each seed = [episodes] tasks episodes), the headline row as many as its most demanding
comparison. The stored SD and mean are estimates, so the plan is a plan: the report states each
row's n and whether its comparison was decided.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from scipy import stats

from bench.collect import merged
from bench.errors import UsageError
from bench.experiments.selection import headline
from bench.summary import headline_opponents, paired_gap, table3_by_shots
from bench.verdicts import DECISIVE_HALF_WIDTH


def _half_width(sd: float, n: int) -> float:
    return float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


def n_to_exclude_zero(mean: float, sd: float, power: float, n_max: int = 100_000) -> int:
    """Smallest n whose paired two-sided 95 % t-test rejects 0 with probability `power` when the true
    gap is `mean` and the paired SD `sd` (normal approximation of the noncentral t, with t quantiles)."""
    if sd == 0:
        return 2
    if mean == 0:
        return n_max
    n = 2
    while n < n_max and _half_width(sd, n) + float(stats.t.ppf(power, n - 1)) * sd / math.sqrt(n) > abs(mean):
        n += 1
    return n


def n_for_half_width(sd: float, target: float, n_max: int = 100_000) -> int:
    """Smallest n whose 95 % t half-width at SD `sd` is at most `target`."""
    n = 2
    while n < n_max and _half_width(sd, n) > target:
        n += 1
    return n


@dataclass(frozen=True)
class Need:
    """One comparison's plan: where (dataset, size, shots), the stored paired gap, and the n it needs."""

    where: str
    opponent: str
    mean: float          # points
    sd: float            # points, paired SD
    n_stored: int
    n_exclude: int
    n_half: int
    precise: bool = False  # planned to exclude 0 *and* to reach the half-width target

    @property
    def n(self) -> int:
        return max(self.n_exclude, self.n_half) if self.precise else min(self.n_exclude, self.n_half)


def needs(df: pd.DataFrame, power: float = 0.9, precise: tuple[str, ...] = ("scratch",)) -> list[Need]:
    """Every headline comparison in `df`'s Table 3 rows, with the n each needs (`precise`: opponents
    whose comparison must also reach the half-width target)."""
    lg, out = headline(), []
    for where, g in table3_by_shots(df):
        acc = g[g.metric == "accuracy"]
        for other in headline_opponents():
            if not {lg, other} <= set(acc.method) or paired_gap(acc, lg, other) is None:
                continue
            keys = ["seed", "shots", "episode"]
            diff = ((acc[acc.method == lg].set_index(keys)["value"]
                     - acc[acc.method == other].set_index(keys)["value"]).dropna() * 100)
            mean, sd = float(diff.mean()), float(diff.std(ddof=1))
            out.append(Need(where, other, mean, sd, len(diff), n_to_exclude_zero(mean, sd, power),
                            n_for_half_width(sd, DECISIVE_HALF_WIDTH), other in precise))
    return out


def row_seeds(plan: list[Need], tasks_per_seed: int, default: int = 1) -> dict[str, int]:
    """Seeds per row: each opponent as many as its most demanding shot count needs, the headline row as
    many as its most demanding comparison; rows needing only `default` are left out."""
    seeds: dict[str, int] = {}
    for need in plan:
        s = max(default, math.ceil(need.n / tasks_per_seed))
        seeds[need.opponent] = max(seeds.get(need.opponent, default), s)
    top = max(seeds.values(), default=default)
    out = {headline(): top, **seeds}
    return {m: s for m, s in out.items() if s > default}


def markdown(plan: list[Need], seeds: dict[str, int], tasks_per_seed: int, power: float) -> str:
    lines = [f"Headline comparisons ({headline()} − opponent, points), the n each needs: to exclude 0 with "
             f"power {power:g} at the stored gap, or for a 95 % half-width ≤ {DECISIVE_HALF_WIDTH:g} (the smaller; "
             f"both for {', '.join(sorted({n.opponent for n in plan if n.precise})) or 'none'}); rows run "
             f"whole seeds of {tasks_per_seed} episodes.", "",
             "| where | opponent | stored gap | paired SD | stored n | n to exclude 0 | n for ±1.5 | planned n |",
             "|---|---|---|---|---|---|---|---|"]
    for need in plan:
        planned = tasks_per_seed * max(seeds.get(need.opponent, 1), 1)
        lines.append(f"| {need.where} | {need.opponent} | {need.mean:+.2f} | {need.sd:.2f} | {need.n_stored} | "
                     f"{need.n_exclude} | {need.n_half} | {planned} |")
    table = ", ".join(f'"{m}" = {s}' for m, s in seeds.items())
    lines += ["", "Profile lines (`[experiments.table3]`):", "", "```toml", "seeds = 1",
              f"row_seeds = {{ {table} }}", "```"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.power", description=__doc__.split("\n\n")[0])
    ap.add_argument("--results-dir", type=Path, default=Path("results"))
    ap.add_argument("--power", type=float, default=0.9, help="probability of excluding 0 at the stored gap")
    ap.add_argument("--tasks-per-seed", type=int, default=25, help="episodes per seed ([episodes] tasks)")
    ap.add_argument("--precise", default="scratch",
                    help="comma-separated opponents planned for the half-width target as well as for "
                         "excluding 0 (default: scratch; '' for none)")
    ap.add_argument("--out", type=Path, help="also write the plan to this markdown file")
    args = ap.parse_args(argv)
    try:
        if not 0 < args.power < 1:
            raise UsageError(f"--power must be between 0 and 1, got {args.power}")
        precise = tuple(m for m in args.precise.split(",") if m)
        unknown = set(precise) - set(headline_opponents())
        if unknown:
            raise UsageError(f"--precise names no headline opponent: {', '.join(sorted(unknown))}; "
                             f"choose from {', '.join(headline_opponents())}")
        df = merged(args.results_dir) if args.results_dir.exists() else pd.DataFrame()
        plan = needs(df, args.power, precise) if not df.empty else []
        if not plan:
            raise UsageError(f"no Table 3 rows with {headline()} and an opponent in {args.results_dir}; "
                             "run `python -m bench run --experiment table3` first")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = markdown(plan, row_seeds(plan, args.tasks_per_seed), args.tasks_per_seed, args.power)
    print(text)
    if args.out:
        from bench.atomic import atomic_write_text

        atomic_write_text(args.out, f"# Episodes per Table 3 row\n\n`python -m bench.power "
                                    f"--results-dir {args.results_dir}`\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
