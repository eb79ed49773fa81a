"""Per-epoch query evaluation runs only where a figure draws the curve, and skipping it changes no number.

Why this matters: with every test image as a query, evaluating after every epoch costs about as much as
the support-set training itself, and Tables 2-3 read only the final accuracy.
"""
from __future__ import annotations

import pytest

from bench.cell_env import Env, RunSpec, run_episodes
from bench.profiles import load_profile, resolve

SUPPORT_SET_TRAINERS = ("scratch", "learngene", "learngene-official", "finetune", "finetune++", "deepemd")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    profile = resolve(load_profile("smoke"), image_size=32)
    return Env(RunSpec("synthetic", "", 32, profile, str(tmp_path_factory.mktemp("curve"))))


def _by_metric(rows: list[dict], metric: str) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for r in rows:
        if r["metric"] == metric:
            out.setdefault(r["episode"], []).append(r["value"])
    return out


@pytest.mark.parametrize("method", SUPPORT_SET_TRAINERS)
def test_final_accuracy_is_the_same_without_the_curve(env, method):
    with_curve = run_episodes(env, method, "novel", 10, 0, 2, curve=True)
    without = run_episodes(env, method, "novel", 10, 0, 2, curve=False)
    acc_with, acc_without = _by_metric(with_curve, "accuracy"), _by_metric(without, "accuracy")
    assert acc_with == acc_without
    curves = _by_metric(with_curve, "curve")
    assert curves and all(c[-1] == acc_with[e][0] for e, c in curves.items())
    assert not _by_metric(without, "curve")


def test_tables_skip_curves_and_figures_keep_them(env):
    from bench.cell_env import Cell
    from bench.experiments import fig4, table3

    t3 = table3.run(Cell("table3", "scratch", {"pool": "novel", "shots": 10, "seed": 0}), env)
    assert t3 and not _by_metric(t3, "curve")
    f4 = fig4.run(Cell("fig4", "scratch", {"panel": "curves", "shots": 10, "epochs": 2, "seed": 0,
                                            "method_options": {"epochs": 2}}), env)
    assert len(next(iter(_by_metric(f4, "curve").values()))) == 2
