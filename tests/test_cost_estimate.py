"""The cost model behind `--dry-run` and the progress ETA (bench.cost): the pool schedule it simulates,
the recorded times it rests on, and that its text names that basis."""
from __future__ import annotations

import json

import pytest

from bench.cell_env import Cell, RunSpec
from bench.cost.estimate import Progress, describe_grid
from bench.cost.model import CellCost, Recorded, cell_costs, episode_seconds, load_recorded, simulate
from bench.profiles import load_profile, resolve


def _costs(cells, episodes, builds):
    """Fake costs: `episodes[method]` seconds per cell, `builds[method]` once per method (its group)."""
    return {id(c): CellCost(episodes[c.method], c.method, builds.get(c.method, 0.0), "test") for c in cells}


def test_schedule_overlaps_builds_and_waits_on_the_lock():
    a = [Cell("t", "a", {"seed": i}) for i in range(3)]
    b = [Cell("t", "b", {"seed": i}) for i in range(3)]
    cells = a + b
    costs = _costs(cells, {"a": 10.0, "b": 10.0}, {"a": 100.0, "b": 40.0})
    one = simulate(cells, costs, 1, lambda c: c.method)
    assert one.makespan_s == pytest.approx(60 + 140)  # serial: every second in a row
    two = simulate(cells, costs, 2, lambda c: c.method)
    # both builds start at once (the queue starts a new group's build first); b is built at 50 and its
    # worker runs b1, b2 (to 70), then takes a1 while a builds: it waits on the lock until a exists at
    # 100 (done at 110); a's worker, done at 110, takes a2 (120)
    assert [k for k, *_ in two.builds] == ["a", "b"] and [s for _, _, s, _ in two.builds] == [0.0, 0.0]
    assert two.makespan_s == pytest.approx(120.0)
    assert two.busy_s == pytest.approx(200.0 + 30.0)  # the 30 s lock wait occupies a worker


def test_a_cell_taken_during_its_groups_build_waits_for_it():
    cells = [Cell("t", "a", {"seed": i}) for i in range(2)]
    sched = simulate(cells, _costs(cells, {"a": 10.0}, {"a": 100.0}), 2, lambda c: c.method)
    assert sched.makespan_s == pytest.approx(110.0)  # the second cell waits 100 s, then runs beside
    assert sched.busy_s == pytest.approx(220.0)      # the wait occupies its worker
    done = simulate(cells, _costs(cells, {"a": 10.0}, {"a": 100.0}), 2, lambda c: c.method, built={"a"})
    assert done.makespan_s == pytest.approx(10.0)


def test_cell_costs_scale_recorded_episodes_by_planned_episodes():
    rec = Recorded({("table3", "m", "10"): 2.0, ("table3", "m", "20"): 4.0}, {"m": 30.0, "k": 50.0})
    prof = {"episodes": {"tasks": 25}, "experiments": {"fig6": {"tasks": 15}}}
    cells = [Cell("table3", "m", {"shots": 10}), Cell("table3", "m", {"shots": 5}), Cell("fig6", "m", {"shots": 20}),
             Cell("fig6", "m", {"shots": 5}), Cell("table3", "x", {"shots": 10})]
    costs = cell_costs(cells, prof, rec, lambda c: "g", {"m": "g", "k": "g"}, fallback=lambda c: (7.0, 0.0))
    got = [(costs[id(c)].episodes_s, costs[id(c)].basis) for c in cells]
    # another experiment: its shots' record (20 shots: 4.0 s), else the mean of the method's (3.0 s)
    assert got == [(50.0, "recorded"), (75.0, "recorded (other shots)"), (60.0, "recorded (other experiment)"),
                   (45.0, "recorded (other experiment)"), (7.0, "MAC model")]
    # the group's build is the largest of its methods' (the one that recorded it may be absent)
    assert {costs[id(c)].build_s for c in cells} == {50.0}


