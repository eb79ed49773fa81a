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
from tiny_profile import tiny_profile

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


# ------------------------------------ damaged cells: a changed or truncated result is not done


def test_done_records_checksums_and_a_changed_result_is_not_done(tmp_path):
    store = ResultsStore(tmp_path)
    cfg = _config(0)
    store.write(cfg, {"rows": [{"metric": "accuracy", "value": 0.5, "episode": 0}]})
    d = store.cell_dir(cfg)
    marker = json.loads((d / "done").read_text())
    assert set(marker["sha256"]) == {"cell.json", "result.json"}
    # still valid JSON, one digit changed: only the checksum can tell
    (d / "result.json").write_text((d / "result.json").read_text().replace("0.5", "0.9"))
    assert not store.is_done(cfg)
    assert store.damaged() == [(d, "result.json does not match the checksum in its done marker")]
    assert list(store.iter_done()) == []


def test_legacy_empty_done_marker_is_trusted_only_when_the_files_parse(tmp_path):
    store = ResultsStore(tmp_path)
    cfg = _config(0)
    store.write(cfg, {"rows": []})
    d = store.cell_dir(cfg)
    (d / "done").write_text("")  # written by an older version
    assert store.is_done(cfg)
    (d / "result.json").write_text('{"rows": [')
    assert not store.is_done(cfg) and store.damaged()[0][1] == "result.json is not valid JSON"


