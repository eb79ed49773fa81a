"""The committed store is one regeneration and the runs added to it: only what `make run`, `make checks`
and `make study` write lives in `results/` (evidence made by other commands lives in `docs/evidence/`);
one recorded run is the whole grid (`--method all`), and every run ran on a clean tree at a commit of
this repository's history, so a reader can rebuild each from its commit."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: What a run writes: the generated README, the long table, and these folders' files.
RUN_OUTPUTS = {"README.md", "runs.csv"}
RUN_FOLDERS = {"tables": {".md"}, "figures": {".png"}, "meta": {".json", ".jsonl"}}


def tracked_results() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--", "results"], cwd=REPO, capture_output=True, text=True, check=True)
    return [name.removeprefix("results/") for name in out.stdout.split()]


def is_run_output(name: str) -> bool:
    if name in RUN_OUTPUTS:
        return True
    folder, _, rest = name.partition("/")
    return "/" not in rest and Path(rest).suffix in RUN_FOLDERS.get(folder, set())


def test_the_layout_rule_accepts_run_outputs_and_rejects_evidence():
    """The check itself: run outputs pass; an evidence file or a nested study folder does not."""
    assert all(map(is_run_output, ["README.md", "runs.csv", "tables/table3.md", "figures/f.png", "meta/runs.jsonl"]))
    assert not any(map(is_run_output, ["budgets.md", "speed/runs.jsonl", "reference_protonet/tables/table3.md"]))


def test_committed_results_hold_only_what_a_run_writes():
    names = tracked_results()
    assert "runs.csv" in names, "no committed store found"
    stray = [n for n in names if not is_run_output(n)]
    assert not stray, f"results/ holds files no run writes (move them to docs/evidence/): {stray}"


def test_the_store_is_one_grid_run_plus_named_runs_each_at_a_known_commit_on_a_clean_tree():
    records = [json.loads(line) for line in (REPO / "results/meta/runs.jsonl").read_text().splitlines() if line]
    assert records
    grids = [r for r in records if "--method all" in r["command"]]
    assert len(grids) == 1, [r["command"] for r in records]  # one regeneration, not a patchwork of partial ones
    assert not any(r["dirty"] for r in records)
    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=REPO, capture_output=True,
                             text=True).stdout.strip() == "true"
    for r in records:
        assert re.fullmatch(r"[0-9a-f]{7,40}", r["commit"]), r["commit"]
        if shallow:  # a shallow clone lacks old commits; the format check above still holds
            continue
        known = subprocess.run(["git", "cat-file", "-e", f"{r['commit']}^{{commit}}"], cwd=REPO, capture_output=True)
        assert known.returncode == 0, f"{r['commit']} is not a commit of this repository"