def test_recorded_times_are_of_one_group_and_the_store_overrides(tmp_path):
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"source": "x", "dataset": "d", "image_size": 32, "profile": "quick", "cpu": "C",
                               "build_s": {"m": 60.0}, "build_passes": {"m": 100.0},
                               "episode_s": {"table3|m|10": 1.0}}))
    (tmp_path / "runs.csv").write_text(
        "experiment,method,dataset,image_size,profile,shots,metric,value\n"
        "table3,m,d,32,quick,10,wall_s,3.0\ntable3,m,d,32,quick,10,wall_s,5.0\n"
        "table3,m,d,64,quick,10,wall_s,99\ntable3,m,d,32,quick,10,accuracy,0.5\n")
    assert episode_seconds(tmp_path / "runs.csv", ("d", 32, "quick")) == {("table3", "m", "10"): 4.0}
    rec = load_recorded(("d", 32, "quick"), tmp_path, ref, build_passes=lambda m: 200.0)
    assert rec.episode_s[("table3", "m", "10")] == 4.0 and rec.build_s["m"] == 120.0  # budget doubled since
    assert "runs.csv" in rec.source
    assert not load_recorded(("d", 32, "smoke"), None, ref).episode_s  # another profile: no record


def test_a_stores_recorded_preparations_price_its_builds_once_per_group(tmp_path):
    """A runs.csv's `cell_prepare_s` rows (a cell's time outside its episodes) replace the reference's
    build of that method, and a group whose methods each recorded the one build (one built it, the
    others waited for or loaded it) is charged the largest, not their sum."""
    from bench.cost.model import group_builds, prepare_seconds

    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"source": "x", "dataset": "d", "image_size": 32, "profile": "quick", "cpu": "C",
                               "build_s": {"m": 1800.0, "k": 600.0, "z": 50.0}, "episode_s": {}}))
    (tmp_path / "runs.csv").write_text(
        "experiment,method,dataset,image_size,profile,shots,metric,value\n"
        "table3,m,d,32,quick,10,cell_prepare_s,1000.0\ntable3,m,d,32,quick,10,cell_prepare_s,3.0\n"
        "table3,k,d,32,quick,10,cell_prepare_s,900.0\ntable3,m,d,64,quick,10,cell_prepare_s,5000\n"
        "table3,m,d,32,quick,10,wall_s,2.0\n")
    assert prepare_seconds(tmp_path / "runs.csv", ("d", 32, "quick")) == {"m": 1000.0, "k": 900.0}
    rec = load_recorded(("d", 32, "quick"), tmp_path, ref)
    assert rec.build_s == {"m": 1000.0, "k": 900.0, "z": 50.0} and rec.store_builds == {"m", "k"}
    cells = [Cell("table3", "m", {"shots": 10}), Cell("table3", "k", {"shots": 10}), Cell("table3", "z", {})]
    groups = {"m": "g", "k": "g", "z": "h"}
    builds = group_builds(cells, rec, lambda c: groups[c.method], groups)
    assert builds == {"g": 1000.0, "h": 50.0}  # the store's largest; the reference's for the other group
    # without the store the reference's builds of one group add up (they recorded different steps)
    assert group_builds(cells, load_recorded(("d", 32, "quick"), None, ref), lambda c: groups[c.method],
                        groups) == {"g": 2400.0, "h": 50.0}


