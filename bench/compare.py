"""`python -m bench compare A B`: the paired difference of two methods over the episodes both ran.

Why a command: the question a user brings ("does my method beat learngene here?") is one paired
difference per dataset, image size, profile and shot count, with the same statistic and the same
verdict sentence as `results/README.md` (`bench.summary.paired_gap`, `claim`), read from the stored
cells (or `runs.csv` when only that is kept, as for the committed results).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

from bench.collect import merged
from bench.errors import UsageError
from bench.report import ReportContext
from bench.summary import claim, paired_gap


class Gap(NamedTuple):
    dataset: str
    image_size: int
    profile: str
    shots: int
    mean: float
    half: float
    n: int

    @property
    def where(self) -> str:
        return f"{self.dataset} {self.image_size}px ({self.profile}), {self.shots}-shot"


def paired_gaps(df: pd.DataFrame, a: str, b: str, experiment: str = "table3") -> list[Gap]:
    """accuracy(a) − accuracy(b) per dataset/size/profile/shots, over the episodes both ran there."""
    acc = df[(df.experiment == experiment) & (df.metric == "accuracy") & df.method.isin([a, b])]
    out = []
    for key, g in ReportContext.groups(acc):
        for shots in sorted(g["shots"].dropna().unique()):
            res = paired_gap(g[g.shots == shots], a, b)
            if res is not None:
                out.append(Gap(key.dataset, key.image_size, key.profile, int(shots), *res))
    return out


def compare(results_dir: Path, a: str, b: str, experiment: str = "table3") -> list[str]:
    """The lines `bench compare` prints; UsageError (one line, exit 2) when there is nothing to pair."""
    results_dir = Path(results_dir)
    if a == b:
        raise UsageError(f"compare needs two different methods, got '{a}' twice")
    if not results_dir.exists():
        raise UsageError(f"no results in {results_dir}; run `python -m bench run` first or pass --results-dir")
    df = merged(results_dir)  # the rows a report uses: stored cells plus runs.csv rows no cell replaces
    ran = df[(df.experiment == experiment) & (df.metric == "accuracy")] if not df.empty else df
    for m in (a, b):
        if ran.empty or m not in set(ran.method):
            have = ", ".join(sorted(set(ran.method))) if not ran.empty else "none"
            raise UsageError(f"method '{m}' has no {experiment} results in {results_dir} (methods there: {have}); "
                             f"run it first: python -m bench run --method {m} --experiment {experiment}")
    gaps = paired_gaps(df, a, b, experiment)
    if not gaps:
        raise UsageError(f"'{a}' and '{b}' share no {experiment} episodes in {results_dir} (different datasets, "
                         f"image sizes, profiles, shots or seeds); run both in one grid: "
                         f"python -m bench run --method {a},{b} --experiment {experiment}")
    lines = [f"{a} − {b}, {experiment} accuracy paired over the episodes both ran "
             f"(mean ± 95% Student-t CI, points):"]
    lines += [f"  {claim(g.where, a, b, (g.mean, g.half, g.n), bold=False)}" for g in gaps]
    return lines
