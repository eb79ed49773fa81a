"""Seaborn figures. Bands are 95% Student-t CIs over episodes × seeds, the same statistic as the tables.

Figures are byte-reproducible: rendered by Agg with no version or date in the PNG's metadata
(`save_figure`), from the rows as `runs.csv` holds them (bench/report_command.py), so a clean clone's
`report` writes the committed bytes. A file whose bytes would not change is not rewritten; one that
does is written to a temporary file in its folder and renamed over the old one (never half-written).
"""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench.atomic import atomic_write_bytes  # noqa: E402
from bench.stats import mean_ci95  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")
matplotlib.rcParams["svg.hashsalt"] = "learngene-bench"  # deterministic ids should an SVG ever be written

#: PNG metadata: none (matplotlib would stamp its version as "Software"), so the bytes depend on the pixels only.
PNG_METADATA = {"Software": None}


def save_figure(fig, path: Path, dpi: int = 120) -> Path:
    """Render `fig` to PNG bytes and write them atomically, unless the file already holds exactly them."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata=PNG_METADATA)
    data = buf.getvalue()
    path = Path(path)
    try:
        if path.read_bytes() == data:
            return path
    except OSError:
        pass
    return atomic_write_bytes(path, data)


def aggregate(df: pd.DataFrame, x: str, hue: str) -> pd.DataFrame:
    """Mean and 95% t-CI half-width of `value` per (hue, x)."""
    rows = []
    for (h, xv), g in df.groupby([hue, x], sort=True):
        m, half, n = mean_ci95(g["value"])
        rows.append({hue: h, x: xv, "mean": m, "half": 0.0 if pd.isna(half) else half, "n": n})
    return pd.DataFrame(rows)


def line_with_band(df: pd.DataFrame, x: str, hue: str, path: Path, *, title: str, xlabel: str, ylabel: str,
                   percent: bool = True, hue_order: list[str] | None = None, note: str = "") -> Path:
    """One line per hue with its 95% CI band; accuracy shown in percent."""
    agg = aggregate(df, x, hue)
    scale = 100.0 if percent else 1.0
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    order = hue_order or sorted(agg[hue].unique(), key=str)
    palette = sns.color_palette("colorblind", len(order))
    for colour, h in zip(palette, order, strict=False):
        g = agg[agg[hue] == h].sort_values(x)
        if g.empty:
            continue
        ax.plot(g[x], g["mean"] * scale, marker="o", ms=3, color=colour, label=f"{h} (n={int(g['n'].min())})")
        ax.fill_between(g[x], (g["mean"] - g["half"]) * scale, (g["mean"] + g["half"]) * scale, color=colour, alpha=0.2)
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if pd.api.types.is_integer_dtype(agg[x]) or all(float(v).is_integer() for v in agg[x]):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.legend(title=None, fontsize=9, loc="best")
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, color="0.3")
        fig.subplots_adjust(bottom=0.2)
    fig.tight_layout(rect=(0, 0.05 if note else 0, 1, 1))
    save_figure(fig, path)
    plt.close(fig)
    return path


def heatmap(matrix: pd.DataFrame, path: Path, *, title: str, xlabel: str, ylabel: str, cbar: str, note: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * matrix.shape[1] + 2.5), 4.8))
    sns.heatmap(matrix, ax=ax, cmap="viridis", cbar_kws={"label": cbar})
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, color="0.3")
    fig.tight_layout(rect=(0, 0.04 if note else 0, 1, 1))
    save_figure(fig, path)
    plt.close(fig)
    return path