def test_collected_rows_carry_the_cells_preparation():
    """runs.csv keeps each cell's seconds outside its episodes, so a store without its cells still
    records how long its artifact builds took."""
    from bench.collect import PREPARE_METRIC, rows_of

    config = {"experiment": "table3", "method": "m", "dataset": "d", "image_size": 32,
              "profile": {"name": "p"}, "params": {"seed": 0}}
    rows = rows_of(config, {"rows": [{"metric": "wall_s", "value": 2.0, "episode": 0},
                                     {"metric": "wall_s", "value": 3.0, "episode": 1}], "wall_s": 125.04})
    prep = [r for r in rows if r["metric"] == PREPARE_METRIC]
    assert len(prep) == 1 and prep[0]["value"] == 120.0 and "episode" not in prep[0] and "cpu" not in prep[0]
    named = rows_of(config, {"rows": [], "wall_s": 1.0, "cpu": "C (AVX2)"})
    assert named == []  # a cell without rows adds none
    named = rows_of(config, {"rows": [{"metric": "wall_s", "value": 0.5}], "wall_s": 1.0, "cpu": "C (AVX2)"})
    assert [r["cpu"] for r in named if r["metric"] == PREPARE_METRIC] == ["C (AVX2)"]


@pytest.fixture
def quick_spec(tmp_path):
    return RunSpec("tiny-imagenet", str(tmp_path), 32, resolve(load_profile("quick"), 32), str(tmp_path))


def test_dry_run_text_names_its_basis_and_the_builds(quick_spec, tmp_path):
    cells = [Cell("table3", m, {"pool": "novel", "shots": s, "seed": 0}) for m in ("protonet", "scratch") for s in (10, 20)]
    text = describe_grid(quick_spec, [(c, {}) for c in cells], [(c, {}) for c in cells], "process", 2, None, tmp_path)
    assert "estimated wall time:" in text and "on 2 workers" in text
    assert "basis: recorded times" in text and "bench/cost/reference.json" in text
    assert "build protonet" in text  # an artifact build is a step of its own
    synthetic = RunSpec("synthetic", str(tmp_path), 32, quick_spec.profile, str(tmp_path))
    text = describe_grid(synthetic, [(c, {}) for c in cells], [(c, {}) for c in cells], "serial", None, None, tmp_path)
    assert "basis: no recorded times" in text and "MAC model" in text
    assert "with --executor process" in text or "on 1 worker" in text


def test_progress_eta_shrinks_and_follows_the_observed_ratio(quick_spec, tmp_path):
    """The live ETA is the rest of the schedule times the observed actual/predicted ratio, so cells
    slower than predicted raise it, whatever the speed of the host running the test."""
    cells = [Cell("table3", "scratch", {"pool": "novel", "shots": 10, "seed": i}) for i in range(4)]
    prog = Progress(quick_spec, cells, 2, tmp_path)
    assert any("estimated wall time" in line for line in prog.steps())
    first = prog.eta_s()
    predicted = prog.plan.costs[id(cells[0])].episodes_s
    rows = [{"metric": "wall_s", "value": predicted * 10}]  # ten times slower than predicted
    prog.finished(cells[0], {"rows": rows, "wall_s": predicted * 10})
    # the observed ratio is the prior-weighted mean of actual over predicted seconds; exact, so the
    # check holds on a host of any speed (the calibration scales `predicted`, not the formula)
    expected = (Progress.PRIOR_S + 10 * predicted) / (Progress.PRIOR_S + predicted)
    assert predicted > 0 and prog.ratio == pytest.approx(expected) and prog.ratio > 1.0
    rest = simulate(prog.pending, prog.plan.costs, 2, prog.plan.group_of, prog.built).makespan_s
    assert 0 < rest < first and prog.eta_s() == pytest.approx(rest * prog.ratio + 10.0)
    prog.finished(cells[1], {"rows": [{"metric": "wall_s", "value": predicted * 10}], "wall_s": predicted * 10})
    assert prog.ratio > expected  # a second slow cell pulls the ratio further from the prior
    assert "ETA" in prog.postfix()


