"""One run at a time per results directory (an flock that dies with its process).

The concurrent-run test starts two real `python -m bench run` processes on one results directory.
The first is stopped (SIGSTOP) while it holds the lock, so the timing is deterministic: a second
run exits 2 naming it, a third with --wait waits, and once the first finishes the waiting one
finds every cell done and computes none. Every cell is stored exactly once.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_profile import tiny_profile

from bench.errors import UsageError
from bench.lock import ResultsLock

ROOT = Path(__file__).resolve().parents[1]
PROFILE = tiny_profile("lock-test")


def test_second_lock_is_refused_with_the_holder_named(tmp_path):
    first = ResultsLock(tmp_path).acquire(purpose="run A")
    try:
        with pytest.raises(UsageError) as exc:
            ResultsLock(tmp_path).acquire()
        msg = str(exc.value)
        assert "\n" not in msg and f"pid {os.getpid()}" in msg and "--wait" in msg and "--results-dir" in msg
    finally:
        first.release()
    ResultsLock(tmp_path).acquire().release()  # free again once released


def test_lock_dies_with_its_process(tmp_path):
    """kill -9 of the holder frees the lock: no stale lock file to remove by hand."""
    code = ("import sys, time; sys.path.insert(0, sys.argv[2]); from bench.lock import ResultsLock; "
            "lk = ResultsLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(ROOT)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(UsageError):
            ResultsLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()
    ResultsLock(tmp_path).acquire().release()


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_two_concurrent_runs_never_compute_the_same_cell(tmp_path):
    (tmp_path / "p.toml").write_text(PROFILE)
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench", "run", "--method", "scratch", "--experiment", "table3", "--dataset",
           "synthetic", "--profile", str(tmp_path / "p.toml"), "--results-dir", str(results), "--no-report",
           "--threads", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BENCH_CACHE_DIR": str(tmp_path / "cache")}
    a = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    waiter = None
    try:
        lock_file = results / ".lock"
        _wait_for(lambda: lock_file.exists() and f"pid {a.pid} " in lock_file.read_text(), 120, "run A to lock")
        a.send_signal(signal.SIGSTOP)  # A holds the lock and is frozen mid-run
        b = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert b.returncode == 2, b.stderr
        lines = [ln for ln in b.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: results directory") and f"pid {a.pid}" in lines[0]
        waiter_err = tmp_path / "waiter.err"
        with open(waiter_err, "w") as fh:
            waiter = subprocess.Popen([*cmd, "--wait"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=fh)
        _wait_for(lambda: "waiting for it to finish" in waiter_err.read_text(), 120, "the --wait run to queue")
        assert waiter.poll() is None
        a.send_signal(signal.SIGCONT)
        assert a.wait(timeout=300) == 0, a.stderr.read()[-2000:]
        assert waiter.wait(timeout=300) == 0, waiter_err.read_text()[-2000:]
    finally:
        for p in (a, waiter):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait()
    assert "4 cells, 0 already done, 4 to run" in a.stderr.read()
    assert "4 cells, 4 already done, 0 to run" in waiter_err.read_text()
    runs = [json.loads(ln) for ln in (results / "meta" / "runs.jsonl").read_text().splitlines()]
    assert [r["cells_run"] for r in runs] == [4, 0]  # the work is counted once
    configs = [(d / "cell.json").read_text() for d in sorted(p.parent for p in results.glob("cells/*/*/done"))]
    assert len(configs) == 4 == len(set(configs))
