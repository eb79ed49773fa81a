"""The scale trend (`scale` experiment) and the collective model's training FLOPs it is plotted against.

Guards: only a profile with `[experiments.scale]` gets scale cells; at the profile's image size every
point runs (one scratch row per width, one learngene row per point, the collective and the individual at
the same width), at another image size only the profile's own point; the FLOP count replays the
artifact's Net2Wider schedule to the widths it ended at, equals an independent multiply-accumulate
count (forward + backward = 3 forwards, less the first conv's input gradient), and never moves the
global random stream; and the experiment runs and reports through `bench run` on synthetic data at two
image sizes: a table with the paired gap per point and its change, the figure, and README sentences.
"""
from __future__ import annotations

import torch
from cli_helpers import run

from bench.cell_env import RunSpec
from bench.cost.macs import macs
from bench.experiments import EXPERIMENT_NAMES, scale
from bench.profiles import PROFILE_DIR, load_profile
from methods.backbones import COLLECTIVE_WIDTHS, CollectiveNet, scaled
from methods.learngene.collective import widening_schedule
from methods.learngene.collective_facts import ancestor_facts, train_flops_per_image, widths_per_task

torch.set_num_threads(1)


def _spec(profile: dict, px: int = 32) -> RunSpec:
    return RunSpec("synthetic", "", px, profile, "")


def test_scale_runs_only_under_a_profile_that_asks_for_it():
    assert "scale" in EXPERIMENT_NAMES
    assert scale.cells(_spec(load_profile("quick")), ["scratch", "learngene-continual"]) == []
    study = load_profile("study")
    cells = scale.cells(_spec(study), ["scratch", "learngene-continual"])
    seed0 = {c.params["row"]: c.params["method_options"] for c in cells if c.params["seed"] == 0}
    assert seed0 == {
        "scratch [width 0.125]": {"width": 0.125},
        "learngene-continual [width 0.125, 10 epochs]": {"width": 0.125, "collective.width": 0.125, "collective.epochs": 10},
        "scratch [width 0.25]": {"width": 0.25},
        "learngene-continual [width 0.25, 10 epochs]": {"width": 0.25, "collective.width": 0.25, "collective.epochs": 10},
        "scratch [width 0.5]": {"width": 0.5},
        "learngene-continual [width 0.5, 10 epochs]": {"width": 0.5, "collective.width": 0.5, "collective.epochs": 10},
        "learngene-continual [width 0.25, 30 epochs]": {"width": 0.25, "collective.width": 0.25, "collective.epochs": 30}}
    assert len(cells) == 7 * 4  # four seeds
    at64 = {c.params["row"] for c in scale.cells(_spec(study, 64), ["scratch", "learngene-continual"])}
    assert at64 == {"scratch [width 0.25]", "learngene-continual [width 0.25, 10 epochs]"}
    assert {c.method for c in scale.cells(_spec(study), ["scratch"])} == {"scratch"}


def test_widths_per_task_replays_the_schedule_to_the_trained_widths():
    start = [scaled(c, 0.25) for c in COLLECTIVE_WIDTHS]
    sched = {str(k): v for k, v in widening_schedule("paper", 20, 0.25, 21).items()}
    per_task = widths_per_task(start, sched, 21)
    assert per_task[0] == start and len(per_task) == 21
    assert all(sum(b) >= sum(a) for a, b in zip(per_task, per_task[1:], strict=False))
    grown = list(start)
    for ops in sched.values():
        for conv, add in ops:
            grown[conv] += add
    assert per_task[-1] == grown and grown != start


def _independent_train_flops(widths: list[int], px: int, n_out: int, fc: int) -> int:
    net = CollectiveNet(n_out, px, widths=widths, width=1.0, fc_width=fc)
    first = net.blocks[0][0]
    first_macs = first.out_channels * px * px * first.in_channels * 9
    return 3 * 2 * macs(net, px) - 2 * first_macs  # no gradient for the input image


def test_train_flops_match_an_independent_count_and_leave_the_rng_alone():
    widths = [scaled(c, 0.125) for c in COLLECTIVE_WIDTHS]
    torch.manual_seed(3)
    expected_next = torch.rand(4)
    torch.manual_seed(3)
    flops = train_flops_per_image(widths, 32, 20, 128)
    assert torch.equal(torch.rand(4), expected_next)
    assert flops == _independent_train_flops(widths, 32, 20, 128)
    assert train_flops_per_image(widths, 64, 20, 128) > 3.5 * flops  # 4x the pixels, the same head


def test_ancestor_facts_sum_each_tasks_passes_at_its_widths():
    start = [8] * 13
    art = {"final": {"image_size": 32, "n_outputs": 10, "fc_width": 16, "pool_after": [1, 3, 6, 9, 12]},
           "schedule": {"1": [[12, 8]]}, "R": [[0.5], [0.4, 0.9], [0.3, 0.6, 0.8]]}
    facts = ancestor_facts(art, [100, 100, 100], 2, 1, start)
    wide = [8] * 12 + [16]
    assert facts["ancestor_train_flops"] == 2 * 100 * (train_flops_per_image(start, 32, 10, 16)
                                                       + train_flops_per_image(wide, 32, 10, 16))
    assert facts["ancestor_task_acc"] == (0.5 + 0.9) / 2 and facts["ancestor_final_acc"] == (0.4 + 0.9) / 2


def test_scale_runs_and_reports_through_bench_run(capsys, tmp_path):
    prof = (PROFILE_DIR / "smoke.toml").read_text() + """
[experiments.scale]
shots = [5]
tasks = 3
seeds = 1
widths = [0.0625, 0.125]
epoch_factors = [2]
"""
    path = tmp_path / "scale-test.toml"
    path.write_text(prof.replace('name = "smoke"', 'name = "scale-test"'))
    results = tmp_path / "results"
    code, _, err = run(capsys, "run", "--method", "scratch,learngene-continual", "--experiment", "scale", "--profile",
                       str(path), "--dataset", "synthetic", "--image-size", "32,48", "--results-dir", str(results))
    assert code == 0, err
    table = (results / "tables" / "scale.md").read_text()
    rows = {ln.split(" | ")[1] + "/" + ln.split(" | ")[2] + "/" + ln.split(" | ")[0][2:]: ln.split(" | ")
            for ln in table.splitlines() if ln.startswith("| ") and ln.count(" | ") == 9 and ln[2:4].isdigit()}
    assert set(rows) == {"0.0625/1/32", "0.125/1/32", "0.125/2/32", "0.125/1/48"}
    flops = {k: float(v[3]) for k, v in rows.items()}
    assert flops["0.0625/1/32"] < flops["0.125/1/32"] < flops["0.125/2/32"]
    assert abs(flops["0.125/2/32"] - 2 * flops["0.125/1/32"]) <= 0.01 * flops["0.125/2/32"]  # 3 figures shown
    assert flops["0.125/1/48"] > flops["0.125/1/32"]
    assert all(" ± " in v[7] and v[8] == "3" for v in rows.values())
    assert "| width 0.0625, 1 epochs, 32 px |" in table and "| width 0.125, 1 epochs, 48 px |" in table
    assert list((results / "figures").glob("scale_gap_5shot_*.png"))
    readme = (results / "README.md").read_text()
    assert "- synthetic, 5-shot, scale, width 0.125, 2 epochs, 32 px (collective training " in readme
    assert "- synthetic, 5-shot, scale, gap at width 0.125, 1 epochs, 48 px − gap at the profile's point = " in readme

