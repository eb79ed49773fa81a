"""The collector: finished cells -> one tidy DataFrame (one row per cell and metric) -> runs.csv."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from bench.atomic import atomic_write_text
from bench.store import ResultsStore
from methods.artifacts import config_hash

CONFIG_COLUMNS = ["experiment", "method", "dataset", "image_size", "profile", "synthetic", "cell"]


def rows_of(config: dict, result: dict) -> list[dict]:
    """Flatten one cell: its config columns and params beside each result row."""
    params = {k: v for k, v in config.get("params", {}).items() if not isinstance(v, dict | list)}
    for k, v in config.get("params", {}).get("method_options", {}).items():
        params[f"opt_{k}"] = v
    base = {"experiment": config["experiment"], "method": config["method"], "dataset": config["dataset"],
            "image_size": config["image_size"], "profile": config["profile"].get("name", "?"),
            "synthetic": config["dataset"] == "synthetic", "cell": config_hash(config), **params}
    return [{**base, **row} for row in result.get("rows", [])]


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Config columns first, the rest sorted by name; rows sorted stably (the order of runs.csv)."""
    order = [c for c in CONFIG_COLUMNS if c in df] + sorted(c for c in df.columns if c not in CONFIG_COLUMNS)
    df = df[order]
    sort_cols = [c for c in ("experiment", "dataset", "image_size", "method", "seed", "shots", "episode",
                             "metric", "epoch") if c in df]
    return df.sort_values(sort_cols, kind="mergesort", na_position="first").reset_index(drop=True)


def collect(results_dir: Path | str, fallback: bool = True) -> pd.DataFrame:
    """Every finished cell's rows, sorted stably; falls back to runs.csv when no cells are stored
    (unless `fallback=False`: then an empty frame)."""
    results_dir = Path(results_dir)
    cells, superseded = ResultsStore(results_dir).iter_current()
    if superseded:
        print(f"note: {superseded} stored cells left out: newer cells of the same method, experiment and episodes "
              "(run after a profile value changed) replace them", file=sys.stderr)
    rows = [r for cfg, res in cells for r in rows_of(cfg, res)]
    if not rows:
        csv = results_dir / "runs.csv"
        if fallback and csv.exists():
            return pd.read_csv(csv)
        return pd.DataFrame(columns=CONFIG_COLUMNS + ["metric", "value"])
    return tidy(pd.DataFrame(rows))


#: Rows of runs.csv and of stored cells are the same results when they share these columns.
MERGE_KEY = ["dataset", "image_size", "profile", "experiment", "method"]


def merged(results_dir: Path | str) -> pd.DataFrame:
    """What a report is built from: every stored cell's rows, plus the rows of `runs.csv` whose
    (dataset, image size, profile, experiment, method) no stored cell holds, so a report never drops
    results it did not recompute (a clone has runs.csv but no cells; a smoke run into a store of quick
    results adds its rows beside theirs). Returned as runs.csv will hold them (floats to 6 significant
    digits), so a report from cells and one from runs.csv alone write the same bytes."""
    import io

    results_dir = Path(results_dir)
    cells = collect(results_dir, fallback=False)
    csv = results_dir / "runs.csv"
    old = pd.read_csv(csv) if csv.exists() else cells.iloc[:0]
    if not cells.empty and not old.empty:
        have = set(map(tuple, cells[MERGE_KEY].astype(str).drop_duplicates().itertuples(index=False)))
        keep = [tuple(r) not in have for r in old[MERGE_KEY].astype(str).itertuples(index=False)]
        old = old[keep]
    if cells.empty:
        df = old
    elif old.empty:
        df = cells
    else:
        df = tidy(pd.concat([old, cells], ignore_index=True, sort=False))
    if df.empty:
        return df
    return pd.read_csv(io.StringIO(df.to_csv(index=False, float_format=CSV_FLOAT)))


CSV_FLOAT = "%.6g"


def write_runs_csv(df: pd.DataFrame, results_dir: Path | str) -> Path:
    path = Path(results_dir) / "runs.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, df.to_csv(index=False, float_format=CSV_FLOAT))
    return path
