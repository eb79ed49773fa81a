"""CPU time and peak memory of a run, for the run record (`meta/runs.jsonl`).

Why: "both cores busy" is a claim about CPU seconds per wall second, and the memory budget is about
the largest process; both are read from the kernel's accounting (`getrusage`), which covers the
driver and every worker process that has exited (the process executor's pool is joined before the
record is written). Ray's workers belong to the raylet, not the driver, so they are not counted.
"""
from __future__ import annotations

import resource


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its exited children so far."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def peak_rss_mib() -> dict[str, float]:
    """Peak resident memory (MiB) of the driver and of the largest exited child (a worker)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"peak_rss_mib_driver": round(own.ru_maxrss / 1024, 1),
            "peak_rss_mib_worker": round(kids.ru_maxrss / 1024, 1)}
