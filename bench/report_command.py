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
    if not results_dir.is_dir():
        raise UsageError(f"no results in {results_dir}; run `python -m bench run` first or pass --results-dir")
    with ResultsLock(results_dir).acquire(wait=getattr(args, "wait", False), purpose="report"):
        return report_dir(results_dir, getattr(args, "reference", "learngene"))


def report_dir(results_dir: Path, reference: str = "learngene") -> int:
    """Tables, figures, runs.csv and README from the stored cells; the caller holds the lock.

    Damaged cells stop the report (a table silently missing a cell would be wrong, not partial), and
    outputs of experiments that no longer have rows are removed, not left on disk looking current."""
    from bench.collect import collect, write_runs_csv
    from bench.report import ReportContext, remove_stale_outputs

    damaged = ResultsStore(results_dir).damaged()
    if damaged:
        names = ", ".join(str(d.relative_to(results_dir)) for d, _ in damaged[:5])
        more = f" and {len(damaged) - 5} more" if len(damaged) > 5 else ""
        raise UsageError(f"{len(damaged)} damaged cell(s) in {results_dir}: {names}{more} ({damaged[0][1]}); run the "
                         "same `python -m bench run` again to recompute them, or delete those cell folders")
    df = collect(results_dir)
    if df.empty:
        raise UsageError(f"no finished cells in {results_dir}; run `python -m bench run` first")
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
    for path in remove_stale_outputs(ctx, written):
        print(f"removed {path} (its experiment has no rows now)", file=sys.stderr)
    written.append(write_summary(df, ctx))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0