def test_recorded_seconds_are_rescaled_by_the_calibration_on_any_cpu_class(quick_spec, tmp_path, monkeypatch):
    """The reference's seconds are scaled by this machine's calibration over the record's, on another CPU
    class and on the record's own (hosts of one class differ in speed); the note names which it is, and
    the CPU class includes the vector ISA (one cloud model name covers AVX2-only and AVX-512 machines)."""
    import bench.cost.estimate as estimate
    import bench.usage
    from bench.cost.estimate import CostPlan

    ref = json.loads((estimate.Path(estimate.__file__).parent / "reference.json").read_text())
    assert ref["cpu"].endswith(")")  # the record names its ISA, e.g. "AMD EPYC (AVX512)"
    cells = [Cell("table3", "scratch", {"pool": "novel", "shots": 10, "seed": 0})]
    calls = []
    monkeypatch.setattr(estimate, "calibrate", lambda: calls.append(1) or 2 * ref["calibration_s"])
    monkeypatch.setattr(bench.usage, "cpu_class", lambda: ref["cpu"])
    same = CostPlan(quick_spec, cells, tmp_path)
    assert calls and same.scale == pytest.approx(2.0) and "same CPU class" in same.cpu_note
    monkeypatch.setattr(bench.usage, "cpu_class", lambda: "AMD EPYC (AVX2)")
    other = CostPlan(quick_spec, cells, tmp_path)
    assert len(calls) == 2 and other.scale == pytest.approx(2.0) and "x 2.00" in other.cpu_note
    assert "AMD EPYC (AVX2)" in other.cpu_note and "same CPU class" not in other.cpu_note
    assert other.costs[id(cells[0])].episodes_s == pytest.approx(same.costs[id(cells[0])].episodes_s)
    monkeypatch.setattr(estimate, "calibrate", lambda: ref["calibration_s"])  # as fast as the record
    assert CostPlan(quick_spec, cells, tmp_path).costs[id(cells[0])].episodes_s == pytest.approx(
        same.costs[id(cells[0])].episodes_s / 2)


def test_cpu_share_sees_a_competing_process_on_the_same_core():
    """The busy-machine probe reads about one core's share when alone and about half of one when another
    busy process shares its core: a calibration taken then would time the contention, not the CPU."""
    import multiprocessing as mp
    import os

    from bench.cost.model import cpu_share

    before = os.sched_getaffinity(0)
    core = min(before)
    os.sched_setaffinity(0, {core})
    try:
        alone = cpu_share(0.3)
        rival = mp.get_context("fork").Process(target=cpu_share, args=(3.0,))  # the same busy loop
        rival.start()  # inherits the one-core affinity
        try:
            shared = cpu_share(0.5)
        finally:
            rival.terminate()
            rival.join()
    finally:
        os.sched_setaffinity(0, before)
    assert 0 < alone <= 1.05 and shared < 0.8 * alone  # relative: robust to other load on that core


def test_a_busy_machine_is_named_in_the_estimate(quick_spec, tmp_path, monkeypatch):
    """An estimate calibrated while the process got a fraction of a core says so, and how to get the
    idle machine's; an idle calibration adds no warning."""
    import bench.cost.estimate as estimate
    from bench.cost.estimate import CostPlan

    cells = [Cell("table3", "scratch", {"pool": "novel", "shots": 10, "seed": 0})]
    monkeypatch.setattr(estimate, "cpu_share", lambda: 0.3)
    note = CostPlan(quick_spec, cells, tmp_path).cpu_note
    assert "WARNING: this machine is busy" in note and "30% of a core" in note and "--dry-run" in note
    monkeypatch.setattr(estimate, "cpu_share", lambda: 0.99)
    assert "busy" not in CostPlan(quick_spec, cells, tmp_path).cpu_note


