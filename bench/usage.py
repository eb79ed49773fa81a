"""CPU time and peak memory of a run (for the run record, `meta/runs.jsonl`), and what the CPU is.

Why: "both cores busy" is a claim about CPU seconds per wall second, and the memory budget is about
the largest process; both are read from the kernel's accounting (`getrusage`), which covers the
driver and every worker process that has exited (the process executor's pool is joined before the
record is written). Ray's workers belong to the raylet, not the driver, so they are not counted.
"""
from __future__ import annotations

import math
import os
import platform
import resource
from pathlib import Path

_CGROUP_QUOTA_FILES = (("/sys/fs/cgroup/cpu.max", None),  # cgroup v2: "<quota> <period>" or "max <period>"
                       ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
                       ("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us"))


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its exited children so far."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def peak_rss_mib() -> dict[str, float]:
    """Peak resident memory (MiB) of the driver and of the largest exited child (a worker)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"peak_rss_mib_driver": round(own.ru_maxrss / 1024, 1),
            "peak_rss_mib_worker": round(kids.ru_maxrss / 1024, 1)}


def _cgroup_cpu_limit(files=_CGROUP_QUOTA_FILES) -> float | None:
    """CPUs the container's CFS quota allows (e.g. 2.0 under `docker --cpus=2`), None when unlimited."""
    for quota_file, period_file in files:
        try:
            fields = Path(quota_file).read_text().split()
            if period_file:
                fields += Path(period_file).read_text().split()
        except OSError:
            continue
        if len(fields) < 2 or fields[0] in ("max", "-1"):
            return None
        quota, period = float(fields[0]), float(fields[1])
        return quota / period if quota > 0 and period > 0 else None
    return None


def usable_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota.

    Why not `os.cpu_count()`: in a container it counts the host's CPUs, so one worker (or torch
    thread) per "core" would oversubscribe a 2-CPU quota many times over."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, math.ceil(limit))
    return max(1, cores)


def cap_torch_threads() -> int:
    """Lower torch's intra-op threads to the usable cores (its default counts the host's) and return them."""
    import torch

    threads = min(torch.get_num_threads(), usable_cores())
    torch.set_num_threads(threads)
    return threads


def _cpuinfo(key: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU's model name (a speed figure is meaningless without it)."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_class() -> str:
    """The CPU's model name and the vector ISA torch dispatches to here (e.g. "AMD EPYC (AVX512)"): a
    cloud model name such as "AMD EPYC" covers both AVX2-only and AVX-512 generations, whose speeds
    differ by far more than an ETA may."""
    try:
        import torch

        isa = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - a name without the ISA is still a name
        return cpu_name()
    return f"{cpu_name()} ({isa})"


def cpu_bf16_support() -> str:
    """Which bf16 matrix instructions the CPU has: AMX tiles, AVX-512 BF16, or none (emulated)."""
    flags = (_cpuinfo("flags") or "").split()
    if not flags:
        return "unknown"
    have = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    return "+".join(have) if have else "none (bf16 emulated)"
