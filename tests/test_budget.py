"""The budget rule (`python -m bench.budget`): validation classes only, paired 1x/2x, one-line errors."""
from __future__ import annotations

import pytest

import bench.cell_env
from bench import budget
from tasks.splits import resolve_split


def test_budget_reads_only_validation_classes(tmp_path, monkeypatch):
    """Budgets must never be chosen on the novel classes that Table 3 reports."""
    pools: list[tuple[set[int], set[int], set[int]]] = []
    real = bench.cell_env.sample_episodes

    def spy(data, class_ids, *args, **kwargs):
        split = resolve_split(data, None)
        pools.append((set(class_ids), set(split.ids(data, "open_world")), set(split.ids(data, "novel"))))
        return real(data, class_ids, *args, **kwargs)

    monkeypatch.setattr(bench.cell_env, "sample_episodes", spy)
    out = tmp_path / "budgets.md"
    assert budget.main(["--method", "protonet", "--profile", "smoke", "--dataset", "synthetic",
                        "--tasks", "2", "--out", str(out)]) == 0
    assert len(pools) == 4  # 2 budgets x 2 shots x 1 seed
    assert all(used == validation and not used & novel for used, validation, novel in pools)
    text = out.read_text()
    assert "| protonet | [methods.protonet] meta_iterations | 10 | 3 |" in text and "| 6 |" in text
    assert "confidence interval" in text and (tmp_path / "budgets.csv").exists()


def test_every_method_family_has_a_budget_knob():
    import methods

    for name in methods.names():
        assert budget.knob_for(name).key


@pytest.mark.parametrize("method", ["maml", "fomaml", "protomaml"])
def test_doubling_reaches_a_variant_that_sets_its_own_budget(method):
    """quick sets MAML's meta-iterations in [methods.maml] and FOMAML's / Proto-MAML's in their own
    sections; doubling the family's value alone would leave a variant's budget unchanged (Δ = 0 read
    as 'converged'), so the knob must be the section that decides the method's resolved value."""
    import methods
    from bench.profiles import load_profile
    from methods.registry import settings_for

    methods.names()
    profile = load_profile("quick")
    knob = budget.knob_for(method, profile)
    one = settings_for(method, profile).meta_iterations
    two = settings_for(method, budget.with_budget(profile, knob, 2 * one)).meta_iterations
    assert two == 2 * one
    others = [m for m in ("maml", "fomaml", "protomaml") if m != method]
    assert [settings_for(m, budget.with_budget(profile, knob, 2 * one)).meta_iterations for m in others] == \
        [settings_for(m, profile).meta_iterations for m in others]


@pytest.mark.parametrize("argv", [["--method", "nosuch"], ["--method", "scratch", "--factor", "1"]])
def test_bad_input_is_one_line_and_exit_2(argv, tmp_path, capsys):
    out = tmp_path / "b.md"
    assert budget.main([*argv, "--dataset", "synthetic", "--profile", "smoke", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert not out.exists()


def test_append_keeps_other_methods_rows_and_replaces_the_remeasured_one(tmp_path):
    out = tmp_path / "budgets.md"
    common = ["--profile", "smoke", "--dataset", "synthetic", "--tasks", "2", "--out", str(out)]
    assert budget.main(["--method", "protonet", *common]) == 0
    assert budget.main(["--method", "matchingnet", "--append", *common]) == 0
    text = out.read_text()
    assert "| protonet |" in text and "| matchingnet |" in text and "--method matchingnet --append" in text
    assert budget.main(["--method", "protonet", "--append", *common]) == 0
    import pandas as pd

    d = pd.read_csv(tmp_path / "budgets.csv")
    assert sorted(d.groupby("method").size().to_dict().items()) == [("matchingnet", 8), ("protonet", 8)]


def test_from_csv_renders_parallel_runs_into_one_table(tmp_path, capsys):
    a, b = tmp_path / "a.md", tmp_path / "b.md"
    common = ["--profile", "smoke", "--dataset", "synthetic", "--tasks", "2", "--threads", "1"]
    assert budget.main(["--method", "protonet", *common, "--out", str(a)]) == 0
    assert budget.main(["--method", "scratch", *common, "--out", str(b)]) == 0
    out = tmp_path / "all.md"
    assert budget.main(["--from-csv", str(a.with_suffix(".csv")), str(b.with_suffix(".csv")), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| protonet |" in text and "| scratch |" in text and "--method scratch" in text
    capsys.readouterr()
    assert budget.main(["--from-csv", str(tmp_path / "nope.csv"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_successive_doublings_of_one_method_stay_separate_steps(tmp_path):
    """2200 -> 4400 and then 4400 -> 8800 are two steps of the rule: neither may be merged into the
    other's 1x / 2x columns, and appending the second keeps the first."""
    import pandas as pd

    from bench.profiles import PROFILE_DIR

    out = tmp_path / "budgets.md"
    common = ["--method", "protonet", "--dataset", "synthetic", "--tasks", "2", "--threads", "1", "--out", str(out)]
    assert budget.main(["--profile", "smoke", *common]) == 0
    first = int(pd.read_csv(tmp_path / "budgets.csv").budget.min())
    text = (PROFILE_DIR / "smoke.toml").read_text()
    at = text.index("[methods.protonet]")
    head, section = text[:at], text[at:]
    doubled = tmp_path / "doubled.toml"
    doubled.write_text(head + section.replace(f"meta_iterations = {first}", f"meta_iterations = {2 * first}", 1))
    assert budget.main(["--profile", str(doubled), "--append", *common]) == 0
    rows = [ln for ln in out.read_text().splitlines() if ln.startswith("| protonet |")]
    steps = {(ln.split("|")[4].strip(), ln.split("|")[6].strip()) for ln in rows}
    assert steps == {(str(first), str(2 * first)), (str(2 * first), str(4 * first))}
    assert len(rows) == 4  # two steps x two shots
