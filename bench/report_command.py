"""`python -m bench report`: tables, figures, runs.csv and the results README from the stored cells,
under the results lock; damaged cells stop it, outputs of experiments without rows are removed."""
from __future__ import annotations

import sys
from pathlib import Path

from bench.errors import UsageError
from bench.experiments import EXPERIMENT_NAMES, get_experiment
from bench.lock import ResultsLock
from bench.store import ResultsStore


def cmd_report(args) -> int:
    """`report` on its own: take the results lock (a run may be writing cells), then rebuild."""
    results_dir = Path(args.results_dir)
    # Checked before the lock is taken, so a folder without results is left as it was (no `.lock`).
    if not results_dir.is_dir() or not (ResultsStore(results_dir).cells_dir.is_dir()
                                        or (results_dir / "runs.csv").is_file()):
        raise UsageError(f"no results in {results_dir} (no cells/ and no runs.csv); run `python -m bench run` "
                         "first or pass --results-dir")
    with ResultsLock(results_dir).acquire(wait=getattr(args, "wait", False), purpose="report"):
        return report_dir(results_dir, getattr(args, "reference", None) or "learngene",
                          explicit_reference=getattr(args, "reference", None) is not None)


def report_dir(results_dir: Path, reference: str = "learngene", explicit_reference: bool = False) -> int:
    """Tables, figures, runs.csv and README from the stored cells; the caller holds the lock.

    Built from `bench.collect.merged`: the stored cells plus the rows of runs.csv no stored cell
    replaces, so a report keeps every (dataset, image size, profile) group's rows, tables and figures,
    whichever run made them. Damaged cells stop the report (a table silently missing a cell would be
    wrong, not partial), and outputs no group has rows for any more are removed, not left on disk
    looking current. A `--reference` no Table 3 row holds stops it before anything is written."""
    from bench.collect import merged, write_runs_csv
    from bench.report import ReportContext, remove_stale_outputs

    damaged = ResultsStore(results_dir).damaged()
    if damaged:
        names = ", ".join(str(d.relative_to(results_dir)) for d, _ in damaged[:5])
        more = f" and {len(damaged) - 5} more" if len(damaged) > 5 else ""
        raise UsageError(f"{len(damaged)} damaged cell(s) in {results_dir}: {names}{more} ({damaged[0][1]}); run the "
                         "same `python -m bench run` again to recompute them, or delete those cell folders")
    df = merged(results_dir)
    if df.empty:
        raise UsageError(f"no finished cells in {results_dir}; run `python -m bench run` first")
    if explicit_reference:
        have = sorted(set(df.loc[(df.experiment == "table3") & (df.metric == "accuracy"), "method"]))
        if reference not in have:
            raise UsageError(f"--reference {reference}: no Table 3 results of '{reference}' in {results_dir}; "
                             f"choose one of: {', '.join(have) or '(none: run the table3 experiment first)'}")
    write_runs_csv(df, results_dir)
    ctx = ReportContext.for_dir(results_dir)
    written = []
    for name in EXPERIMENT_NAMES:
        sub = df[df.experiment == name]
        if not sub.empty:
            written += get_experiment(name).report(sub, ctx)
    from bench.forest import write_forest
    from bench.summary import write_summary

    written += write_forest(df, ctx, reference)
    stale = remove_stale_outputs(ctx, written)
    keep = {Path(p).resolve() for p in written}
    for path in sorted(ctx.figures_dir.glob("forest_*.png")) if ctx.figures_dir.is_dir() else []:
        if path.resolve() not in keep:  # a forest plot this report did not draw would look current
            path.unlink()
            stale.append(path)
    for path in stale:
        print(f"removed {path} (no rows to draw it from now)", file=sys.stderr)
    written.append(write_summary(df, ctx))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0