def test_a_stores_own_cpu_class_times_are_taken_as_they_are(quick_spec, tmp_path, monkeypatch):
    """Times a store recorded on this CPU class (its cells' preparation rows name it) predict this
    machine's as they are; the reference's, and a store's of an unnamed CPU, are scaled by the calibration."""
    import bench.cost.estimate as estimate
    import bench.usage
    from bench.cost.estimate import CostPlan
    from bench.profiles import episode_settings

    ref = json.loads((estimate.Path(estimate.__file__).parent / "reference.json").read_text())
    monkeypatch.setattr(estimate, "calibrate", lambda: 2 * ref["calibration_s"])  # this CPU: half the speed
    monkeypatch.setattr(bench.usage, "cpu_class", lambda: "Slow CPU (AVX2)")
    n = episode_settings(quick_spec.profile).tasks
    head = "experiment,method,dataset,image_size,profile,shots,cell,metric,value,cpu\n"
    rows = "".join("table3,scratch,tiny-imagenet,32,quick,10,c1,wall_s,3.0,\n" for _ in range(4))
    cell = Cell("table3", "scratch", {"pool": "novel", "shots": 10, "seed": 0})
    for cpu, expected in (("Slow CPU (AVX2)", 3.0 * n), ("", 6.0 * n)):
        (tmp_path / "runs.csv").write_text(head + rows + f"table3,scratch,tiny-imagenet,32,quick,10,c1,"
                                           f"cell_prepare_s,40.0,{cpu}\n")
        plan = CostPlan(quick_spec, [cell], tmp_path)
        assert plan.scale == pytest.approx(2.0)
        assert plan.costs[id(cell)].episodes_s == pytest.approx(expected), cpu


def test_a_cell_with_options_is_priced_by_its_methods_cost_ratio(tmp_path):
    """Records are of cells without options: a wider cell costs the record times the FLOP ratio, and a cell
    whose options make another artifact group (another collective run) builds what the plain group
    recorded times the build ratio."""
    rec = Recorded({("table3", "m", "10"): 2.0}, {"m": 100.0})
    prof = {"episodes": {"tasks": 10}}
    plain = Cell("why", "m", {"shots": 10})
    wide = Cell("why", "m", {"shots": 10, "method_options": {"width": 0.5}})

    def group(c):
        return ("g", c.params.get("method_options", {}).get("width"))

    costs = cell_costs([plain, wide], prof, rec, group, {"m": ("g", None)}, ratio=lambda c, ref: (3.0, 4.0))
    assert costs[id(plain)].episodes_s == 20.0 and costs[id(plain)].build_s == 100.0
    assert costs[id(wide)].episodes_s == 60.0 and costs[id(wide)].build_s == 400.0
    # a build ratio of None: not comparable, so the cell's group is priced as `group_builds` prices it
    # (its methods' and kin's records), not scaled from the plain group's
    rec = Recorded({("table3", "m", "10"): 2.0}, {"m": 100.0, "k": 70.0})
    costs = cell_costs([wide], prof, rec, group, {"m": ("g", None), "k": ("g", 0.5)}, ratio=lambda c, ref: (3.0, None))
    assert costs[id(wide)].episodes_s == 60.0 and costs[id(wide)].build_s == 100.0


def test_a_method_with_no_record_is_priced_by_its_nearest_recorded_kin():
    from bench.cost.estimate import recorded_kin

    recorded = {"learngene", "learngene-ewc0", "collective-ncm", "scratch"}
    assert recorded_kin("learngene-continual", recorded) == "learngene"  # a subclass; the plain registration
    assert recorded_kin("ancestor-ncm-joint", recorded) == "collective-ncm"
    assert recorded_kin("protonet", recorded) is None  # nothing of its class or family recorded
    rec = Recorded({("table3", "learngene", "10"): 2.0}, {"learngene": 600.0})
    cell = Cell("why", "learngene-joint", {"shots": 10})
    costs = cell_costs([cell], {"episodes": {"tasks": 10}}, rec, lambda c: c.method, {"learngene": "learngene"},
                       reference_of=lambda c: Cell("why", "learngene", {"shots": 10}), ratio=lambda c, ref: (1.0, 1.5))
    assert costs[id(cell)].episodes_s == 20.0 and costs[id(cell)].build_s == 900.0
    assert costs[id(cell)].basis == "recorded (other experiment), of learngene"


