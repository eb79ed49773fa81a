"""Golden-file test of the collector and table builders on a committed miniature results store.

The fixture is a real smoke run (synthetic data, learngene + scratch, every experiment). If a
change alters runs.csv or a table, this test shows the diff; regenerate the golden files only
when the change is intended (python -m bench report --results-dir <copy of the fixture>).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from bench.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "mini_results"
GOLDEN = Path(__file__).parent / "fixtures" / "golden"


def test_report_rebuilds_golden_tables(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    assert main(["report", "--results-dir", str(results)]) == 0
    for name in ("table2.md", "table3.md"):
        assert (results / "tables" / name).read_text() == (GOLDEN / name).read_text(), name
    ours = pd.read_csv(results / "runs.csv")
    golden = pd.read_csv(GOLDEN / "runs.csv")
    pd.testing.assert_frame_equal(ours, golden)


def test_collector_has_one_row_per_cell_metric_and_no_duplicates(tmp_path):
    from bench.collect import collect

    df = collect(FIXTURE)
    key = [c for c in ("cell", "episode", "epoch", "metric", "task", "layer", "after_task") if c in df]
    assert not df.duplicated(subset=key).any()
    assert set(df.experiment) == {"table2", "table3", "fig3", "fig4", "fig6"}
    acc = df[(df.experiment == "table3") & (df.metric == "accuracy")]
    assert acc["value"].between(0, 1).all()


def test_report_from_runs_csv_alone(tmp_path):
    """A fresh clone has runs.csv but no cells: the report rebuilds from it."""
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(GOLDEN / "runs.csv", results / "runs.csv")
    shutil.copytree(FIXTURE / "meta", results / "meta")
    assert main(["report", "--results-dir", str(results)]) == 0
    assert (results / "tables" / "table3.md").read_text() == (GOLDEN / "table3.md").read_text()
