"""Bring your own method: entry points, --plugin, broken and colliding plugins, and the worked example
(examples/my_method) through the smoke grid to its Table 3 row, forest-plot point and `bench compare`."""
from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

import pytest
from cli_helpers import one_line_error, run

from methods import plugins, registry

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "my_method"




@pytest.fixture
def clean_registry(monkeypatch):
    """Each test sees the built-ins only, and leaves no plugin behind (registry, origins, modules)."""
    registry.names()  # built-ins imported once, so the snapshot holds them
    saved = (dict(registry._REGISTRY), dict(plugins._origins), dict(plugins._loaded_specs))
    modules = set(sys.modules)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved[0])
    plugins._origins.clear()
    plugins._origins.update(saved[1])
    plugins._loaded_specs.clear()
    plugins._loaded_specs.update(saved[2])
    registry._loaded = True
    for name in set(sys.modules) - modules:
        if name.startswith(("my_method", "learngene_bench_plugin_", "broken_plugin")):
            del sys.modules[name]


def install_dist_info(site: Path, dist: str, version: str, entry_points: dict[str, str]) -> None:
    """What `pip install` leaves behind for a package's entry points: a dist-info folder that
    importlib.metadata finds on sys.path (the real discovery path, no mocking)."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    body = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{plugins.ENTRY_POINT_GROUP}]\n{body}")


@pytest.fixture
def example_installed(tmp_path, monkeypatch, clean_registry):
    """examples/my_method as pip would install it: its package importable and its pyproject's entry
    points (read from the file, so a broken pyproject fails here) in a dist-info on sys.path."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    eps = project["entry-points"][plugins.ENTRY_POINT_GROUP]
    site = tmp_path / "site-packages"
    install_dist_info(site, project["name"], project["version"], eps)
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.syspath_prepend(str(site))
    registry._loaded = False  # the next lookup scans entry points again, as a new process would
    return project


def write_plugin(path: Path, name: str, body: str = "") -> Path:
    path.write_text(
        "from methods import EpisodeResult, Method\n\n"
        f"class Mine(Method):\n    '''Predicts class 0 (a test plugin).'''\n    name = {name!r}\n\n"
        "    def prepare(self, source, settings, cache):\n        pass\n\n"
        "    def run_episode(self, episode):\n"
        "        return EpisodeResult(accuracy=float((episode.query_y == 0).float().mean()))\n" + body)
    return path


# ------------------------------------------------------------------------------------ entry points


def test_entry_point_registers_the_example_and_list_marks_its_origin(capsys, example_installed):
    code, out, _ = run(capsys, "list", "methods")
    assert code == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("cosine-frozen "))
    assert line.split()[1] == "plugin"
    assert f"[entry point cosine-frozen ({example_installed['name']} {example_installed['version']})]" in line
    protonet = next(ln for ln in out.splitlines() if ln.startswith("protonet "))
    assert protonet.split()[1] == "built-in"
    from my_method import CosineClassifier

    assert plugins.plugin_class(registry.entry("cosine-frozen").factory) is CosineClassifier


@pytest.mark.slow
def test_example_plugin_through_the_smoke_grid_to_table3_forest_and_compare(capsys, tmp_path, example_installed):
    """Added to an existing store (a smoke run of learngene and scratch), as a user adds a method: only
    its own cells run, and they pair with the stored episodes."""
    results = tmp_path / "results"
    shutil.copytree(Path(__file__).parent / "fixtures" / "mini_results", results)
    code, out, _ = run(capsys, "run", "--method", "all", "--experiment", "table3", "--profile", "smoke",
                       "--dataset", "synthetic", "--results-dir", str(results), "--dry-run")
    assert code == 0 and "cosine-frozen" in out  # `all` includes installed plugins
    code, _, err = run(capsys, "run", "--method", "cosine-frozen", "--experiment", "table3",
                       "--profile", "smoke", "--dataset", "synthetic", "--results-dir", str(results))
    assert code == 0, err
    table3 = (results / "tables" / "table3.md").read_text()
    row = next(ln for ln in table3.splitlines() if ln.startswith("| cosine-frozen |"))
    assert "(n=2)" in row
    forest = results / "figures" / "forest_synthetic_smoke.png"
    assert forest.stat().st_size > 10_000
    assert "figures/forest_synthetic_smoke.png" in (results / "README.md").read_text().split("## What ran")[0]
    from bench.collect import collect
    from bench.forest import forest_table

    tab = forest_table(collect(results), "learngene")
    assert set(tab.method) == {"cosine-frozen", "scratch"} and set(tab.shots) == {10, 20}
    code, out, _ = run(capsys, "compare", "cosine-frozen", "learngene", "--results-dir", str(results))
    assert code == 0
    assert "synthetic 32px (smoke), 10-shot: cosine-frozen beats learngene:" in out
    assert "(paired, n=2)" in out


