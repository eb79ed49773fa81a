"""The figure verdicts' rules on hand-made rows: plateau epochs, paired gaps, the floor."""
from __future__ import annotations

import pandas as pd

from bench import verdicts


def _curve_rows(method: str, curves: list[list[float]]) -> list[dict]:
    return [{"experiment": "fig4", "panel": "curves", "metric": "curve", "method": method, "seed": 0, "shots": 100,
             "episode": e, "epoch": i + 1, "value": v} for e, c in enumerate(curves) for i, v in enumerate(c)]


def test_plateau_is_first_epoch_within_one_point_of_the_final_accuracy():
    rows = pd.DataFrame(_curve_rows("learngene", [[0.2, 0.5, 0.595, 0.60], [0.59, 0.2, 0.3, 0.6]]))
    got = verdicts.plateau_epochs(rows).tolist()
    assert got == [3.0, 1.0]  # 59.5 is within 1 point of 60; 59 is within 1 point too (>= 59)


def test_fig4_plateau_verdict_is_paired_and_signed():
    fast = [[0.5, 0.6, 0.6, 0.6]] * 3 + [[0.6, 0.6, 0.6, 0.6]] * 3
    slow = [[0.2, 0.3, 0.4, 0.6]] * 3 + [[0.2, 0.3, 0.5, 0.6]] * 3
    df = pd.DataFrame(_curve_rows("learngene", fast) + _curve_rows("scratch", slow))
    line = verdicts.fig4_plateau(df)[0]
    assert "learngene earlier by +2.50" in line and "**yes**" in line
    df = pd.DataFrame(_curve_rows("learngene", slow) + _curve_rows("scratch", fast))
    assert "**no (the opposite holds)**" in verdicts.fig4_plateau(df)[0]


def _acc(method: str, experiment: str, values: list[float], shots: int = 10, **extra) -> list[dict]:
    return [{"experiment": experiment, "metric": "accuracy", "method": method, "seed": 0, "shots": shots,
             "episode": e, "value": v, **extra} for e, v in enumerate(values)]


def test_floor_check_names_methods_at_or_below_random_features():
    df = pd.DataFrame(_acc("random-ncm", "table3", [0.40, 0.42, 0.38]) + _acc("protonet", "table3", [0.60, 0.62, 0.61])
                      + _acc("fomaml", "table3", [0.39, 0.41, 0.37]))
    line = verdicts.floor_check(df)[0]
    assert "fomaml" in line and "protonet" not in line and "at or below" in line
    df = df[df.method != "fomaml"]
    assert "every method is above it" in verdicts.floor_check(df)[0]


def test_fig6_positions_compare_top_with_each_other_position_on_the_same_episodes():
    df = pd.DataFrame(_acc("learngene-top-uniform", "fig6", [0.50, 0.60, 0.70], 20, panel="position")
                      + _acc("learngene-middle", "fig6", [0.48, 0.58, 0.68], 20, panel="position")
                      + _acc("learngene-front", "fig6", [0.52, 0.62, 0.72], 20, panel="position"))
    lines = verdicts.fig6_positions(df)
    assert "top minus middle +2.00 ± 0.00" in lines[0] and "**yes**" in lines[0]
    assert "top minus front -2.00 ± 0.00" in lines[1] and "opposite" in lines[1]


def test_table3_caption_names_the_deviations_from_the_paper_and_the_capacity_control():
    from bench.experiments.table3 import recipe_caption

    rows = pd.DataFrame([{"experiment": "table3", "metric": "params", "method": m, "value": 739845.0}
                         for m in ("scratch", "learngene")])
    profile = {"individual": {"width": 0.25}, "collective": {"tasks": 21, "epochs": 10, "lr": 0.01}}
    text = recipe_caption(rows, profile)
    assert "the same network (739,845 vs 739,845 parameters)" in text
    assert "width 0.25 (paper 1)" in text and "collective lr 0.01 (paper 0.001)" in text
    rows.loc[rows.method == "learngene", "value"] = 1.0
    assert "DIFFERENT" in recipe_caption(rows, None)
