"""Running one cell: look up its experiment and call it in this process's environment.

Why a module of its own: experiments import `bench.cell_env` (cells, environment, episodes), and every
executor needs "run this cell"; keeping that function here lets both import downward only.
"""
from __future__ import annotations

import os
import time

from bench.cell_env import Cell, RunSpec, env_for
from bench.experiments import get_experiment


def execute_cell(spec: RunSpec, cell: Cell) -> dict:
    """Run one cell in this process; returns {'rows': [...], 'wall_s': ..., 'pid': ...}."""
    env = env_for(spec)
    t0 = time.perf_counter()
    rows = get_experiment(cell.experiment).run(cell, env)
    return {"rows": rows, "wall_s": time.perf_counter() - t0, "pid": os.getpid(), "device": str(env.device)}


def execute_recorded(spec: RunSpec, cell: Cell) -> dict:
    """`execute_cell`, plus the torch thread count the cell ran with (on the CPU the numbers depend
    on it: the order of float sums) and the CPU class, both kept with each result."""
    import torch

    from bench.usage import cpu_class

    result = execute_cell(spec, cell)
    result["threads"] = torch.get_num_threads()
    result["cpu"] = cpu_class()  # the CPU class the cell's seconds are of (the cost model reads it)
    return result