def test_ancestor_builds_compare_by_what_each_trains():
    from bench.profiles import method_settings
    from methods.learngene.stages import ancestor_build_ratio

    prof = resolve(load_profile("quick"), 32)
    paper = method_settings(prof, "learngene")
    assert ancestor_build_ratio(method_settings(prof, "learngene-continual"), paper, 32) == 1.0
    assert ancestor_build_ratio(method_settings(prof, "learngene-random"), paper, 32) == 0.0  # nothing trained
    joint = ancestor_build_ratio(method_settings(prof, "learngene-joint"), paper, 32)
    assert 1.0 < joint < 3.0  # the same image passes, all at the final (widest) widths
    assert ancestor_build_ratio(method_settings(prof, "learngene-pretrained"), paper, 32) is None  # finetune's build


def test_cost_ratio_hooks_follow_the_flops_of_width_and_collective_run():
    from methods import registry
    from methods.learngene.collective_facts import planned_training_flops
    from methods.settings import replace

    prof = resolve(load_profile("quick"), 32)
    from bench.profiles import method_settings

    s = method_settings(prof, "scratch")
    assert registry.entry("scratch").factory.cost_ratio(s, s, 32) == (1.0, 1.0)
    ep, build = registry.entry("scratch").factory.cost_ratio(replace(s, "options", width=0.5), s, 32)
    assert 3.0 < ep < 4.5 and build == ep  # about width^2: the convs' channels in and out both double
    lg = method_settings(prof, "learngene-continual")
    slow = replace(lg, "options", **{"collective.epochs": 30})
    assert registry.entry("learngene-continual").factory.cost_ratio(slow, lg, 32) == (1.0, pytest.approx(3.0))
    wide = replace(lg, "options", **{"width": 0.5, "collective.width": 0.5})
    ep, build = registry.entry("learngene-continual").factory.cost_ratio(wide, lg, 32)
    assert build == pytest.approx(planned_training_flops(wide.collective, 32) / planned_training_flops(lg.collective, 32))
    assert 3.0 < build < 4.5 and 3.0 < ep < 4.5


def test_the_study_profile_is_priced_by_quicks_records():
    from bench.cost.estimate import equivalent_profile

    assert equivalent_profile(resolve(load_profile("study"), 64)) == "quick"
    assert equivalent_profile(resolve(load_profile("quick"), 32)) == "study"  # the same networks, both ways
    assert equivalent_profile(resolve(load_profile("smoke"), 32)) is None
    changed = resolve(load_profile("study"), 32)
    changed["collective"] = {**changed["collective"], "epochs": 11}
    assert equivalent_profile(changed) is None  # other networks: quick's times do not stand for them


def test_a_group_built_by_a_finished_cell_of_the_store_is_not_charged(quick_spec, tmp_path):
    from bench.cost.estimate import CostPlan
    from bench.store import ResultsStore

    cells = [Cell("table3", "protonet", {"pool": "novel", "shots": 10, "seed": 0})]
    fresh = CostPlan(quick_spec, cells, tmp_path)
    assert fresh.costs[id(cells[0])].build_s > 0 and not fresh.built
    config = {"experiment": "table3", "method": "protonet", "params": {"pool": "novel", "shots": 20, "seed": 0},
              "dataset": "tiny-imagenet", "image_size": 32, "profile": {"name": "quick"}}
    ResultsStore(tmp_path).write(config, {"rows": [], "wall_s": 1.0})
    no_cache = CostPlan(quick_spec, cells, tmp_path)
    assert no_cache.costs[id(cells[0])].build_s > 0  # the cells are there, their artifacts are not
    (tmp_path / "artifacts" / "protonet-x").mkdir(parents=True)
    cached = CostPlan(quick_spec, cells, tmp_path)
    assert cached.costs[id(cells[0])].build_s == 0.0 and "already built in the store's cache" in cached.basis()
