"""`python -m bench.cost breakdown` (bench/cost/breakdown.py): per-row cost from stored cells (episodes,
base training once, current cells only), and `reference`, the dry run's table from the same cells."""
from __future__ import annotations

import json

from bench.cost.__main__ import main
from bench.cost.breakdown import breakdown, repo_relative
from bench.cost.model import load_recorded
from bench.store import ResultsStore


def _cell(method: str, seed: int, settings: str) -> dict:
    return {"experiment": "table3", "method": method, "dataset": "d", "image_size": 32,
            "params": {"seed": seed, "shots": 10}, "profile": {"name": "p"}, "settings": settings}


def _result(cell_s: float, episode_s: list[float]) -> dict:
    return {"rows": [{"metric": "wall_s", "value": v} for v in episode_s] + [{"metric": "accuracy", "value": 0.5}],
            "wall_s": cell_s}


def test_breakdown_splits_episodes_from_preparation_and_skips_superseded_cells(tmp_path, capsys):
    store = ResultsStore(tmp_path)
    store.write(_cell("protonet", 0, "old"), _result(999.0, [1.0]), written=1.0)  # superseded below
    store.write(_cell("protonet", 0, "new"), _result(130.0, [10.0, 20.0]), written=2.0)  # built the weights
    store.write(_cell("protonet", 1, "new"), _result(42.0, [15.0, 15.0]), written=3.0)  # waited, loaded
    rows, superseded = breakdown(tmp_path)
    assert superseded == 1
    assert rows == [{"experiment": "table3", "method": "protonet", "cells": 2, "episodes_s": 60.0,
                     "prepare_s": 112.0, "base_training_s": 100.0, "max_cell_s": 130.0}]
    assert main(["breakdown", "--results-dir", str(tmp_path), "--out", str(tmp_path / "cost.md")]) == 0
    text = (tmp_path / "cost.md").read_text()
    assert "| table3 | protonet | 2 | 1.0 | 1.7 | 0.2 | 2.7 | 130 |" in text and "1 superseded" in text
    assert str(tmp_path) not in text  # the command is recorded without this machine's path


def test_reference_from_a_store_feeds_the_estimate(tmp_path):
    store = ResultsStore(tmp_path)
    store.write(_cell("protonet", 0, "new"), _result(130.0, [10.0, 20.0]), written=2.0)
    (tmp_path / "runs.csv").write_text("experiment,method,dataset,image_size,profile,shots,metric,value\n"
                                       "table3,protonet,d,32,smoke,10,wall_s,10\ntable3,protonet,d,32,smoke,10,wall_s,20\n"
                                       "table3,protonet,d,32,quick,10,wall_s,99\n")
    out = tmp_path / "ref.json"
    assert main(["reference", "--results-dir", str(tmp_path), "--dataset", "d", "--profile", "smoke",
                 "--out", str(out)]) == 0
    ref = json.loads(out.read_text())
    assert ref["build_s"] == {"protonet": 100} and ref["calibration_s"] > 0 and str(tmp_path) not in ref["source"]
    rec = load_recorded(("d", 32, "smoke"), None, out)
    assert rec.episode_s == {("table3", "protonet", "10"): 15.0} and rec.build_s == {"protonet": 100}


def test_repo_relative_paths():
    assert repo_relative("docs/evidence/cost.md") == "docs/evidence/cost.md"
    assert repo_relative("/somewhere/else/run2") == "<outside the repository>/run2"


def test_a_directory_without_cells_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["breakdown", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no cells" in err
