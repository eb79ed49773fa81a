"""No command erases results it did not make, and unclean invocations end in one line, exit 2.

- A run without --results-dir writes ./results only for the quick profile on real data (the committed
  store); every other profile, and synthetic data, goes to ./runs/<dataset>_<profile>/.
- A run pointed at a store of other results adds its rows, table sections and figures beside theirs:
  the report is built from the stored cells plus the rows of runs.csv no cell replaces.
- `report` on the committed files (a clean clone: runs.csv, no cells) rewrites the same bytes.
- Unclean invocations (the issue's list) stop before anything is written, in one line.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cli_helpers import one_line_error, run

from bench.run_command import default_results_dir

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "bench" / "profiles" / "smoke.toml"


def committed_results(dest: Path) -> Path:
    """The tracked files under results/ (what a clone has: no cells, no artifacts) copied to `dest`."""
    names = subprocess.run(["git", "ls-files", "results"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in names:
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest / "results"


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def quick_section(table: str) -> str:
    """The tiny-imagenet quick section of a table file (from its heading to the next heading)."""
    start = table.index("tiny-imagenet, 32 px, profile `quick`")
    end = table.find("\n## ", start)
    return table[start:end if end >= 0 else None]


def test_default_results_dir_rule():
    assert default_results_dir("quick", "tiny-imagenet") == Path("results")
    assert default_results_dir("smoke", "tiny-imagenet") == Path("runs/tiny-imagenet_smoke")
    assert default_results_dir("quick", "synthetic") == Path("runs/synthetic_quick")
    assert default_results_dir("my profile", "imagefolder") == Path("runs/imagefolder_my_profile")


@pytest.mark.slow
def test_report_of_the_committed_results_writes_the_same_bytes(capsys, tmp_path):
    results = committed_results(tmp_path)
    before = snapshot(results)
    code, _, err = run(capsys, "report", "--results-dir", str(results))
    assert code == 0, err
    after = snapshot(results)
    assert after == before, [k for k in after if after[k] != before.get(k)]


@pytest.mark.slow
def test_smoke_run_into_the_committed_store_keeps_everything_of_theirs(capsys, tmp_path):
    results = committed_results(tmp_path)
    before = snapshot(results)
    old_rows = set((results / "runs.csv").read_text().splitlines()[1:])
    old_tables = {n: (results / "tables" / n).read_text() for n in ("table2.md", "table3.md")}
    code, _, err = run(capsys, "run", "--method", "random-ncm", "--experiment", "table3", "--profile", "smoke",
                       "--dataset", "synthetic", "--results-dir", str(results))
    assert code == 0, err
    after = snapshot(results)
    for name, blob in before.items():  # every committed figure untouched, every other file still there
        assert name in after, name
        if name.startswith("figures/"):
            assert after[name] == blob, name
    new_rows = (results / "runs.csv").read_text().splitlines()
    header = new_rows[0].split(",")
    assert len(new_rows) - 1 > len(old_rows)
    synthetic = [r for r in new_rows[1:] if ",synthetic," in r]
    assert synthetic and "random-ncm" in synthetic[0]
    assert len(new_rows) - 1 - len(synthetic) == len(old_rows)  # the quick rows are all still there
    assert "dataset" in header
    for name, text in old_tables.items():
        assert quick_section((results / "tables" / name).read_text()) == quick_section(text), name
    assert "profile `smoke`" in (results / "tables" / "table3.md").read_text()
    code, out, err = run(capsys, "compare", "protonet", "learngene", "--results-dir", str(results))
    assert code == 0 and "tiny-imagenet 32px (quick), 10-shot" in out, err


@pytest.mark.slow
def test_a_smoke_run_without_results_dir_goes_to_runs_and_logs_plain_lines(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "run", "--method", "random-ncm", "--experiment", "table3", "--profile", "smoke",
                       "--dataset", "synthetic")
    assert code == 0, err
    assert (tmp_path / "runs" / "synthetic_smoke" / "runs.csv").is_file()
    assert not (tmp_path / "results").exists()
    assert "\r" not in err  # not a terminal: no redrawn progress bar in the log
    progress = [ln for ln in err.splitlines() if ln.startswith("[")]
    assert progress and len(progress) == len(set(progress))  # each cell's line once, the last one too
    assert err.strip().splitlines()[-1].startswith("results: runs/synthetic_smoke")


def test_report_on_an_empty_folder_leaves_no_lock(capsys, tmp_path):
    code, _, err = run(capsys, "report", "--results-dir", str(tmp_path))
    one_line_error(code, err, "no results")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_report_with_an_unknown_reference_writes_nothing(capsys, tmp_path):
    results = committed_results(tmp_path)
    before = snapshot(results)
    code, _, err = run(capsys, "report", "--results-dir", str(results), "--reference", "nosuchmethod")
    one_line_error(code, err, "--reference nosuchmethod", "learngene")
    assert snapshot(results) == before


@pytest.mark.parametrize("argv, needles", [
    (["run", "--executor", "serial", "--ray-address", "10.0.0.1:6379", "--dataset", "synthetic"],
     ["--ray-address", "--executor ray"]),
    (["run", "--tasks", "99999999999", "--dry-run", "--dataset", "synthetic"], ["--tasks", "up to"]),
    (["run", "--meth", "all", "--dataset", "synthetic"], ["--meth", "did you mean --method"]),
    (["run", "--queries", "x", "--dataset", "synthetic"], ["--queries", "'all'"]),
])
def test_unclean_invocations_are_one_line(capsys, tmp_path, argv, needles):
    code, _, err = run(capsys, *argv, "--results-dir", str(tmp_path / "r"))
    one_line_error(code, err, *needles)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("dry_run", [True, False])
def test_profile_without_individual_is_refused(capsys, tmp_path, dry_run):
    text = SMOKE.read_text()
    start = text.index("[individual]")
    end = text.index("\n[", start + 1)
    prof = tmp_path / "noind.toml"
    prof.write_text(text[:start] + text[end + 1:])
    code, _, err = run(capsys, "run", "--dataset", "synthetic", "--profile", str(prof), "--results-dir",
                       str(tmp_path / "r"), *(["--dry-run"] if dry_run else []))
    one_line_error(code, err, "[individual]", str(prof))
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_store_missing_some_cells_keeps_their_rows_from_runs_csv(capsys, tmp_path):
    """An interrupted or partial re-run (or a clone with some cells) replaces only the cells it has:
    the report keeps runs.csv's rows of every other cell, so the outputs do not change."""
    results = tmp_path / "r"
    code, _, err = run(capsys, "run", "--method", "random-ncm,scratch", "--experiment", "table3", "--profile",
                       "smoke", "--dataset", "synthetic", "--results-dir", str(results))
    assert code == 0, err
    before = snapshot(results)
    victim = sorted((results / "cells" / "table3").iterdir())[0]
    shutil.rmtree(victim)
    code, _, err = run(capsys, "report", "--results-dir", str(results))
    assert code == 0, err
    after = snapshot(results)
    for name in ("runs.csv", "tables/table3.md"):
        assert after[name] == before[name], name
