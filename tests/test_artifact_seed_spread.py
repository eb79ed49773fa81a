"""scripts/artifact_seed_spread.py: paired gaps between base-training seeds, and to a method without one."""
from __future__ import annotations

from pathlib import Path

from script_helpers import load_script

from bench.store import ResultsStore


def _store(root: Path, method: str, artifact_seed: int, accs: list[float]) -> Path:
    store = ResultsStore(root)
    cfg = {"experiment": "table3", "method": method, "dataset": "d", "image_size": 32,
           "params": {"seed": 0, "shots": 10}, "profile": {"name": "p", "episodes": {"artifact_seed": artifact_seed}}}
    store.write(cfg, {"rows": [{"metric": "accuracy", "episode": i, "value": a} for i, a in enumerate(accs)],
                      "wall_s": 1.0})
    return root


def test_gaps_are_paired_by_episode_and_the_seed_spread_is_a_t_interval(tmp_path):
    a = _store(tmp_path / "a", "protonet", 0, [0.50, 0.60, 0.70])
    b = _store(tmp_path / "b", "protonet", 1, [0.52, 0.62, 0.72])  # +2 points on every episode
    s = _store(tmp_path / "s", "scratch", 0, [0.40, 0.50, 0.60])
    text = load_script("artifact_seed_spread").report("protonet", "table3", [a, b], "scratch", s)
    assert "| 1 | " in text and "+2.00 ± 0.00 (n=3)" in text  # paired: no episode noise
    assert "+10.00 ± 0.00 (n=3)" in text and "+12.00 ± 0.00 (n=3)" in text
    assert "mean over 2 base-training seeds: 61.00 ±" in text and "SD between seeds 1.41" in text


def test_missing_directory_is_one_line_and_exit_2(tmp_path, capsys):
    assert load_script("artifact_seed_spread").main(["--method", "protonet", "--store", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no results directory" in err