@pytest.mark.slow
def test_plugin_file_runs_in_process_workers(capsys, tmp_path, clean_registry):
    """--plugin travels to spawned workers (RunSpec.plugins), which load it before running cells."""
    plugin = write_plugin(tmp_path / "zero.py", "always-zero")
    results = tmp_path / "results"
    code, _, err = run(capsys, "run", "--plugin", str(plugin), "--method", "always-zero", "--experiment", "table3",
                       "--profile", "smoke", "--dataset", "synthetic", "--results-dir", str(results),
                       "--executor", "process", "--workers", "1", "--no-report")
    assert code == 0, err
    from bench.collect import collect

    acc = collect(results).query("metric == 'accuracy'")
    assert set(acc.method) == {"always-zero"} and (acc["value"] - 0.2).abs().max() < 1e-6  # 5-way: class 0 is 1/5


def test_broken_entry_point_is_one_line_naming_the_distribution(capsys, tmp_path, monkeypatch, clean_registry):
    site = tmp_path / "site"
    install_dist_info(site, "broken-dist", "2.0", {"broken": "broken_plugin_module_xyz:Thing"})
    monkeypatch.syspath_prepend(str(site))
    registry._loaded = False
    code, _, err = run(capsys, "list", "methods")
    one_line_error(code, err, "entry point broken (broken-dist 2.0) failed to import", "ModuleNotFoundError",
                   "pip uninstall broken-dist")


def test_entry_point_colliding_with_a_builtin(capsys, tmp_path, monkeypatch, clean_registry):
    (tmp_path / "pkg").mkdir()
    write_plugin(tmp_path / "pkg" / "broken_plugin_clash.py", "whatever")
    site = tmp_path / "site"
    install_dist_info(site, "clash-dist", "1.0", {"protonet": "broken_plugin_clash:Mine"})
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    monkeypatch.syspath_prepend(str(site))
    registry._loaded = False
    code, _, err = run(capsys, "list", "methods")
    one_line_error(code, err, "entry point protonet (clash-dist 1.0)", "collides with the built-in method 'protonet'")


# ------------------------------------------------------------------------------------ --plugin


def test_plugin_file_appears_with_its_path(capsys, tmp_path, clean_registry):
    plugin = write_plugin(tmp_path / "mine.py", "my-zero")
    code, out, _ = run(capsys, "list", "methods", "--plugin", str(plugin))
    assert code == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("my-zero "))
    assert "plugin" in line and "Predicts class 0" in line and f"[--plugin {plugin}]" in line


def test_plugin_module_and_class(capsys, monkeypatch, clean_registry):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    code, out, _ = run(capsys, "list", "methods", "--plugin", "my_method.cosine:CosineClassifier")
    assert code == 0
    assert "[--plugin my_method.cosine:CosineClassifier]" in next(
        ln for ln in out.splitlines() if ln.startswith("cosine-frozen "))


def test_plugin_that_registers_itself_with_the_decorator(capsys, tmp_path, clean_registry):
    path = tmp_path / "decorated.py"
    path.write_text("from methods import Method, register\n\n"
                    "@register('decorated', 'registers itself')\n"
                    "class D(Method):\n    def prepare(self, s, p, c): pass\n    def run_episode(self, e): pass\n")
    code, out, _ = run(capsys, "list", "methods", "--plugin", str(path))
    assert code == 0
    assert f"[--plugin {path}]" in next(ln for ln in out.splitlines() if ln.startswith("decorated "))


