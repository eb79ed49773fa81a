"""Summary statistics used by every table: mean ± 95% CI (Student t), computed with scipy."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats


def mean_ci95(values) -> tuple[float, float, int]:
    """(mean, half-width of the 95% t confidence interval, n). Half-width is nan for n < 2."""
    arr = np.asarray(list(values), dtype=float)
    n = len(arr)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(arr.mean())
    if n < 2:
        return mean, math.nan, n
    half = float(stats.t.ppf(0.975, n - 1) * arr.std(ddof=1) / math.sqrt(n))
    return mean, half, n


def fmt_ci(mean: float, half: float, scale: float = 100.0, digits: int = 2) -> str:
    if math.isnan(mean):
        return "–"
    if math.isnan(half):
        return f"{mean * scale:.{digits}f} ± n/a"
    return f"{mean * scale:.{digits}f} ± {half * scale:.{digits}f}"
