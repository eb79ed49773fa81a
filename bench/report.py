"""Report building shared by the experiments: grouping, captions, markdown tables.

Tables show our mean ± 95% CI (Student t over every episode of every seed) beside the paper's
number (its ± is undefined in the paper; most likely std over 5 tasks) and the difference.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from bench.atomic import atomic_write_text
from bench.stats import fmt_ci, mean_ci95

CI_NOTE = ("± is the half-width of the 95% Student-t confidence interval over all episodes of the row's seeds "
           "(n = tasks × the row's seeds); the paper's ± is undefined (most likely std over its 5 tasks).")


class GroupKey(NamedTuple):
    dataset: str
    image_size: int
    profile: str


def method_sort_key(name: str) -> tuple[bool, int, str]:
    """Rows in the order the methods declare (`MethodFacts.report_order`), then the others by name."""
    from bench.experiments.selection import facts_of

    order = facts_of(name).report_order
    return (order is None, order or 0, name)


@dataclass
class ReportContext:
    results_dir: Path
    tables_dir: Path
    figures_dir: Path
    run_meta: list[dict]

    @classmethod
    def for_dir(cls, results_dir: Path, tables_dir: Path | None = None, figures_dir: Path | None = None):
        results_dir = Path(results_dir)
        meta_file = results_dir / "meta" / "runs.jsonl"
        run_meta = []
        if meta_file.exists():
            for line in meta_file.read_text().splitlines():
                try:
                    run_meta.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return cls(results_dir, tables_dir or results_dir / "tables", figures_dir or results_dir / "figures", run_meta)

    @staticmethod
    def groups(df: pd.DataFrame) -> Iterator[tuple[GroupKey, pd.DataFrame]]:
        for (ds, px, prof), g in df.groupby(["dataset", "image_size", "profile"], sort=True):
            yield GroupKey(str(ds), int(px), str(prof)), g

    def meta(self, key: GroupKey) -> dict:
        """The latest run record for this dataset/size/profile (command, commit, wall time)."""
        match = [m for m in self.run_meta if m.get("dataset") == key.dataset
                 and int(m.get("image_size", -1)) == key.image_size and m.get("profile") == key.profile]
        return {**(match[-1] if match else {}), "runs": match, "key": key}

    def profile(self, key: GroupKey) -> dict | None:
        """The resolved profile the run recorded for this dataset/size/profile (meta/profile_*.json)."""
        path = self.results_dir / "meta" / f"profile_{key.dataset}_{key.image_size}px_{key.profile}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    @staticmethod
    def tag(key: GroupKey) -> str:
        return f"{key.dataset}_{key.image_size}px_{key.profile}"

    def write_table(self, name: str, heading: str, sections: list[str]) -> Path:
        self.tables_dir.mkdir(parents=True, exist_ok=True)
        path = self.tables_dir / f"{name}.md"
        atomic_write_text(path, heading + "\n\n" + "\n\n".join(sections).rstrip() + "\n")
        return path

    def figure_path(self, name: str, key: GroupKey) -> Path:
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        return self.figures_dir / f"{name}_{self.tag(key)}.png"


def caption(meta: dict, df: pd.DataFrame, extra: str = "") -> str:
    key: GroupKey = meta["key"]
    synthetic = bool(df["synthetic"].any()) if "synthetic" in df else False
    tasks = df["episode"].nunique() if "episode" in df else 0
    per_row = sorted({int(n) for n in df.groupby("method")["seed"].nunique()}) if {"seed", "method"} <= set(df) else []
    seeds = ("0" if not per_row else f"{per_row[0]}" if len(per_row) == 1 else
             f"{per_row[0]} to {per_row[-1]} by row (sized so each headline comparison is decided; n per row)")
    lines = [f"*Dataset:* {key.dataset}{' (SYNTHETIC procedural images — not a real benchmark)' if synthetic else ''}, "
             f"{key.image_size} px; *profile:* {key.profile}; *tasks × seeds:* {tasks} × {seeds}.",
             f"*±:* {CI_NOTE}"]
    art = meta.get("artifact_seed")
    if art is not None and art != "cell":
        lines.append(f"*Base-class (meta-)training:* one run per method (artifact seed {art}) shared by all seeds, so ± "
                     "covers episode sampling and per-episode initialisation, not base-training variance (measure it with "
                     "`bench run --artifact-seed N` into another results directory and "
                     "`scripts/artifact_seed_spread.py`).")
    if extra:
        lines.append(extra)
    produced = []  # every run that contributed cells to this dataset/size/profile, oldest first
    for run in meta.get("runs") or ([meta] if meta.get("command") else []):
        text = (f"`{run.get('command')}` at commit `{run.get('commit', '?')}`"
                f"{' (uncommitted changes)' if run.get('dirty') else ''}")
        if run.get("cells_run", 1) and text not in produced:
            produced.append(text)
    if produced:
        lines.append("*Produced by* " + "; then ".join(produced) + ".")
    return "\n".join(lines)


def method_table(df: pd.DataFrame, meta: dict,
                 columns: list[tuple[str, pd.Series, Callable[[str], tuple[float, float] | None]]],
                 title: str, paper_col: str, extra_caption: str = "") -> str:
    """Markdown: one row per method; for each column ours (mean ± CI, n), the paper's, and Δ."""
    key: GroupKey = meta["key"]
    paper_label = "CIFAR100" if paper_col == "cifar" else "ImageNet100"
    header = ["Method"]
    for label, _, _ in columns:
        header += [f"{label} ours", f"{label} paper ({paper_label})", "Δ (ours − paper)"]
    lines = [f"## {title}: {key.dataset}, {key.image_size} px, profile `{key.profile}`", "",
             caption(meta, df, extra_caption), "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in sorted(df["method"].unique(), key=method_sort_key):
        cells = [method]
        for _, mask, paper_fn in columns:
            vals = df[mask & (df.method == method)]["value"]
            mean, half, n = mean_ci95(vals)
            ours = f"{fmt_ci(mean, half)} (n={n})" if n else "–"
            pub = paper_fn(method)
            cells.append(ours)
            cells.append(f"{pub[0]:.2f} ± {pub[1]:.2f}" if pub else "–")
            cells.append(f"{mean * 100 - pub[0]:+.2f}" if pub and not math.isnan(mean) else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def remove_stale_outputs(ctx: ReportContext, written: list[Path]) -> list[Path]:
    """Delete tables and figures a previous report made that this one did not (their experiment, or
    their dataset/size/profile group, has no rows now), so no file on disk looks current when it is not.

    Only files named after an experiment (`table3.md`, `fig4ab_curves_<group>.png`, ...) are candidates,
    so anything else a user keeps in those folders is left alone."""
    from bench.experiments import EXPERIMENT_NAMES

    keep = {Path(p).resolve() for p in written}
    removed = []
    for folder, pattern in ((ctx.tables_dir, "*.md"), (ctx.figures_dir, "*.png")):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob(pattern)):
            if path.stem.startswith(EXPERIMENT_NAMES) and path.resolve() not in keep:
                path.unlink()
                removed.append(path)
    return removed
