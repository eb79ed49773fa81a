"""Executors run cells and hand results back to the driver, the only writer of the store.

- `serial`: in this process, in order (default; simplest to debug).
- `process`: a local pool of worker processes, each with a torch thread pool sized so that
  workers x threads does not oversubscribe the cores.
- `ray`: see bench/ray_executor.py (optional extra).
Every executor yields (cell, result) as cells finish; the driver writes each one at once, so an
interrupted run keeps every finished cell.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

from bench.errors import UsageError
from bench.runner import Cell, RunSpec, execute_cell

EXECUTORS = ("serial", "process", "ray")


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_serial(spec: RunSpec, cells: list[Cell]) -> Iterator[tuple[Cell, dict]]:
    for cell in cells:
        yield cell, execute_cell(spec, cell)


def run_process(spec: RunSpec, cells: list[Cell], workers: int | None = None) -> Iterator[tuple[Cell, dict]]:
    workers = max(1, workers or os.cpu_count() or 1)
    threads = max(1, (os.cpu_count() or 1) // workers)
    # Cells sharing an artifact are grouped by the artifact file lock (methods/artifacts.py):
    # the first worker trains it, the others wait and load it.
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(execute_cell, spec, c): c for c in cells}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


def run_cells(executor: str, spec: RunSpec, cells: list[Cell], workers: int | None = None,
              ray_address: str | None = None) -> Iterator[tuple[Cell, dict]]:
    if executor == "serial":
        return run_serial(spec, cells)
    if executor == "process":
        return run_process(spec, cells, workers)
    if executor == "ray":
        try:
            from bench.ray_executor import run_ray
        except ImportError as exc:
            raise UsageError("--executor ray needs Ray: pip install '.[ray]' (or pip install 'ray[default]')") from exc
        return run_ray(spec, cells, workers, ray_address)
    raise UsageError(f"unknown executor '{executor}'; choose one of: {', '.join(EXECUTORS)}")
