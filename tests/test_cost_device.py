"""`python -m bench.cost device` (bench/cost/device.py) end to end on the CPU at a tiny scale (the smoke
profile, small synthetic data): every Table 3 component has a row, and the extrapolated total is a
finite number of seconds."""
from __future__ import annotations

import json
import math
import sys

import torch

import methods
from bench.cost import device
from bench.cost.__main__ import main as cost_main
from bench.experiments.selection import methods_for


def test_paper_cost_table_has_every_component(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "cost.md"
    rc = cost_main(["device", "--device", "cpu", "--profile", "smoke", "--scale", "0.05", "--data-shape", "40,20,10",
                   "--threads", "1", "--out", str(out)])
    assert rc == 0
    result = json.loads(out.with_suffix(".json").read_text())
    rows = {r["key"]: r for r in result["rows"]}
    table3 = methods_for("table3", methods.names())
    expected = {"collective", "pretrain:linear", "pretrain:cosine", "prepare:random-ncm",
                *(f"episodes:{m}" for m in table3),
                *(f"meta:{m}" for m in ("protonet", "matchingnet", "maml", "fomaml", "protomaml", "deepemd"))}
    assert expected <= set(rows), sorted(expected - set(rows))
    assert not result["errors"] and not result["skipped"]
    for key in expected:
        r = rows[key]
        assert r["status"] == "ok" and math.isfinite(r["seconds"]) and r["seconds"] > 0, r
        assert r["units"] > 0 and math.isfinite(r["sec_per_unit"]), r
    assert math.isfinite(result["total_s"]) and result["total_s"] > 0
    assert math.isclose(result["total_s"], sum(r["seconds"] for r in result["rows"]))
    text = out.read_text()
    for r in result["rows"]:
        assert f"| {r['component']} |" in text
    assert "**total**" in text and "extrapolated" in text and result["device"] in text
    assert str(tmp_path) not in text and "python -m bench.cost device" in text  # no machine path recorded


def test_missing_library_is_skipped_not_fatal(tmp_path, monkeypatch):
    """Without learn2learn or POT the rows of MAML and DeepEMD say why, and the rest still runs."""
    torch.set_num_threads(1)
    methods.names()  # the registry is loaded before POT disappears (other tests in this process need it)
    monkeypatch.setitem(sys.modules, "ot", None)
    monkeypatch.setitem(sys.modules, "learn2learn", None)
    out = tmp_path / "cost.md"
    rc = device.main(["--device", "cpu", "--profile", "smoke", "--scale", "0.05", "--data-shape", "40,20,10",
                      "--threads", "1", "--out", str(out), "--only", "meta:maml,episodes:deepemd,prepare"])
    assert rc == 0
    rows = {r["key"]: r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    assert rows["meta:maml"]["status"] == "skipped" and "learn2learn" in rows["meta:maml"]["note"]
    assert rows["episodes:deepemd"]["status"] == "skipped" and "ot" in rows["episodes:deepemd"]["note"]
    assert rows["prepare:random-ncm"]["status"] == "ok"
    assert "without:" in out.read_text()