def test_every_store_file_is_fsynced_and_renamed(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    store = ResultsStore(tmp_path)
    store.write(_config(0), {"rows": []})
    d = store.cell_dir(_config(0))
    names = {Path(p).name for p in synced}
    for name in ("cell.json", "result.json", "done"):
        assert f".{name}.tmp{os.getpid()}" in names, names  # the temp file is fsynced before the rename
    assert str(d) in synced  # and the directory after it
    assert sorted(p.name for p in d.iterdir()) == ["cell.json", "done", "result.json"]


LOCK_PROFILE = tiny_profile("damage-test", shots=(5,))


def test_truncated_result_fails_report_then_a_rerun_recomputes_it(tmp_path, capsys, monkeypatch):
    from bench.cli import main

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "p.toml").write_text(LOCK_PROFILE)
    results = tmp_path / "results"
    cmd = ["run", "--method", "scratch", "--experiment", "table3", "--dataset", "synthetic", "--profile",
           str(tmp_path / "p.toml"), "--results-dir", str(results), "--threads", "1"]
    assert main(cmd) == 0
    assert (results / "tables" / "table3.md").exists()
    cells = sorted(p.parent for p in results.glob("cells/*/*/done"))
    assert len(cells) == 2
    victim = cells[1] / "result.json"
    good = victim.read_bytes()
    victim.write_bytes(good[: len(good) // 2])  # a real result file, truncated
    capsys.readouterr()

    assert main(["report", "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    rel = str(cells[1].relative_to(results))
    assert len(err) == 1 and err[0].startswith("error: 1 damaged cell(s)") and rel in err[0], err

    assert main(cmd) == 0
    err = capsys.readouterr().err
    assert f"warning: cell {rel} (table3/scratch) is damaged" in err and "computing it again" in err
    assert "2 cells, 1 already done, 1 to run" in err
    def numbers(raw: bytes) -> list:
        return [r for r in json.loads(raw)["rows"] if r["metric"] != "wall_s"]

    assert numbers(victim.read_bytes()) == numbers(good)  # deterministic: the same numbers again
    assert ResultsStore(results).damaged() == []


def test_report_removes_tables_of_experiments_without_rows(tmp_path, capsys, monkeypatch):
    from bench.cli import main

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "p.toml").write_text(LOCK_PROFILE)
    results = tmp_path / "results"
    assert main(["run", "--method", "scratch", "--experiment", "table3", "--dataset", "synthetic", "--profile",
                 str(tmp_path / "p.toml"), "--results-dir", str(results), "--threads", "1", "--no-report"]) == 0
    # left over from a store that once had Table 2 and Figure 3 cells, plus a file of the user's own
    (results / "tables").mkdir()
    (results / "tables" / "table2.md").write_text("# Table 2 (stale)\n")
    (results / "figures").mkdir()
    (results / "figures" / "fig3_rho_synthetic_16px_damage-test.png").write_bytes(b"\x89PNG stale")
    (results / "tables" / "my-notes.md").write_text("mine\n")
    assert main(["report", "--results-dir", str(results)]) == 0
    err = capsys.readouterr().err
    assert not (results / "tables" / "table2.md").exists()
    assert not (results / "figures" / "fig3_rho_synthetic_16px_damage-test.png").exists()
    assert "removed" in err and "table2.md" in err
    assert (results / "tables" / "table3.md").exists() and (results / "tables" / "my-notes.md").exists()
    readme = (results / "README.md").read_text()
    assert "table2" not in readme and "fig3" not in readme


def test_cells_stored_under_an_older_key_move_to_the_current_key(tmp_path):
    """Description, other methods' sections and the seed count left the key: such cells are kept."""
    from bench.cell_env import key_profile
    from bench.store import ResultsStore

    store = ResultsStore(tmp_path)
    old = {"experiment": "table3", "method": "scratch", "settings": {"epochs": 30},
           "profile": {"name": "quick", "description": "words", "methods": {"protonet": {"meta_iterations": 1}},
                       "episodes": {"tasks": 25, "seeds": 2}}}
    store.write(old, {"rows": [{"metric": "accuracy", "value": 0.5}]})
    new_dir = store.cell_dir({**old, "profile": key_profile(old["profile"])})
    assert store.done_dirs_after_rekey(key_profile) == {new_dir} and store.is_done(old)  # dry run: nothing moved
    assert store.rekey(key_profile) == 1
    new = {"experiment": "table3", "method": "scratch", "settings": {"epochs": 30},
           "profile": {"name": "quick", "episodes": {"tasks": 25}}}
    assert store.is_done(new) and not store.is_done(old)
    assert [r for _, r in store.iter_done()] == [{"rows": [{"metric": "accuracy", "value": 0.5}]}]
    assert store.rekey(key_profile) == 0


def test_a_cell_key_ignores_other_methods_sections_and_the_seed_count():
    """Changing ProtoNet's budget re-runs ProtoNet only; adding seeds keeps the stored seeds' cells. A
    change to the method's own section or to the episodes a cell holds still changes its key."""
    from bench import profiles
    from bench.cell_env import Cell, RunSpec, cell_config
    from methods.artifacts import config_hash

    base = profiles.load_profile("quick")

    def key(method: str, edits: dict | None = None) -> str:
        prof = json.loads(json.dumps(base))
        for (section, sub, k), v in (edits or {}).items():
            (prof[section] if sub is None else prof[section][sub])[k] = v
        spec = RunSpec(dataset="synthetic", data_dir="", image_size=32, profile=prof, results_dir="")
        return config_hash(cell_config(Cell("table3", method, {"seed": 0, "shots": 10}), spec, "d", {}))

    assert key("scratch") == key("scratch", {("methods", "protonet", "meta_iterations"): 123})
    assert key("protonet") != key("protonet", {("methods", "protonet", "meta_iterations"): 123})
    assert key("deepemd") != key("deepemd", {("methods", "finetune", "pretrain_epochs"): 3})
    assert key("scratch") == key("scratch", {("episodes", None, "seeds"): 7})
    assert key("scratch") != key("scratch", {("episodes", None, "tasks"): 3})
    assert key("scratch") != key("scratch", {("individual", None, "epochs"): 3})


def test_a_report_uses_the_newest_of_cells_that_differ_only_in_settings(tmp_path, capsys):
    """Re-running into one results directory after a profile value changed (ProtoNet's budget) stores a
    second cell for the same method and episodes; tables must use the new one, not average both."""
    from bench.cell_env import key_profile
    from bench.store import ResultsStore

    store = ResultsStore(tmp_path)
    cell = {"experiment": "table3", "method": "protonet", "dataset": "d", "image_size": 32,
            "params": {"seed": 0, "shots": 10}, "profile": {"name": "quick"}}
    store.write({**cell, "settings": {"meta_iterations": 2200}}, {"rows": [{"metric": "accuracy", "value": 0.5}]},
                written=100.0)
    store.write({**cell, "settings": {"meta_iterations": 4400}}, {"rows": [{"metric": "accuracy", "value": 0.6}]},
                written=200.0)
    store.write({**cell, "method": "scratch"}, {"rows": [{"metric": "accuracy", "value": 0.4}]}, written=50.0)
    df = collect(tmp_path)
    assert sorted(df["value"]) == [0.4, 0.6]
    assert "1 stored cells left out" in capsys.readouterr().err
    # re-keying keeps each cell's written time, so it cannot make an old cell look new
    old = {**cell, "settings": {"meta_iterations": 1100}, "profile": {"name": "quick", "description": "x"}}
    store.write(old, {"rows": [{"metric": "accuracy", "value": 0.3}]}, written=10.0)
    assert store.rekey(key_profile) == 1
    assert sorted(collect(tmp_path)["value"]) == [0.4, 0.6]
