"""Learning from scratch: a fresh random model per episode, per-epoch curves, easy vs shuffled tasks."""
from __future__ import annotations

from meta_helpers import colour_set, episodes, source

import methods
from bench.profiles import method_settings

PROFILE = {"episodes": {"n_way": 5},
           "individual": {"width": 0.125, "epochs": 20, "lr": 0.005, "momentum": 0.9, "weight_decay": 5e-4,
                          "batch_size": 16}}


def _episodes(shuffle: bool = False):
    src = source(colour_set())
    return src, episodes(src, k_shot=10, n_query=6, n=3, shuffle_labels=shuffle)


def test_scratch_learns_easy_task_and_records_curve():
    src, eps = _episodes()
    m = methods.get("scratch")
    m.prepare(src, method_settings(PROFILE, m.name), cache=None)
    res = [m.run_episode(e) for e in eps]
    assert all(len(r.curve) == PROFILE["individual"]["epochs"] for r in res)
    assert all(r.accuracy == r.curve[-1] for r in res)
    assert min(r.accuracy for r in res) > 0.8


def test_scratch_is_deterministic_and_fresh_per_episode():
    src, eps = _episodes()
    m = methods.get("scratch")
    m.prepare(src, method_settings(PROFILE, m.name), cache=None)
    a = m.run_episode(eps[0])
    m.run_episode(eps[1])  # must not leak into a rerun of episode 0
    b = m.run_episode(eps[0])
    assert a.curve == b.curve


def test_scratch_near_chance_on_shuffled_labels():
    src, eps = _episodes(shuffle=True)
    m = methods.get("scratch")
    m.prepare(src, method_settings(PROFILE, m.name), cache=None)
    acc = sum(m.run_episode(e).accuracy for e in eps) / len(eps)
    assert acc < 0.5
