"""`bench compare`, the forest plot, and the one-line error for a user's folder with too-small classes."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import one_line_error, run
from conftest import PALETTE, write_image
from scipy import stats

from bench.cli import main
from bench.collect import collect
from bench.forest import forest_table

GOLDEN = Path(__file__).parent / "fixtures" / "golden"




def write_runs(results: Path, rows: list[tuple[str, int, int, int, float]], px: int = 32) -> Path:
    """A results dir holding only runs.csv (like a fresh clone): rows = (method, seed, shots, episode, acc)."""
    results.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"experiment": "table3", "method": m, "dataset": "mine", "image_size": px, "profile": "quick",
                   "synthetic": False, "cell": f"{m}{seed}{shots}", "episode": ep, "metric": "accuracy",
                   "seed": seed, "shots": shots, "value": acc} for m, seed, shots, ep, acc in rows]
                 ).to_csv(results / "runs.csv", index=False)
    return results


def test_compare_pairs_only_shared_episodes_with_the_readme_statistic(capsys, tmp_path):
    rows = [("mine", 0, 10, e, a) for e, a in enumerate([0.5, 0.6, 0.7])]
    rows += [("learngene", 0, 10, e, 0.4) for e in range(3)]
    rows += [("learngene", 1, 10, 0, 0.9)]  # an episode 'mine' did not run: not paired
    rows += [("mine", 0, 20, e, 0.9 + e / 100) for e in range(4)]
    rows += [("learngene", 0, 20, e, 0.5) for e in range(4)]
    results = write_runs(tmp_path / "r", rows)
    code, out, _ = run(capsys, "compare", "mine", "learngene", "--results-dir", str(results))
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("mine − learngene, table3 accuracy paired over the episodes both ran")
    half = stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3) * 100  # diffs 0.1, 0.2, 0.3
    assert lines[1].strip() == (f"mine 32px (quick), 10-shot: mine beats learngene: not resolved (CI spans 0), "
                                f"by +20.00 ± {half:.2f} points (paired, n=3)")
    assert "20-shot: mine beats learngene: yes, by +41.50 ±" in lines[2] and "(paired, n=4)" in lines[2]
    code, out, _ = run(capsys, "compare", "learngene", "mine", "--results-dir", str(results))
    assert "learngene beats mine: no (it is worse), by -41.50" in out


def test_compare_agrees_with_the_results_readme(capsys, tmp_path):
    results = tmp_path / "r"
    results.mkdir()
    shutil.copy(GOLDEN / "runs.csv", results / "runs.csv")
    assert main(["report", "--results-dir", str(results)]) == 0
    readme = (results / "README.md").read_text()
    capsys.readouterr()
    code, out, _ = run(capsys, "compare", "learngene", "scratch", "--results-dir", str(results))
    assert code == 0
    for line in out.strip().splitlines()[1:]:
        verdict_and_numbers = line.split("learngene beats scratch: ")[1]  # "not resolved ..., by +4.00 ± ..."
        word, numbers = verdict_and_numbers.split(", by ")
        assert f"learngene beats scratch: **{word}**, by {numbers}" in readme


def test_compare_without_shared_episodes_is_one_line_exit_2(capsys, tmp_path):
    rows = [("mine", 0, 10, e, 0.5) for e in range(3)] + [("learngene", 1, 10, e, 0.4) for e in range(3)]
    results = write_runs(tmp_path / "r", rows)
    code, _, err = run(capsys, "compare", "mine", "learngene", "--results-dir", str(results))
    one_line_error(code, err, "'mine' and 'learngene' share no table3 episodes", "--method mine,learngene")
    results64 = write_runs(tmp_path / "r64", [("mine", 0, 10, 0, 0.5)], px=64)
    pd.concat([pd.read_csv(results64 / "runs.csv"), pd.read_csv(write_runs(
        tmp_path / "r32", [("learngene", 0, 10, 0, 0.5)]) / "runs.csv")]).to_csv(results64 / "runs.csv", index=False)
    code, _, err = run(capsys, "compare", "mine", "learngene", "--results-dir", str(results64))
    one_line_error(code, err, "share no")  # same seed and episode, but another image size


@pytest.mark.parametrize("argv,needle", [
    (("compare", "nope", "learngene"), "method 'nope' has no table3 results"),
    (("compare", "mine", "mine"), "two different methods"),
])
def test_compare_other_errors(capsys, tmp_path, argv, needle):
    results = write_runs(tmp_path / "r", [("mine", 0, 10, 0, 0.5), ("learngene", 0, 10, 0, 0.4)])
    code, _, err = run(capsys, *argv, "--results-dir", str(results))
    one_line_error(code, err, needle)
    code, _, err = run(capsys, "compare", "a", "b", "--results-dir", str(tmp_path / "absent"))
    one_line_error(code, err, "no results in")


def test_forest_is_method_minus_reference_and_written_by_report(capsys, tmp_path):
    rows = [("mine", 0, 10, e, 0.6) for e in range(3)] + [("learngene", 0, 10, e, 0.4 + e / 100) for e in range(3)]
    rows += [("scratch", 0, 10, e, 0.3) for e in range(3)]
    results = write_runs(tmp_path / "r", rows)
    tab = forest_table(collect(results), "learngene").set_index("method")
    assert tab.loc["mine", "mean"] == pytest.approx(0.19) and tab.loc["mine", "verdict"] == "yes"
    assert tab.loc["scratch", "mean"] == pytest.approx(-0.11) and tab.loc["scratch", "verdict"] == "no"
    assert main(["report", "--results-dir", str(results), "--reference", "scratch"]) == 0
    png = results / "figures" / "forest_mine_quick.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    top = (results / "README.md").read_text().split("## What ran")[0]
    assert "figures/forest_mine_quick.png" in top  # the verdict figure comes before any table


def test_forest_skipped_with_a_note_when_the_reference_did_not_run(capsys, tmp_path):
    results = write_runs(tmp_path / "r", [("mine", 0, 10, 0, 0.5), ("scratch", 0, 10, 0, 0.4)])
    assert main(["report", "--results-dir", str(results)]) == 0
    assert "no forest plot: 'learngene' has no table3 results" in capsys.readouterr().err
    assert not list(results.glob("figures/forest_*.png"))


# ------------------------------------------------------------------------------------ your own folder


def write_folder(root: Path, sizes: dict[str, int]) -> Path:
    for c, (name, n) in enumerate(sizes.items()):
        for i in range(n):
            write_image(root / name / f"{i}.png", tuple((v + 7 * i) % 256 for v in PALETTE[c % 10]), (12, 12))
    return root


def test_imagefolder_too_small_classes_named_with_counts_and_fitting_flags(capsys, tmp_path, cache_dir):
    sizes = {f"c{i:02d}": 30 for i in range(20)}  # 24 train / 6 test each (last 20% are queries)
    root = write_folder(tmp_path / "mine", sizes)
    common = ("run", "--dataset", "imagefolder", "--data-dir", str(root), "--method", "scratch",
              "--experiment", "table3", "--profile", "smoke", "--image-size", "32")
    code, _, err = run(capsys, *common, "--results-dir", str(tmp_path / "r"))
    one_line_error(code, err, "20 shots + 10 queries per class (Table 3's 20-shot episodes)",
                          "20 train + 10 test images in every novel class", "5 of 5 have fewer",
                          "(24 train / 6 test)", "--shots 24 --queries 6", "--split FILE")
    assert not (tmp_path / "r" / "cells").exists()
    code, _, err = run(capsys, *common, "--shots", "5,10", "--queries", "5", "--dry-run",
                       "--results-dir", str(tmp_path / "r"))
    assert code == 0, err
    assert "derived a seeded division (10 base / 5 open-world / 5 novel classes)" in err


def test_only_the_selected_experiments_needs_are_checked(capsys, tmp_path, cache_dir):
    from bench.datacheck import needs

    profile = {"episodes": {"shots": [5], "open_world_shots": 50},
               "experiments": {"fig4": {"shots": 100, "sample_sizes": [10]}, "fig6": {"shots": 20}}}
    assert [(n.pool, n.shots) for n in needs(profile, ["table3"], 5)] == [("novel", 5)]
    every = {(n.pool, n.shots) for n in needs(profile, ["table3", "table2", "fig4", "fig6"], None)}
    assert every == {("novel", 5), ("open_world", 50), ("novel", 100), ("novel", 10), ("novel", 20)}


def test_committed_forest_is_rebuilt_from_committed_runs_csv(tmp_path):
    """results/cells is not committed; the forest plot at the top of the READMEs comes from runs.csv."""
    from bench.forest import write_forest
    from bench.report import ReportContext

    committed = Path(__file__).resolve().parents[1] / "results"
    df = collect(committed)  # no cells in a clone: the collector reads runs.csv
    tab = forest_table(df, "learngene")
    assert set(tab.image_size) == {32} and set(tab.shots) == {10, 20} and (tab["n"] >= 25).all()
    ctx = ReportContext.for_dir(tmp_path, figures_dir=tmp_path / "figures")
    (png,) = write_forest(df, ctx)
    assert png.name == "forest_tiny-imagenet_quick.png" and (committed / "figures" / png.name).exists()
    readme = (committed / "README.md").read_text()
    assert readme.index(f"figures/{png.name}") < readme.index("## What ran")
