"""Cores are counted as the process may use them: a container's CPU quota caps the host's count, so
workers and torch threads never oversubscribe a 2-CPU CI machine."""
from __future__ import annotations

import os

import torch

import bench.usage as usage


def test_cgroup_quota_is_read_in_both_formats(tmp_path):
    v2 = tmp_path / "cpu.max"
    v2.write_text("200000 100000\n")
    assert usage._cgroup_cpu_limit([(str(v2), None)]) == 2.0
    v2.write_text("max 100000\n")
    assert usage._cgroup_cpu_limit([(str(v2), None)]) is None
    quota, period = tmp_path / "q", tmp_path / "p"
    quota.write_text("150000\n")
    period.write_text("100000\n")
    assert usage._cgroup_cpu_limit([(str(tmp_path / "absent"), None), (str(quota), str(period))]) == 1.5
    quota.write_text("-1\n")
    assert usage._cgroup_cpu_limit([(str(quota), str(period))]) is None
    assert usage._cgroup_cpu_limit([(str(tmp_path / "absent"), None)]) is None


def test_usable_cores_is_capped_by_the_quota_and_the_affinity(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(usage, "_cgroup_cpu_limit", lambda: 1.5)
    assert usage.usable_cores() == 2
    monkeypatch.setattr(usage, "_cgroup_cpu_limit", lambda: None)
    assert usage.usable_cores() == 64
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert usage.usable_cores() == 1


def test_torch_threads_are_lowered_to_the_usable_cores_never_raised(monkeypatch):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(8)
        monkeypatch.setattr(usage, "usable_cores", lambda: 2)
        assert usage.cap_torch_threads() == 2 and torch.get_num_threads() == 2
        torch.set_num_threads(1)
        assert usage.cap_torch_threads() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
