"""Benchmark of the executors: wall time of the same smoke grid under serial, process and ray.

The grid is `scratch` and `protonet` on Table 3, smoke profile, synthetic data, 2 seeds: 8 cells,
with protonet's meta-trained weights shared by its 4 cells (one artifact group for Ray), run end to
end through `python -m bench run` into a fresh results directory each round (so artifacts are
trained in every round, under every executor). The Ray round is cold, as a user meets it: it starts
a private local cluster, runs the grid and shuts the cluster down; the cluster's start-up time and
the resident memory of its processes (idle, and after the grid with torch loaded in the workers) are
stored in `extra_info`. Ratios to serial are printed at the end and written by
`python -m bench.benchmarks_report` into docs/evidence/benchmarks.md.

    .venv/bin/pytest tests/benchmarks/test_bench_executors.py --benchmark-enable -s

With the project's default `--benchmark-disable` these tests skip: the executors' correctness is
tested in tests/test_executors.py; here only the timing matters.
"""
from __future__ import annotations

import os
import platform
import shutil
import time
from pathlib import Path

import pytest

from bench import cli

GRID = ["--method", "scratch,protonet", "--experiment", "table3", "--profile", "smoke",
        "--dataset", "synthetic", "--seeds", "2"]
N_CELLS = 8
WALL: dict[str, float] = {}
RAY_INFO: dict[str, float] = {}


@pytest.fixture(scope="module")
def bench_dir(request, tmp_path_factory):
    session = getattr(request.config, "_benchmarksession", None)  # knows --benchmark-enable beats -disable
    if session is None or session.disabled:
        pytest.skip("timing only: run with --benchmark-enable (tox -e bench)")
    root = tmp_path_factory.mktemp("bench-executors")
    saved = os.environ.get("BENCH_CACHE_DIR")
    os.environ["BENCH_CACHE_DIR"] = str(root / "decode-cache")  # set before any worker starts
    assert cli.main(["run", *GRID, "--results-dir", str(root / "warm"), "--dry-run"]) == 0  # decode once
    yield root
    if saved is None:
        os.environ.pop("BENCH_CACHE_DIR", None)
    else:
        os.environ["BENCH_CACHE_DIR"] = saved


def _machine_info() -> dict:
    import torch

    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_avg_1m": round(os.getloadavg()[0], 2), "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__, "cells": N_CELLS}


def _run(bench_dir: Path, name: str, executor: str, *extra: str) -> None:
    results = bench_dir / name
    shutil.rmtree(results, ignore_errors=True)
    assert cli.main(["run", *GRID, "--results-dir", str(results), "--executor", executor, "--no-report",
                     *extra]) == 0
    assert len(list(results.glob("cells/*/*/done"))) == N_CELLS


def _timed(benchmark, name: str, fn) -> None:
    benchmark.extra_info.update(_machine_info())
    benchmark.pedantic(fn, rounds=1, iterations=1, warmup_rounds=0)
    WALL[name] = benchmark.stats.stats.mean


@pytest.mark.benchmark(group="executors")
def test_serial(benchmark, bench_dir):
    _timed(benchmark, "serial", lambda: _run(bench_dir, "serial", "serial"))


@pytest.mark.benchmark(group="executors")
def test_process(benchmark, bench_dir):
    workers = os.cpu_count() or 1
    benchmark.extra_info["workers"] = workers
    _timed(benchmark, "process", lambda: _run(bench_dir, "process", "process", "--workers", str(workers)))


def _rss_mib(pids_of) -> float:
    import psutil

    total = 0
    for p in pids_of():
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


@pytest.mark.ray
@pytest.mark.benchmark(group="executors")
def test_ray(benchmark, bench_dir):
    """Cold: start a private cluster, run the grid on it, stop it (all inside the timing)."""
    pytest.importorskip("ray")
    import psutil
    import ray

    from bench.ray_executor import start_local_cluster

    assert not ray.is_initialized()
    me = psutil.Process()

    def cold_run() -> None:
        cluster = start_local_cluster(num_cpus=os.cpu_count() or 1)
        RAY_INFO["startup_s"] = cluster.started_s
        time.sleep(1.0)  # let the pre-started idle workers appear
        RAY_INFO["rss_idle_mib"] = _rss_mib(lambda: me.children(recursive=True))
        try:
            _run(bench_dir, "ray", "ray")
            RAY_INFO["rss_after_grid_mib"] = _rss_mib(lambda: me.children(recursive=True))
        finally:
            t0 = time.perf_counter()
            cluster.stop()
            RAY_INFO["shutdown_s"] = time.perf_counter() - t0

    _timed(benchmark, "ray", cold_run)
    benchmark.extra_info.update({k: round(v, 2) for k, v in RAY_INFO.items()})


def test_ratios(bench_dir):
    """Print wall-time ratios to serial (the report recomputes them from the JSON)."""
    if "serial" not in WALL:
        pytest.skip("the serial benchmark did not run")
    lines = [f"{name:8s} {wall:7.1f} s   x{wall / WALL['serial']:.2f} of serial" for name, wall in WALL.items()]
    if RAY_INFO:
        lines.append("ray cluster: start-up {startup_s:.1f} s, shutdown {shutdown_s:.1f} s, RSS of its processes "
                     "{rss_idle_mib:.0f} MiB idle, {rss_after_grid_mib:.0f} MiB after the grid".format(**RAY_INFO))
    print(f"\nexecutors on the smoke grid ({N_CELLS} cells, {os.cpu_count()} CPUs):\n  " + "\n  ".join(lines))
