"""bench.benchmarks_report: pytest-benchmark JSON -> markdown, ratios to each group's first row."""
from __future__ import annotations

import json

from bench.benchmarks_report import fmt_time, main, render

DOC = {
    "machine_info": {"python_version": "3.11.9", "system": "Linux", "release": "6.1", "cpu": {"brand_raw": "Test CPU", "count": 2}},
    "commit_info": {"id": "abcdef0123456789", "dirty": True},
    "datetime": "2026-11-26T13:00:00.000000+00:00",
    "benchmarks": [
        {"group": "executors", "name": "test_serial", "stats": {"mean": 10.0, "min": 10.0, "max": 10.0, "rounds": 1},
         "extra_info": {"cells": 8, "machine_state": {"big": "dict"}}},
        {"group": "executors", "name": "test_ray", "stats": {"mean": 15.0, "min": 15.0, "max": 15.0, "rounds": 1},
         "extra_info": {"startup_s": 6.25, "rss_idle_mib": 480.0}},
        {"group": "data", "name": "test_gather", "stats": {"mean": 0.002, "min": 0.001, "max": 0.003, "rounds": 5},
         "extra_info": {}},
    ],
}


def test_render_groups_ratios_and_extra_info():
    md = render(DOC)
    assert "Test CPU (2 logical CPUs)" in md and "commit abcdef0123 (dirty)" in md
    assert "| test_serial | 10 s | 10 s | 10 s | 1 | 1.00x | cells=8 |" in md
    assert "| test_ray | 15 s | 15 s | 15 s | 1 | 1.50x | startup_s=6.25, rss_idle_mib=480 |" in md
    assert "## data" in md and "| test_gather | 2 ms |" in md and "vs test_gather" in md
    assert "machine_state" not in md


def test_fmt_time_units():
    assert fmt_time(2.5) == "2.5 s" and fmt_time(0.0125) == "12.5 ms" and fmt_time(3e-6) == "3 µs"


def test_cli_writes_markdown_and_fails_in_one_line(tmp_path, capsys):
    src = tmp_path / "b.json"
    src.write_text(json.dumps(DOC))
    out = tmp_path / "out" / "benchmarks.md"
    assert main([str(src), "--out", str(out)]) == 0
    assert out.read_text().startswith("# Benchmarks")
    out.unlink()
    assert main([str(src), str(out)]) == 0 and out.exists()  # positional MD, as the Makefile calls it
    capsys.readouterr()
    assert main([str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run the benchmarks first" in err


def test_fraction_of_peak_divides_counted_flops_by_time_and_by_the_measured_peak():
    doc = {**DOC, "benchmarks": [
        {"group": "peak", "name": "mm32", "stats": {"mean": 0.1, "min": 0.1, "max": 0.1, "rounds": 5},
         "extra_info": {"loop": "matmul 2048² fp32", "flops": 20e9, "peak": "fp32"}},
        {"group": "peak", "name": "mm16", "stats": {"mean": 0.025, "min": 0.025, "max": 0.025, "rounds": 5},
         "extra_info": {"loop": "matmul 2048² bf16", "flops": 20e9, "peak": "bf16"}},
        {"group": "loops", "name": "step", "stats": {"mean": 0.01, "min": 0.01, "max": 0.01, "rounds": 5},
         "extra_info": {"loop": "individual step", "flops": 1e9}},
    ]}
    md = render(doc)
    assert "fp32 200 GFLOP/s, bf16 800 GFLOP/s" in md and "a 2048² matrix product" in md
    assert "| individual step | 1000.0 M | 10 ms | 100.0 | 50.0 % |" in md
    assert "fraction" not in render(DOC).lower()  # no peak measured: no table


def test_compute_switches_pair_accuracies_with_fp32_and_give_speedups():
    def row(policy, mean, accs):
        return {"group": "compute switches", "name": f"t[{policy}]", "stats": {"mean": mean, "min": mean, "max": mean,
                                                                          "rounds": 1},
                "extra_info": {"loop": "individual training", "policy": policy, "episode_acc": accs,
                               "accuracy": sum(accs) / len(accs), "data": "tiny-imagenet", "cpu_bf16": "avx512_bf16"}}
    doc = {**DOC, "benchmarks": [row("fp32", 10.0, [0.5, 0.6, 0.7]), row("bf16", 5.0, [0.5, 0.6, 0.7])]}
    md = render(doc)
    assert "CPU bf16 support: avx512_bf16" in md
    assert "| individual training | bf16 | 5 s | 2.00x | 60.00 | +0.00 ± 0.00 |" in md
    assert "| individual training | fp32 | 10 s | 1.00x | 60.00 | — |" in md


def test_full_runs_table_lists_cpu_use(tmp_path):
    runs = tmp_path / "runs.jsonl"
    runs.write_text(json.dumps({"commit": "abc1234", "command": "python -m bench run", "cells_run": 127,
                                "wall_s": 435.7, "cpu_per_wall": 1.93, "peak_rss_mib_driver": 865.9,
                                "peak_rss_mib_worker": 1388.6}) + "\n")
    src, out = tmp_path / "b.json", tmp_path / "b.md"
    src.write_text(json.dumps(DOC))
    assert main([str(src), "--out", str(out), "--runs", str(runs)]) == 0
    assert "| abc1234 | `python -m bench run` | 127 | 435.7 s | 1.93 | 865.9 / 1388.6 MiB |" in out.read_text()
