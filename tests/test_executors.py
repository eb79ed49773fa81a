"""Executors: serial, process and ray give the same numbers; Ray survives a worker killed mid-cell.

One real local Ray cluster (2 CPUs) serves the whole test session (`ray_cluster`): starting one
costs 5-15 s here. The grid is 4 tiny `scratch` cells on synthetic data (2 seeds x 2 shots, so the
Ray executor forms two artifact groups and runs a prepare task for each), run end to end through
`python -m bench run`, so the driver-only store writing is what is tested.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest
from tiny_profile import tiny_profile

from bench import cli
from bench.cell_env import Cell, RunSpec
from bench.executors import RAY_MISSING, pool_shape
from methods.artifacts import ArtifactCache

PROFILE = tiny_profile("executor-test", epochs=3)
N_CELLS = 4


@pytest.fixture(scope="session")
def grid_env(tmp_path_factory) -> Path:
    """A private decode cache, set before any worker (process or Ray) starts so they inherit it."""
    root = tmp_path_factory.mktemp("executors")
    saved = os.environ.get("BENCH_CACHE_DIR")
    os.environ["BENCH_CACHE_DIR"] = str(root / "decode-cache")
    (root / "profile.toml").write_text(PROFILE)
    yield root
    if saved is None:
        os.environ.pop("BENCH_CACHE_DIR", None)
    else:
        os.environ["BENCH_CACHE_DIR"] = saved


@pytest.fixture(scope="session")
def ray_cluster(grid_env):
    """One real local Ray cluster for the session, configured as the executor configures its own."""
    pytest.importorskip("ray")
    from bench.ray_executor import start_local_cluster

    cluster = start_local_cluster(num_cpus=2)
    yield cluster
    cluster.stop()


def run_grid(grid_env: Path, executor: str, name: str, *extra: str) -> Path:
    results = grid_env / name
    rc = cli.main(["run", "--method", "scratch", "--experiment", "table3", "--dataset", "synthetic",
                   "--profile", str(grid_env / "profile.toml"), "--results-dir", str(results),
                   "--executor", executor, "--no-report", "--threads", "1", *extra])
    assert rc == 0
    return results


def stored(results: Path) -> dict[str, tuple[list, dict]]:
    """cell hash -> (rows without timings, result meta); asserts each cell is stored exactly once.

    Every run uses `--threads 1`: CPU numbers depend on the torch thread count (the order of float
    sums), so executors are compared at the same count, and each result records the count it used."""
    out = {}
    for done in sorted((results / "cells").glob("*/*/done")):
        d = done.parent
        res = json.loads((d / "result.json").read_text())
        rows = [r for r in res["rows"] if r["metric"] != "wall_s"]
        out[d.name] = (rows, {"pid": res["pid"], "config": json.loads((d / "cell.json").read_text())})
        assert res.get("threads", 1) == 1
    configs = [json.dumps(meta["config"], sort_keys=True) for _, meta in out.values()]
    assert len(configs) == len(set(configs)), "a cell was stored twice"
    return out


@pytest.fixture(scope="session")
def serial_results(grid_env) -> dict:
    return stored(run_grid(grid_env, "serial", "serial"))


def numbers(results: dict) -> dict[str, list]:
    return {k: rows for k, (rows, _) in results.items()}


def test_pool_shape_does_not_oversubscribe(monkeypatch):
    import bench.executors

    monkeypatch.setattr(bench.executors, "usable_cores", lambda: 8)
    assert pool_shape(None) == (8, 1)
    assert pool_shape(2) == (2, 4)
    assert pool_shape(3) == (3, 2)
    assert pool_shape(16) == (16, 1)
    assert pool_shape(None, n_cells=2) == (2, 4)  # never more workers than cells; spare cores become threads
    assert pool_shape(4, n_cells=1) == (1, 8)
    assert pool_shape(None, threads=2) == (4, 2)  # --threads fixed: as many workers as fit


def test_serial_grid_has_real_numbers(serial_results):
    assert len(serial_results) == N_CELLS
    accs = [r["value"] for rows, _ in serial_results.values() for r in rows if r["metric"] == "accuracy"]
    assert len(set(accs)) > 1, "all accuracies equal: the identity checks below would prove nothing"


def test_process_matches_serial(grid_env, serial_results):
    got = stored(run_grid(grid_env, "process", "process", "--workers", "2"))
    assert numbers(got) == numbers(serial_results)
    assert all(meta["pid"] != os.getpid() for _, meta in got.values())


@pytest.mark.ray
@pytest.mark.slow
def test_ray_matches_serial(grid_env, ray_cluster, serial_results):
    import ray

    assert ray.nodes()[0]["NodeManagerAddress"] == "127.0.0.1"  # loopback only on a shared machine
    got = stored(run_grid(grid_env, "ray", "ray"))
    assert numbers(got) == numbers(serial_results)
    assert all(meta["pid"] != os.getpid() for _, meta in got.values())
    assert ray.is_initialized(), "the executor must not shut down a cluster it did not start"


def _kill_first_attempt(marker_dir: str, victim: dict):
    """A cell function whose first attempt at `victim`'s cell SIGKILLs its own worker mid-cell.

    A closure, so Ray pickles it by value into the workers; the marker file survives the kill and
    tells the retry to run normally.
    """

    def cell_fn(spec, cell):
        import signal
        import threading
        import time
        from pathlib import Path

        from bench.cells import execute_cell

        marker = Path(marker_dir) / "killed"
        if cell.params == victim and not marker.exists():
            marker.write_text(str(os.getpid()))
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGKILL)).start()
            execute_cell(spec, cell)
            time.sleep(60)  # the timer fires while the cell runs or here; never returns
        return execute_cell(spec, cell)

    return cell_fn


@pytest.mark.ray
@pytest.mark.slow
def test_ray_retries_a_killed_worker(grid_env, ray_cluster, serial_results, monkeypatch, tmp_path):
    import bench.ray_executor as rx

    victim = {"pool": "novel", "shots": 10, "seed": 0}
    monkeypatch.setattr(rx, "run_ray", functools.partial(rx.run_ray, cell_fn=_kill_first_attempt(str(tmp_path), victim)))
    got = stored(run_grid(grid_env, "ray", "ray-killed"))
    killed_pid = int((tmp_path / "killed").read_text())
    assert len(got) == N_CELLS  # every cell present, exactly once (stored() checks duplicates)
    assert numbers(got) == numbers(serial_results)
    victim_meta = [meta for _, meta in got.values() if meta["config"]["params"] == victim]
    assert victim_meta and victim_meta[0]["pid"] != killed_pid  # the result came from the retry


def test_artifact_key_groups_cells_sharing_prepared_state():
    from bench.ray_executor import artifact_key

    def spec(artifact_seed):
        return RunSpec("synthetic", "", 16, {"episodes": {"artifact_seed": artifact_seed}}, "/tmp/r")

    a, b = Cell("table3", "protonet", {"shots": 5, "seed": 0}), Cell("table3", "protonet", {"shots": 10, "seed": 0})
    c = Cell("table3", "protonet", {"shots": 5, "seed": 1})
    d = Cell("table3", "maml", {"shots": 5, "seed": 0})
    e = Cell("fig6", "protonet", {"seed": 0, "method_options": {"x": 1}})
    per_cell = spec("cell")
    assert artifact_key(per_cell, a) == artifact_key(per_cell, b)
    assert len({artifact_key(per_cell, x) for x in (a, c, d, e)}) == 4
    shared = spec(0)
    assert artifact_key(shared, a) == artifact_key(shared, c) != artifact_key(shared, d)


def test_shipped_artifacts_are_installed_and_loaded(tmp_path):
    """A node without a shared filesystem loads the artifact the prepare task built elsewhere."""
    import torch

    from bench.ray_executor import _install_artifacts

    built_on_other_node = ArtifactCache(tmp_path / "node-a")
    built_on_other_node.get_or_build("weights", {"k": 1}, lambda: {"w": torch.arange(3.0)})
    d = built_on_other_node.path("weights", {"k": 1})
    shipped = {d.name: {f.name: f.read_bytes() for f in d.iterdir() if f.is_file() and not f.name.startswith(".")}}
    spec = RunSpec("synthetic", "", 16, {}, str(tmp_path / "node-b"))
    _install_artifacts(spec, shipped)
    cache_b = ArtifactCache(spec.cache_dir)

    def must_not_build():
        raise AssertionError("the shipped artifact was not used")

    assert torch.equal(cache_b.get_or_build("weights", {"k": 1}, must_not_build)["w"], torch.arange(3.0))


def test_missing_ray_says_how_to_install(grid_env, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    rc = cli.main(["run", "--method", "scratch", "--experiment", "table3", "--dataset", "synthetic",
                   "--profile", str(grid_env / "profile.toml"), "--results-dir", str(grid_env / "noray"),
                   "--executor", "ray", "--no-report"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == f"error: {RAY_MISSING}\n" and "pip install '.[ray]'" in err  # one line, before any work
    assert not list((grid_env / "noray").glob("cells/*/*/done"))



def _pool_workers(driver) -> list:
    """The driver's spawned pool workers; children that exit while being listed are skipped."""
    import psutil

    workers = []
    for child in driver.children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                workers.append(child)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue  # a short-lived helper (e.g. lscpu) ended between listing and reading it
    return workers


@pytest.mark.slow
def test_process_workers_die_with_a_killed_driver(tmp_path):
    """kill -9 of the driver must not leave orphan workers computing cells nobody will store."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "bench", "run", "--method", "scratch", "--experiment", "table3", "--dataset",
           "synthetic", "--profile", "smoke", "--seeds", "3", "--executor", "process", "--workers", "2",
           "--results-dir", str(tmp_path / "r"), "--no-report"]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = psutil.Process(proc.pid)
    deadline = time.time() + 120
    workers: list = []
    while time.time() < deadline and len(workers) < 2:
        workers = _pool_workers(driver)
        time.sleep(0.2)
    assert len(workers) == 2, "the pool never started"
    time.sleep(1.0)  # let them import and start a cell
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, f"orphan workers left running: {[p.pid for p in alive]}"
