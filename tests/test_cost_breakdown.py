"""scripts/cost_breakdown.py: per-row cost from stored cells (episodes, base training once, current cells only)."""
from __future__ import annotations

from script_helpers import load_script

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
    mod = load_script("cost_breakdown")
    rows, superseded = mod.breakdown(tmp_path)
    assert superseded == 1
    assert rows == [{"experiment": "table3", "method": "protonet", "cells": 2, "episodes_s": 60.0,
                     "prepare_s": 112.0, "base_training_s": 100.0, "max_cell_s": 130.0}]
    assert mod.main(["--results-dir", str(tmp_path), "--out", str(tmp_path / "cost.md")]) == 0
    text = (tmp_path / "cost.md").read_text()
    assert "| table3 | protonet | 2 | 1.0 | 1.7 | 0.2 | 2.7 | 130 |" in text and "1 superseded" in text


def test_a_directory_without_cells_is_one_line_and_exit_2(tmp_path, capsys):
    assert load_script("cost_breakdown").main(["--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no cells" in err
