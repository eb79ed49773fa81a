"""What each row of a regeneration costs, from the cells a results store holds.

    python -m bench.cost breakdown --results-dir DIR --out docs/evidence/cost.md

Why: `make run`'s run record gives one wall time for the whole grid, but deciding what to trade
for a shorter run needs the cost of each (experiment, method). Every cell's result records its wall
time (`wall_s`) and each episode's (`wall_s` rows); the difference is the cell's preparation. A row's
cached weights are built once, so its base training (pre-, meta- or collective training) is its
largest preparation; the rest is loading them, or waiting while another worker builds them (the
cache's lock), which occupies a worker without computing. The figures are worker-minutes: with two
workers on two cores the wall time of a grid is at least half the computed sum. Cells computed while
other jobs shared the cores read high.
Only the current cells count (the newest of cells that differ only in a method's settings).
The same numbers, per method, are what `--dry-run` rests on: `python -m bench.cost reference
--results-dir DIR` writes them to bench/cost/reference.json.
"""
from __future__ import annotations

import collections
from pathlib import Path

from bench.store import ResultsStore
from bench.usage import cpu_name

REPO = Path(__file__).resolve().parents[2]


def repo_relative(path: str | Path) -> str:
    """`path` as a reader of the repository can use it: relative to the repository root when inside
    it, else only its last part (an absolute path of the machine that ran means nothing elsewhere)."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(REPO))
    except ValueError:
        return f"<outside the repository>/{p.name}" if p.is_absolute() or ".." in p.parts else str(p)


def breakdown(results_dir: Path) -> tuple[list[dict], int]:
    """One row per (experiment, method): cells, episode seconds, preparation seconds, largest cell."""
    current, superseded = ResultsStore(results_dir).iter_current()
    agg: dict[tuple[str, str], dict] = collections.defaultdict(
        lambda: {"cells": 0, "episodes_s": 0.0, "prepare_s": 0.0, "base_training_s": 0.0, "max_cell_s": 0.0})
    for cfg, result in current:
        a = agg[(cfg["experiment"], cfg["method"])]
        cell_s = float(result.get("wall_s") or 0.0)
        episodes_s = sum(float(r["value"]) for r in result.get("rows", []) if r.get("metric") == "wall_s")
        a["cells"] += 1
        a["episodes_s"] += episodes_s
        a["prepare_s"] += max(0.0, cell_s - episodes_s)
        a["base_training_s"] = max(a["base_training_s"], cell_s - episodes_s)
        a["max_cell_s"] = max(a["max_cell_s"], cell_s)
    rows = [{"experiment": e, "method": m, **v} for (e, m), v in sorted(agg.items())]
    return rows, superseded


def to_markdown(rows: list[dict], superseded: int, results_dir: Path, in_all: set[str] | None) -> str:
    lines = ["# Cost of each row (worker-minutes)", "",
             f"`python -m bench.cost breakdown --results-dir {repo_relative(results_dir)}` on {cpu_name()}. From "
             "the current cells' recorded wall times: *episodes* = the episodes' own time; *base training* = the "
             "row's largest cell preparation (its cached weights are built once); *loading / waiting* = the "
             "rest of the preparation (loading the weights, or waiting while another worker builds them); "
             "*computed* = episodes + base training. With two workers on two cores a grid's wall time is at "
             f"least half the computed total. {superseded} superseded cells are not counted.", "",
             "| experiment | method | cells | episodes min | base training min | loading / waiting min | "
             "computed min | largest cell s |",
             "|---|---|---|---|---|---|---|---|"]
    total = {"all": 0.0, "make run": 0.0}
    for r in rows:
        t = (r["episodes_s"] + r["base_training_s"]) / 60
        total["all"] += t
        if in_all is None or r["method"] in in_all:
            total["make run"] += t
        lines.append(f"| {r['experiment']} | {r['method']} | {r['cells']} | {r['episodes_s'] / 60:.1f} | "
                     f"{r['base_training_s'] / 60:.1f} | {(r['prepare_s'] - r['base_training_s']) / 60:.1f} | "
                     f"{t:.1f} | {r['max_cell_s']:.0f} |")
    lines += ["", f"Computed: {total['all']:.1f} worker-minutes; the rows `make run` computes "
                  f"(`--method all`): {total['make run']:.1f} (≥ {total['make run'] / 2:.0f} min of wall time "
                  "on two workers)."]
    return "\n".join(lines) + "\n"