def test_broken_plugin_file_is_one_line(capsys, tmp_path, clean_registry):
    path = tmp_path / "broken.py"
    path.write_text("import numpy\nraise RuntimeError('the weights file is missing\\nsecond line')\n")
    code, _, err = run(capsys, "list", "methods", "--plugin", str(path))
    one_line_error(code, err, f"--plugin {path} failed to import", "RuntimeError: the weights file is missing")
    code, _, err = run(capsys, "run", "--plugin", str(tmp_path / "absent.py"), "--dataset", "synthetic",
                       "--results-dir", str(tmp_path / "r"))
    one_line_error(code, err, "no such file")
    assert not (tmp_path / "r").exists()


def test_plugin_colliding_with_a_builtin_is_one_line(capsys, tmp_path, clean_registry):
    plugin = write_plugin(tmp_path / "clash.py", "learngene")
    code, _, err = run(capsys, "run", "--plugin", str(plugin), "--method", "learngene", "--dataset", "synthetic",
                       "--profile", "smoke", "--results-dir", str(tmp_path / "r"))
    one_line_error(code, err, "collides with the built-in method 'learngene'", "another name")
    assert registry.entry("learngene").factory.__module__ == "methods.learngene.method"
    assert not (tmp_path / "r").exists()


def test_plugin_without_methods_or_with_a_non_method(capsys, tmp_path, clean_registry):
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    one_line_error(*run(capsys, "list", "methods", "--plugin", str(empty))[::2], "no methods found")
    one_line_error(*run(capsys, "list", "methods", "--plugin", f"{empty}:x")[::2], "not a subclass of methods.Method")


def test_editing_a_plugin_changes_its_cells_key(tmp_path, clean_registry):
    """A plugin's cells are keyed by its source file's hash, so an edited plugin reruns instead of
    reporting numbers its old code produced; built-in cells carry no such key."""
    from bench.cell_env import Cell, RunSpec, cell_config
    from methods.artifacts import config_hash

    plugin = write_plugin(tmp_path / "mine.py", "edited")
    plugins.load_plugin(str(plugin))
    spec = RunSpec("synthetic", str(tmp_path), 32, {"name": "smoke"}, str(tmp_path / "r"))
    before = cell_config(Cell("table3", "edited", {"seed": 0}), spec, "d", {})
    assert before["plugin"]["origin"] == f"--plugin {plugin}" and before["plugin"]["source_sha256"] != "unknown"
    plugin.write_text(plugin.read_text() + "\n# tuned\n")
    after = cell_config(Cell("table3", "edited", {"seed": 0}), spec, "d", {})
    assert config_hash(before) != config_hash(after)
    assert "plugin" not in cell_config(Cell("table3", "scratch", {"seed": 0}), spec, "d", {})


# ------------------------------------------------------------------------------- the contract, checked


def contract_plugin(path: Path, name: str, episode_body: str, extra: str = "") -> Path:
    """A plugin whose run_episode is `episode_body` (one statement)."""
    path.write_text(
        "from methods import EpisodeResult, Method\n\n"
        f"class Mine(Method):\n    '''A contract test plugin.'''\n    name = {name!r}\n\n"
        "    def prepare(self, source, settings, cache):\n        pass\n\n"
        f"    def run_episode(self, episode):\n        {episode_body}\n" + extra)
    return path


def run_grid(capsys, plugin: Path, method: str, results: Path, *more: str):
    return run(capsys, *more, "run", "--plugin", str(plugin), "--method", method, "--experiment", "table3",
               "--profile", "smoke", "--dataset", "synthetic", "--results-dir", str(results))


def error_line(code: int, err: str, *needles: str) -> str:
    """Exit 2, exactly one `error:` line (the last), containing every needle, and no traceback."""
    assert code == 2, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    assert "Traceback" not in err, err
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


@pytest.mark.slow
def test_percent_accuracy_is_refused_and_earlier_cells_are_kept(capsys, tmp_path, clean_registry):
    results = tmp_path / "r"
    good = write_plugin(tmp_path / "good.py", "good-one")
    code, _, err = run_grid(capsys, good, "good-one", results)
    assert code == 0, err
    done_before = sorted(p.parent for p in (results / "cells").glob("*/*/done"))
    runs_csv = (results / "runs.csv").read_bytes()
    pct = contract_plugin(tmp_path / "pct.py", "pct", "return EpisodeResult(accuracy=96.0)")
    code, _, err = run_grid(capsys, pct, "pct", results)
    error_line(code, err, "'pct'", "96.0", "outside [0, 1]", "table3/pct[", "not a percent")
    assert sorted(p.parent for p in (results / "cells").glob("*/*/done")) == done_before  # nothing lost, none added
    assert (results / "runs.csv").read_bytes() == runs_csv


