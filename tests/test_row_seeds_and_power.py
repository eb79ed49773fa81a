"""Per-row episode counts in Tables 2 and 3, the power plan that sizes them, the 'decided' rule and
`--method all` / `--method checks`."""
from __future__ import annotations

import copy

import pandas as pd
import pytest

from bench import power
from bench.cell_env import RunSpec, cell_config
from bench.errors import UsageError
from bench.experiments import table2, table3
from bench.profiles import load_profile, resolve
from bench.summary import decided_note
from bench.verdicts import DECISIVE_HALF_WIDTH, n_to_decide
from methods import registry


def _spec(table3_section: dict | None = None, table2_section: dict | None = None, seeds: int = 3) -> RunSpec:
    prof = copy.deepcopy(resolve(load_profile("smoke"), image_size=32))
    prof["episodes"]["seeds"] = seeds
    prof.setdefault("experiments", {})
    if table3_section is not None:
        prof["experiments"]["table3"] = table3_section
    if table2_section is not None:
        prof["experiments"]["table2"] = table2_section
    return RunSpec("synthetic", "", 32, prof, "")


def _seeds_by_method(cells) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for c in cells:
        if "pool" in c.params:
            out.setdefault(c.method, set()).add(c.params["seed"])
    return out


def test_rows_run_their_own_seeds_and_share_the_first_ones():
    """A row given more seeds runs seeds 0..k-1; every other row runs `seeds` from 0, so all rows are
    paired on the first seed's episodes; without a section every row runs [episodes] seeds."""
    spec = _spec({"seeds": 1, "row_seeds": {"learngene": 3, "scratch": 2}})
    got = _seeds_by_method(table3.cells(spec, ["learngene", "scratch", "protonet"]))
    assert got == {"learngene": {0, 1, 2}, "scratch": {0, 1}, "protonet": {0}}
    # both shot counts for each seed
    shots = {(c.method, c.params["seed"], c.params["shots"]) for c in table3.cells(spec, ["scratch"])}
    assert len(shots) == 2 * len(spec.profile["episodes"]["shots"])
    assert _seeds_by_method(table3.cells(_spec(), ["scratch", "protonet"])) == {"scratch": {0, 1, 2},
                                                                                "protonet": {0, 1, 2}}
    got2 = _seeds_by_method(table2.cells(_spec(table2_section={"seeds": 1, "row_seeds": {"scratch": 2}}),
                                         ["scratch", "protonet"]))
    assert got2 == {"scratch": {0, 1}, "protonet": {0}}


def test_a_misspelt_row_is_refused_with_a_suggestion():
    """A row_seeds entry naming no method would silently run at the default: refused, one line."""
    with pytest.raises(UsageError, match="unknown method 'lerngene'; did you mean 'learngene'"):
        table3.cells(_spec({"row_seeds": {"lerngene": 3}}), ["learngene"])


def test_seed_counts_are_not_part_of_a_cell_key():
    """Giving a row more seeds keeps its stored cells: the number of seeds is not in a cell's key."""
    cell = table3.cells(_spec(), ["scratch"])[0]
    split = {"base": [0], "open": [1], "novel": [2]}
    plain = cell_config(cell, _spec(), "d", split)
    more = cell_config(cell, _spec({"seeds": 1, "row_seeds": {"scratch": 5}}), "d", split)
    assert plain == more


def test_power_plan_sizes_rows_by_their_hardest_comparison(monkeypatch):
    """The n to reach a half-width of 1.5 at SD 6.1 is the t-based 67; a 20-point gap is decided by a
    handful of episodes; the headline row runs as many seeds as its most demanding comparison."""
    assert power.n_for_half_width(6.11, 1.5) == 67
    assert power.n_to_exclude_zero(-20.0, 7.0, 0.9) <= 5
    assert power.n_to_exclude_zero(2.0, 6.4, 0.9) > power.n_to_exclude_zero(5.0, 6.4, 0.9)
    plan = [power.Need("x, 10-shot", "fomaml", 2.0, 6.4, 125, 106, 73),
            power.Need("x, 10-shot", "protonet", -21.0, 7.4, 125, 4, 97),
            power.Need("x, 20-shot", "fomaml", 5.5, 8.2, 125, 26, 118)]
    seeds = power.row_seeds(plan, tasks_per_seed=25)
    assert seeds == {"learngene": 3, "fomaml": 3}  # protonet keeps the default single seed


def test_a_precise_comparison_is_planned_for_its_half_width_even_when_its_sign_is_settled():
    """Learngene - scratch excludes 0 in 8 episodes but needs 74 for a half-width of 1.5 at SD 6.5: a
    precise opponent gets the larger n (3 seeds of 25), any other the smaller."""
    loose = power.Need("x, 20-shot", "scratch", -7.8, 6.46, 100, 10, 74)
    assert loose.n == 10
    tight = power.Need("x, 20-shot", "scratch", -7.8, 6.46, 100, 10, 74, precise=True)
    assert tight.n == 74 and power.row_seeds([tight], tasks_per_seed=25) == {"learngene": 3, "scratch": 3}
    assert power.main(["--precise", "scratchh", "--results-dir", "results"]) == 2


def test_power_plan_reads_paired_episodes():
    """Stored paired accuracies become a plan: the gap and SD are those of the paired differences."""
    rows = []
    for ep in range(10):
        for m, acc in (("learngene", 0.40 + 0.01 * (ep % 3)), ("scratch", 0.50)):
            rows.append({"experiment": "table3", "method": m, "dataset": "d", "image_size": 32, "profile": "p",
                         "synthetic": False, "metric": "accuracy", "value": acc, "seed": 0, "shots": 10,
                         "episode": ep})
    plan = power.needs(pd.DataFrame(rows))
    (need,) = [p for p in plan if p.opponent == "scratch"]
    assert need.n_stored == 10 and need.mean == pytest.approx(-9.1, abs=0.01)


def test_undecided_gaps_say_how_many_episodes_would_decide_them():
    """A CI that spans 0 and is wider than ±1.5 reports the n that would decide it; a narrow one is
    'no difference beyond ±1.5'; one that excludes 0 needs no note."""
    assert n_to_decide(0.5, 3.0, 25) == 100  # (3.0 / 1.5)^2 x 25
    assert n_to_decide(-2.0, 3.0, 25) == 57   # (3.0 / 2.0)^2 x 25, rounded up
    assert decided_note((-0.08, 0.02, 25)) == ""
    assert "beyond ±1.5" in decided_note((0.001, DECISIVE_HALF_WIDTH / 100 - 0.001, 75))
    assert "about n=100 would decide it" in decided_note((0.005, 0.03, 25))


def test_all_leaves_out_the_checks_and_checks_selects_them():
    """`--method all` is the paper's rows; the code checks (recipe checks, the released code's
    behaviour) run only as `--method checks`."""
    checks = set(registry.names_not_in_all())
    assert {"learngene-official", "learngene-genelr0.1", "learngene-genelr10", "learngene-bnreset"} == checks
    assert not checks & set(registry.names_in_all())
    assert {"learngene", "scratch", "learngene-ewc0"} <= set(registry.names_in_all())
