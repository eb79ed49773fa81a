"""The collector: finished cells -> one tidy DataFrame (one row per cell and metric) -> runs.csv."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from bench.atomic import atomic_write_text
from bench.store import ResultsStore
from methods.artifacts import config_hash

CONFIG_COLUMNS = ["experiment", "method", "dataset", "image_size", "profile", "synthetic", "cell"]
#: A cell-level row: the cell's wall seconds outside its episodes (its preparation, builds included).
PREPARE_METRIC = "cell_prepare_s"


def rows_of(config: dict, result: dict) -> list[dict]:
    """Flatten one cell: its config columns and params beside each result row."""
    params = {k: v for k, v in config.get("params", {}).items() if not isinstance(v, dict | list)}
    for k, v in config.get("params", {}).get("method_options", {}).items():
        params[f"opt_{k}"] = v
    base = {"experiment": config["experiment"], "method": config["method"], "dataset": config["dataset"],
            "image_size": config["image_size"], "profile": config["profile"].get("name", "?"),
            "synthetic": config["dataset"] == "synthetic", "cell": config_hash(config), **params}
    rows = [{**base, **row} for row in result.get("rows", [])]
    if result.get("wall_s") is not None and rows:
        # the cell's time outside its episodes (loading data and weights, or building them): kept so that
        # runs.csv alone records each artifact build's seconds for the cost model (bench/cost/model.py)
        episodes = sum(float(r["value"]) for r in result["rows"] if r.get("metric") == "wall_s")
        prep = {**base, "metric": PREPARE_METRIC, "value": round(max(0.0, float(result["wall_s"]) - episodes), 1)}
        rows.append({**prep, "cpu": result["cpu"]} if result.get("cpu") else prep)  # whose seconds these are
    return rows


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
    return tidy(compact(pd.DataFrame(rows)))


#: Per-episode metrics kept on every episode even where a cell's value does not vary.
PER_EPISODE = frozenset({"accuracy", "wall_s", "curve"})


def compact(df: pd.DataFrame) -> pd.DataFrame:
    """What runs.csv need not repeat: a metric with one value on every episode of a cell (a network's
    parameter count, its settings, where its blocks ran) is kept on the cell's first episode only, and
    an episode's class names on its accuracy row only. Readers take such a metric per cell
    (`.groupby(...).first()`); the accuracies, their episodes and classes are all kept."""
    if "episode" not in df or "cell" not in df:
        return df
    ep = df["episode"].notna() & ~df["metric"].isin(PER_EPISODE) & (df["epoch"].isna() if "epoch" in df else True)
    sub = df[ep]
    one_value = sub.groupby(["cell", "metric"])["value"].transform("nunique").eq(1)
    first = sub.groupby(["cell", "metric"])["episode"].transform("min")
    drop = one_value & sub["episode"].ne(first)
    out = df.drop(index=sub.index[drop])
    if "classes" in out:
        out = out.assign(classes=out["classes"].where(out["metric"].eq("accuracy")))
    return out


#: A runs.csv row and a stored cell hold the same results when these columns and the cell's own
#: parameters (seed, shots, pool, checkpoint, ...: `rows_of`'s flattened params) agree.
MERGE_KEY = ["dataset", "image_size", "profile", "experiment", "method"]


def _norm(v) -> str:
    """One spelling per value for matching: 10, 10.0 and '10' alike; NaN and None as ''."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, int | float) and not isinstance(v, bool) and float(v).is_integer():
        return str(int(v))
    return str(v)


def merged(results_dir: Path | str) -> pd.DataFrame:
    """What a report is built from: every stored cell's rows, plus the rows of `runs.csv` that no
    stored cell replaces, so a report never drops results it did not recompute (a clone has runs.csv
    but no cells; a smoke run into a store of quick results adds its rows beside theirs; an
    interrupted run replaces only the cells it finished). A runs.csv row is replaced when its cell is
    in the store (under its hash, current or superseded) or a stored cell has its dataset, size,
    profile, experiment, method and parameters. Returned as runs.csv will hold them (floats to 6
    significant digits), so a report from cells and one from runs.csv alone write the same bytes."""
    import io

    results_dir = Path(results_dir)
    store = ResultsStore(results_dir)
    stored_hashes, param_keys = set(), set()
    for d, cfg in store.intact():
        stored_hashes.add(d.name)
        params = cfg.get("params", {})
        param_keys |= {k for k, v in params.items() if not isinstance(v, dict | list)}
        param_keys |= {f"opt_{k}" for k in params.get("method_options", {})}
    cells = collect(results_dir, fallback=False)
    csv = results_dir / "runs.csv"
    old = pd.read_csv(csv) if csv.exists() else cells.iloc[:0]
    if not cells.empty and not old.empty:
        key = MERGE_KEY + sorted(k for k in param_keys if k in cells.columns and k in old.columns)
        have = set(map(tuple, cells[key].drop_duplicates().map(_norm).itertuples(index=False)))
        ident = [tuple(r) for r in old[key].map(_norm).itertuples(index=False)]
        in_store = old["cell"].astype(str).isin(stored_hashes) if "cell" in old else False
        old = old[~(in_store | pd.Series([i in have for i in ident], index=old.index))]
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