@pytest.mark.parametrize("body, needles", [
    ("return 0.5", ("'flt'", "float", "not an EpisodeResult")),
    ("return EpisodeResult(accuracy=torch.tensor(0.5))", ("'flt'", "accuracy of type Tensor")),
    ("raise ValueError('boom in my code')", ("'flt'", "run_episode", "ValueError: boom in my code", "table3/flt[")),
])
def test_bad_results_and_exceptions_are_one_line_naming_plugin_and_cell(capsys, tmp_path, clean_registry, body,
                                                                         needles):
    plugin = contract_plugin(tmp_path / "flt.py", "flt", body)
    plugin.write_text("import torch\n" + plugin.read_text())
    code, _, err = run_grid(capsys, plugin, "flt", tmp_path / "r")
    line = error_line(code, err, *needles)
    log = tmp_path / "r" / "cells" / "failures.log"  # the full traceback, out of the way of the one line
    assert str(log) in line and "Traceback" in log.read_text() and "table3/flt[" in log.read_text()


def test_debug_prints_the_plugins_traceback(capsys, tmp_path, clean_registry):
    plugin = contract_plugin(tmp_path / "boom.py", "boom", "raise ValueError('boom')")
    code, _, err = run_grid(capsys, plugin, "boom", tmp_path / "r", "--debug")
    assert code == 2 and "Traceback" in err and "boom.py" in err, err


def test_abstract_class_is_refused_at_load(capsys, tmp_path, clean_registry):
    path = tmp_path / "half.py"
    path.write_text("from methods import Method\n\nclass Half(Method):\n    name = 'half'\n\n"
                    "    def prepare(self, source, settings, cache):\n        pass\n")
    results = tmp_path / "r"
    for spec in (f"{path}:Half", str(path)):
        code, _, err = run(capsys, "run", "--plugin", spec, "--method", "half", "--dataset", "synthetic",
                           "--profile", "smoke", "--results-dir", str(results))
        line = one_line_error(code, err, "Half", "does not implement run_episode")
        assert "no methods found" not in line
        assert not results.exists()  # refused before anything was created


def test_plugin_without_description_is_listed_by_class_name(capsys, tmp_path, clean_registry):
    path = tmp_path / "bare.py"
    path.write_text("from methods import EpisodeResult, Method\n\nclass Bare(Method):\n    name = 'bare'\n\n"
                    "    def prepare(self, source, settings, cache):\n        pass\n\n"
                    "    def run_episode(self, episode):\n        return EpisodeResult(accuracy=0.0)\n")
    code, out, _ = run(capsys, "list", "methods", "--plugin", str(path))
    line = next(ln for ln in out.splitlines() if ln.startswith("bare "))
    assert "Bare (no description" in line and "few-shot learner" not in line


def test_plugin_profile_section_does_not_break_runs_without_it(capsys, tmp_path):
    prof = tmp_path / "p.toml"
    prof.write_text((REPO / "bench" / "profiles" / "smoke.toml").read_text()
                    + "\n[methods.cosine-frozen]\nchannels = 8\n")
    code, out, err = run(capsys, "run", "--method", "scratch", "--experiment", "table3", "--dataset", "synthetic",
                         "--profile", str(prof), "--results-dir", str(tmp_path / "r"), "--dry-run")
    assert code == 0, err
    assert "[methods.cosine-frozen]" in err and "ignored" in err
    prof.write_text(prof.read_text() + "\n[methods.protonett]\nlr = 0.1\n")  # a misspelt built-in stays an error
    code, _, err = run(capsys, "run", "--method", "scratch", "--dataset", "synthetic", "--profile", str(prof),
                       "--results-dir", str(tmp_path / "r"), "--dry-run")
    error_line(code, err, "protonett", "did you mean 'protonet'")


@pytest.mark.parametrize("first, second", [("methods.plugins", "methods.registry"),
                                           ("methods.registry", "methods.plugins")])
def test_no_import_cycle_between_registry_and_plugins(first, second):
    import subprocess

    code = f"import {first}, {second}; import methods; print(len(methods.names()))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and int(proc.stdout) > 10, proc.stderr
    source = (REPO / "methods" / "registry.py").read_text()
    assert "import plugins" not in source and "methods.plugins import" not in source
