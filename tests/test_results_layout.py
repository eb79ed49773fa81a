"""The committed store is one regeneration and nothing else: only what `make run` and `make checks` write
lives in `results/` (evidence made by other commands lives in `docs/evidence/`), and every run it records
ran at one commit on a clean tree, so a reader can rebuild all of it from that commit."""
from __future__ import annotations

import json
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


def test_every_recorded_run_is_at_one_commit_on_a_clean_tree():
    records = [json.loads(line) for line in (REPO / "results/meta/runs.jsonl").read_text().splitlines() if line]
    assert records
    assert len({r["commit"] for r in records}) == 1, [r["commit"] for r in records]
    assert not any(r["dirty"] for r in records)
