"""Executors run cells and hand results back to the driver, the only writer of the store.

- `serial`: in this process, in order (default; simplest to debug).
- `process`: a local pool of worker processes, each with a torch thread pool sized so that
  workers x threads does not oversubscribe the cores.
- `ray`: see bench/ray_executor.py (optional extra: `pip install '.[ray]'`).
Every executor yields (cell, result) as cells finish, with the caller's own `Cell` objects; the
driver writes each one at once, so an interrupted run keeps every finished cell.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import multiprocessing
import os
from collections.abc import Hashable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from bench.cell_env import Cell, RunSpec
from bench.cells import execute_recorded
from bench.errors import UsageError
from bench.schedule import ArtifactAwareQueue, artifact_group
from bench.usage import usable_cores

EXECUTORS = ("serial", "process", "ray")
RAY_MISSING = "--executor ray needs Ray, which is not installed: pip install '.[ray]' (or pip install 'ray[default]')"


def _die_with_parent(parent_pid: int) -> None:
    """Linux: ask the kernel to kill this worker when the driver dies (kill -9 included), so an
    interrupted run never leaves orphan workers computing cells nobody will store. A driver that
    died while this worker was still importing is caught by the parent-pid check."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux/glibc: the pool's own shutdown still applies
    if os.getppid() != parent_pid:
        os._exit(1)


def _init_worker(threads: int, parent_pid: int | None = None) -> None:
    import torch

    if parent_pid is not None:
        _die_with_parent(parent_pid)
    torch.set_num_threads(threads)


def run_serial(spec: RunSpec, cells: list[Cell]) -> Iterator[tuple[Cell, dict]]:
    for cell in cells:
        yield cell, execute_recorded(spec, cell)


def pool_shape(workers: int | None, n_cells: int | None = None, threads: int | None = None) -> tuple[int, int]:
    """(workers, torch threads per worker) that do not oversubscribe the cores.

    Default one worker per core and threads = cores // workers; never more workers than cells.
    With `threads` fixed (--threads, for numbers identical to another executor's) the default
    workers become cores // threads."""
    cores = usable_cores()
    workers = max(1, workers or (cores // threads if threads else cores))
    if n_cells:
        workers = min(workers, n_cells)
    return workers, threads or max(1, cores // workers)


def run_process(spec: RunSpec, cells: list[Cell], workers: int | None = None,
                build_s: Mapping[Hashable, float] | None = None) -> Iterator[tuple[Cell, dict]]:
    """A local process pool. Workers are spawned, not forked: the driver has already run torch
    (loading the data), and forking a process with live OpenMP threads can deadlock the child.
    Each worker keeps its Env (data, prepared methods) across cells. Cells sharing an artifact are
    serialised by the artifact file lock (methods/artifacts.py); the driver hands cells out one per
    free worker in `bench.schedule`'s order, so a worker starts another artifact's build rather than
    waiting on the lock of one in progress. No retries: a dead worker fails the run (use `ray`)."""
    if not cells:
        return
    workers, threads = pool_shape(workers, len(cells), spec.threads)
    spec = dataclasses.replace(spec, threads=threads)
    queue = ArtifactAwareQueue(cells, lambda c: artifact_group(spec, c), build_s)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(threads, os.getpid())) as pool:
        running: dict[Future, Cell] = {}
        try:
            while queue or running:
                while len(running) < workers and (cell := queue.take()) is not None:
                    running[pool.submit(execute_recorded, spec, cell)] = cell
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    cell = running.pop(fut)
                    queue.finished(cell)
                    yield cell, fut.result()
        finally:
            for fut in running:
                fut.cancel()


def check_executor(executor: str) -> None:
    """Fail before any work (one line, exit 2) when the executor cannot run here."""
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor '{executor}'; choose one of: {', '.join(EXECUTORS)}")
    if executor == "ray" and importlib.util.find_spec("ray") is None:
        raise UsageError(RAY_MISSING)


def run_cells(executor: str, spec: RunSpec, cells: list[Cell], workers: int | None = None,
              ray_address: str | None = None,
              build_s: Mapping[Hashable, float] | None = None) -> Iterator[tuple[Cell, dict]]:
    """Yield (cell, result) for every cell, as they finish, with the caller's own Cell objects.
    `build_s`: predicted seconds of each artifact group's build (the process pool starts the longest first)."""
    if executor == "serial":
        return run_serial(spec, cells)
    if executor == "process":
        return run_process(spec, cells, workers, build_s)
    check_executor(executor)
    if executor == "ray":
        from bench.ray_executor import run_ray

        return run_ray(spec, cells, workers, ray_address)
    raise UsageError(f"unknown executor '{executor}'; choose one of: {', '.join(EXECUTORS)}")
