"""The results store: atomic cells, resume after kill -9, no duplicate rows."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.collect import collect
from bench.store import ResultsStore

ROOT = Path(__file__).resolve().parents[1]


def _config(i: int) -> dict:
    return {"experiment": "table3", "method": "scratch", "params": {"seed": i}, "dataset": "synthetic",
            "image_size": 32, "profile": {"name": "t"}}


def test_write_then_done_and_resume_skips(tmp_path):
    store = ResultsStore(tmp_path)
    cfg = _config(0)
    assert not store.is_done(cfg)
    store.write(cfg, {"rows": [{"metric": "accuracy", "value": 0.5, "episode": 0}]})
    assert store.is_done(cfg)
    d = store.cell_dir(cfg)
    assert json.loads((d / "cell.json").read_text()) == cfg
    assert not list(d.glob(".*tmp*")), "temporary files must not be left behind"


def test_cell_without_done_marker_is_not_collected(tmp_path):
    store = ResultsStore(tmp_path)
    store.write(_config(0), {"rows": [{"metric": "accuracy", "value": 0.5, "episode": 0}]})
    store.write(_config(1), {"rows": [{"metric": "accuracy", "value": 0.7, "episode": 0}]})
    (store.cell_dir(_config(1)) / "done").unlink()  # as if killed between result and marker
    df = collect(tmp_path)
    assert list(df["seed"]) == [0]


def test_different_configs_get_different_dirs(tmp_path):
    store = ResultsStore(tmp_path)
    assert store.cell_dir(_config(0)) != store.cell_dir(_config(1))


def test_unwritable_results_dir_is_reported(tmp_path):
    from bench.errors import UsageError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match="not writable"):
        ResultsStore(blocker / "sub").check_writable()


@pytest.mark.slow
def test_kill9_mid_run_then_rerun_completes_without_duplicates(tmp_path):
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench", "run", "--method", "scratch", "--experiment", "table3",
           "--dataset", "synthetic", "--profile", "smoke", "--seeds", "3", "--results-dir", str(results),
           "--no-report"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(results.glob("cells/*/*/done")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = len(list(results.glob("cells/*/*/done")))
    assert 1 <= first < 6, f"kill should land mid-grid (done cells: {first})"
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"{first} already done" in out.stderr
    assert len(list(results.glob("cells/*/*/done"))) == 6
    df = collect(results)
    acc = df[df.metric == "accuracy"]
    assert len(acc) == 6 * 2  # cells x tasks, each exactly once
    assert not acc.duplicated(subset=["cell", "episode"]).any()
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert "6 already done, 0 to run" in again.stderr
