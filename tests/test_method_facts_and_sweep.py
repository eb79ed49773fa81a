"""What bench needs to know about a method comes from the method (its facts), and a sweep is one
experiment module plus one profile section, run through the ordinary command line."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from cli_helpers import run

import bench.cli
import bench.experiments
import bench.report_command
import bench.run_command
from bench.experiments.selection import methods_for, needs_ancestor
from methods import EpisodeResult, Method, registry
from methods.base import MethodFacts

HERE = Path(__file__).resolve().parent
SMOKE = HERE.parent / "bench" / "profiles" / "smoke.toml"


@pytest.fixture
def own_registry():
    """Leaves no test method behind in the registry."""
    registry.names()
    saved = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)


class TableThreeOnly(Method):
    """A plug-in-like method: declares Table 3 only, no ancestor, a row position."""

    experiments = frozenset({"table3"})
    needs_ancestor = False
    report_order = 5

    def prepare(self, source, settings, cache):
        pass

    def run_episode(self, episode):
        return EpisodeResult(accuracy=float((episode.query_y == 0).float().mean()))


def test_declared_facts_place_a_new_method_without_its_name_in_bench(own_registry):
    registry.register("facts-demo", "a test method")(TableThreeOnly)
    f = registry.facts("facts-demo")
    assert f == MethodFacts(experiments=frozenset({"table3"}), report_order=5)
    selected = ["scratch", "facts-demo"]
    assert methods_for("table3", selected) == ["scratch", "facts-demo"]
    assert methods_for("table2", selected) == ["scratch"]  # it did not declare Table 2
    assert not needs_ancestor(selected) and needs_ancestor(["learngene"])
    from bench.report import method_sort_key

    assert sorted(["scratch", "facts-demo", "random-ncm"], key=method_sort_key) == ["random-ncm", "facts-demo", "scratch"]


def test_analysis_variants_run_with_the_method_that_brings_them():
    """Figure 6b's positions and the open-world row come with learngene; alone, each runs only itself."""
    assert set(methods_for("fig6:position", ["learngene"])) == {"learngene-front", "learngene-middle",
                                                                  "learngene-top-uniform"}
    assert methods_for("fig6:position", ["learngene-front"]) == ["learngene-front"]
    assert methods_for("table2", ["scratch", "learngene"]) == ["scratch", "learngene-openworld"]
    assert "learngene-ewc1000" not in methods_for("table3", registry.names())


def test_a_plugin_declaring_table3_is_gridded_there_only(capsys, tmp_path, own_registry):
    plugin = tmp_path / "only3.py"
    plugin.write_text("from methods import EpisodeResult, Method\n\n"
                      "class Only3(Method):\n    name = 'only-table3'\n    experiments = frozenset({'table3'})\n\n"
                      "    def prepare(self, source, settings, cache):\n        pass\n\n"
                      "    def run_episode(self, episode):\n        return EpisodeResult(accuracy=0.2)\n")
    code, out, err = run(capsys, "run", "--plugin", str(plugin), "--method", "only-table3,scratch", "--experiment",
                         "table2,table3", "--profile", "smoke", "--dataset", "synthetic", "--dry-run",
                         "--results-dir", str(tmp_path / "r"))
    assert code == 0, err
    rows = {tuple(ln.split()[:2]) for ln in out.splitlines()}
    assert ("table3", "only-table3") in rows and ("table2", "only-table3") not in rows
    assert ("table2", "scratch") in rows and ("table3", "scratch") in rows


def test_an_experiment_module_in_the_folder_is_found_by_its_functions(tmp_path):
    """A module defining cells, run and report is an experiment, listed after the paper's; a helper
    module is not; so a sweep needs no edit of a list."""
    import shutil

    from bench.experiments import BUILT_IN, discover

    shutil.copy(HERE / "sweep_experiment.py", tmp_path / "sweep.py")
    (tmp_path / "helpers.py").write_text("def cells():\n    pass\n")
    assert discover(tmp_path) == (*BUILT_IN, "sweep")
    assert discover() == (*BUILT_IN, "scale", "why")  # the package itself: the two studies; selection.py is a helper


@pytest.fixture
def sweep_installed(monkeypatch):
    """tests/sweep_experiment.py as `bench.experiments.sweep`, listed beside the built-in experiments:
    what putting the file in bench/experiments/ does (`bench.experiments.discover`)."""
    spec = importlib.util.spec_from_file_location("bench.experiments.sweep", HERE / "sweep_experiment.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench.experiments.sweep", module)  # before running it: dataclasses look it up
    spec.loader.exec_module(module)
    names = (*bench.experiments.EXPERIMENT_NAMES, "sweep")
    for mod in (bench.experiments, bench.run_command, bench.report_command, bench.cli):
        monkeypatch.setattr(mod, "EXPERIMENT_NAMES", names)
    return module


def test_a_sweep_is_one_module_and_one_profile_section(capsys, tmp_path, sweep_installed):
    profile = tmp_path / "smoke-sweep.toml"
    profile.write_text(SMOKE.read_text() + '\n[experiments.sweep]\nmethods = ["scratch"]\nfield = "lr"\n'
                       "values = [0.01, 0.1]\nseeds = 1\n")
    results = tmp_path / "results"
    code, _, err = run(capsys, "run", "--method", "scratch", "--experiment", "sweep", "--profile", str(profile),
                       "--dataset", "synthetic", "--results-dir", str(results))
    assert code == 0, err
    from bench.collect import collect

    acc = collect(results).query("metric == 'accuracy'")
    assert set(acc.experiment) == {"sweep"} and set(acc.method) == {"scratch"}
    assert sorted(acc["lr"].unique()) == [0.01, 0.1] and acc["cell"].nunique() == 2 * len(acc["shots"].unique())
    table = next(results.rglob("sweep.md")).read_text()
    assert "| scratch |" in table and "| 0.01 |" in table and "| 0.1 |" in table
