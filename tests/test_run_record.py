"""The run record (`meta/runs.jsonl`) states the CPU, its use and peak memory beside wall time."""
from __future__ import annotations

import json

from bench.cli import main


def test_run_record_has_cpu_use_and_peak_memory(tmp_path, capsys):
    r = tmp_path / "r"
    assert main(["run", "--method", "scratch", "--experiment", "table3", "--profile", "smoke", "--dataset",
                 "synthetic", "--seeds", "1", "--tasks", "2", "--results-dir", str(r), "--no-report"]) == 0
    rec = json.loads((r / "meta" / "runs.jsonl").read_text().splitlines()[-1])
    assert rec["cpu_s"] > 0 and rec["wall_s"] > 0
    # the record rounds cpu_s and wall_s to 0.1 s and the ratio to 0.01: allow exactly that rounding
    r, w, c = rec["cpu_per_wall"], rec["wall_s"], rec["cpu_s"]
    assert 0 < r <= (rec["cpu_count"] or 1) + 0.5
    assert abs(r * w - c) <= 0.005 * w + 0.05 * r + 0.05 + 1e-9
    assert rec["peak_rss_mib_driver"] > 50 and "peak_rss_mib_worker" in rec
    from bench.usage import cpu_class

    assert rec["cpu"] == cpu_class()  # which machine the wall time is of
    assert rec["estimated_s"] > 0  # the cost model's estimate at the start, to set against wall_s
    from bench.summary import _estimate

    assert _estimate({"estimated_s": 125.0, "wall_s": 100.0}) == "125 s (+25%)"
    assert _estimate({"estimated_s": 2492.3, "wall_s": 2493.7}) == "2492 s (-0.1%)"  # small errors keep a digit
    assert _estimate({"wall_s": 100.0}) == "not recorded"
