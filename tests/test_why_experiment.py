"""The `why` experiment and its profile.

Guards: bench/profiles/study.toml is quick.toml plus `[experiments.why]` and `[experiments.scale]`
(so the study reads quick's collective run, pre-training and episodes); a profile without that section gets no `why` cells (the
default run does not grow); each (method, options) row is one cell per shot count and seed, the
shared top-3 row once, and only selected methods run; and the experiment runs and reports through
`bench run` on synthetic data: a table with the paired difference to scratch, and the k figure.
"""
from __future__ import annotations

import tomllib

import torch
from cli_helpers import run

from bench.cell_env import RunSpec
from bench.experiments import EXPERIMENT_NAMES, why
from bench.profiles import PROFILE_DIR, load_profile

torch.set_num_threads(1)
STUDY_ROWS = ["scratch", "finetune", "finetune-full", "learngene-continual", "learngene-joint", "learngene-pretrained",
              "learngene-random", "learngene-random-bn", "collective-ncm", "ancestor-ncm-joint", "ancestor-ncm-pretrained",
              "ancestor-ncm-random", "ancestor-ncm-random-bn"]


def _spec(profile: dict) -> RunSpec:
    return RunSpec("synthetic", "", 32, profile, "")


def test_study_profile_is_quick_plus_the_study_sections():
    quick, study = (tomllib.loads((PROFILE_DIR / f"{n}.toml").read_text()) for n in ("quick", "study"))
    study_experiments = study.pop("experiments")
    assert set(study_experiments.pop("why")) and set(study_experiments.pop("scale"))
    assert study_experiments == quick.pop("experiments")
    for key in ("name", "description"):
        quick.pop(key), study.pop(key)
    assert study == quick


def test_why_runs_only_under_a_profile_that_asks_for_it():
    assert "why" in EXPERIMENT_NAMES
    assert why.cells(_spec(load_profile("quick")), STUDY_ROWS) == []  # `make run` does not grow
    cells = why.cells(_spec(load_profile("study")), STUDY_ROWS)
    labels = [(c.params["row"], c.params["seed"]) for c in cells]
    assert len(labels) == len(set(labels))  # one cell per row and seed (one shot count)
    seeds = {c.params["seed"] for c in cells}
    labels = [row for row, seed in labels if seed == min(seeds)]
    assert "learngene-continual [k=3 top]" in labels and "learngene-joint [k=6 top]" in labels
    assert "learngene-random [k=3 middle frozen]" in labels and "learngene-continual [k=3 top matched px]" in labels
    # 3 references + 5 probes + 5 ancestors + 2 x 5 other k + 4 x 3 x 2 positions less the 4 shared top rows + 2
    assert len(labels) == 3 + 5 + 5 + 10 + 20 + 2 and len(cells) == len(labels) * len(seeds)
    assert "learngene-random-bn [k=3 front frozen]" in labels and "ancestor-ncm-random-bn" in labels
    assert {c.method for c in why.cells(_spec(load_profile("study")), ["scratch", "learngene-joint"])} == {"scratch", "learngene-joint"}


def test_why_runs_and_reports_through_bench_run(capsys, tmp_path):
    prof = (PROFILE_DIR / "smoke.toml").read_text() + """
[experiments.why]
shots = [5]
tasks = 2
seeds = 1
references = ["scratch", "finetune-full"]
ancestors = ["learngene-continual", "learngene-random"]
probes = ["collective-ncm", "ancestor-ncm-random"]
k_ancestors = ["learngene-random"]
ks = [1, 3]
position_ancestors = ["learngene-random"]
positions = ["top"]
frozen = [false, true]
matched = ["learngene-random"]
"""
    prof = prof.replace('name = "smoke"', 'name = "why-test"')
    path = tmp_path / "why-test.toml"
    path.write_text(prof)
    results = tmp_path / "results"
    methods = "scratch,finetune-full,learngene-continual,learngene-random,collective-ncm,ancestor-ncm-random"
    code, _, err = run(capsys, "run", "--method", methods, "--experiment", "why", "--profile", str(path),
                       "--dataset", "synthetic", "--results-dir", str(results))
    assert code == 0, err
    table = (results / "tables" / "why.md").read_text()
    for row in ("| scratch |", "| learngene-continual [k=3 top] |", "| learngene-random [k=3 top frozen] |",
                "| learngene-random [k=3 top matched px] |", "| ancestor-ncm-random |", "| finetune-full |"):
        assert row in table, row
    lines = {ln.split(" | ")[0][2:]: ln.split(" | ") for ln in table.splitlines() if ln.startswith("| ")}
    assert lines["learngene-continual [k=3 top]"][5] == "2 → 4"  # the resolution confound at 32 px
    assert lines["learngene-random [k=3 top matched px]"][5] == "2 → 2"
    assert " ± " in lines["learngene-continual [k=3 top]"][2] and " ± " in lines["learngene-continual [k=3 top]"][4]
    assert lines["learngene-random [k=3 top]"][4] == lines["ancestor-ncm-random"][1]  # its probe beside it
    for contrast in ("| ancestor | learngene-random [k=3 top] − learngene-continual [k=3 top] |",
                     "| frozen | learngene-random [k=3 top frozen] − learngene-random [k=3 top] |",
                     "| frozen vs paper | learngene-random [k=3 top frozen] − learngene-continual [k=3 top] |",
                     "| resolution | learngene-random [k=3 top matched px] − learngene-random [k=3 top] |",
                     "| k | learngene-random [k=1 top] − learngene-random [k=3 top] |"):
        assert contrast in table, contrast
    assert list((results / "figures").glob("why_k_5shot_*.png"))
    readme = (results / "README.md").read_text()
    why = readme[readme.index("## Why learngene loses here"):]
    assert "- synthetic 32px, 5-shot, ancestor vs scratch: learngene-continual [k=3 top] − scratch = " in why
    assert "- synthetic 32px, 5-shot, k: learngene-random [k=1 top] − learngene-random [k=3 top] = " in why
    assert "(paired, n=2): **" in why
