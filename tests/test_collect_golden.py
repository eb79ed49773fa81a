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


def test_runs_csv_keeps_a_cells_constant_metrics_once_and_every_accuracy():
    """A metric with one value on every episode of a cell is written on its first episode only; a metric
    that varies, every accuracy and its episode's class names stay on every episode."""
    from bench.collect import compact

    rows = []
    for ep in range(3):
        base = {"cell": "c", "episode": ep, "classes": f"a{ep},b{ep}"}
        rows += [{**base, "metric": "accuracy", "value": 0.5 + ep / 10}, {**base, "metric": "params", "value": 7.0},
                 {**base, "metric": "ewc_penalty_final", "value": float(ep)},
                 {**base, "metric": "curve", "epoch": 1, "value": 0.2}]
    rows.append({"cell": "c", "metric": "collective_R", "task": 0, "value": 0.9})  # no episode: kept
    out = compact(pd.DataFrame(rows))
    assert list(out[out.metric == "params"].episode) == [0]
    assert len(out[out.metric == "ewc_penalty_final"]) == 3 and len(out[out.metric == "curve"]) == 3
    acc = out[out.metric == "accuracy"]
    assert list(acc.classes) == ["a0,b0", "a1,b1", "a2,b2"] and out[out.metric != "accuracy"].classes.isna().all()
    assert len(out[out.metric == "collective_R"]) == 1
