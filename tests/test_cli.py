"""The command line as a user meets it: listings, dry runs, and one-line errors with exit code 2."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from cli_helpers import one_line_error as assert_one_line_error
from cli_helpers import run


def test_list_methods_shows_every_method_with_description(capsys):
    code, out, _ = run(capsys, "list", "methods")
    assert code == 0
    names = [ln.split()[0] for ln in out.splitlines()]
    for required in ("scratch", "learngene", "maml", "fomaml", "protomaml", "protonet", "matchingnet", "finetune",
                     "finetune++", "deepemd"):
        assert required in names
    assert all(len(ln.split(None, 1)) == 2 for ln in out.splitlines())


@pytest.mark.parametrize("what", ["experiments", "datasets", "profiles"])
def test_list_other(capsys, what):
    code, out, _ = run(capsys, "list", what)
    assert code == 0 and out.strip()


def test_unknown_method_lists_valid_ones(capsys, tmp_path):
    code, _, err = run(capsys, "run", "--method", "nope", "--dataset", "synthetic", "--results-dir", str(tmp_path))
    assert_one_line_error(code, err, "unknown method 'nope'", "scratch")
    assert "valid methods: all, checks," in err  # both group names a user can pass are listed first


def test_unknown_experiment(capsys, tmp_path):
    code, _, err = run(capsys, "run", "--experiment", "table9", "--dataset", "synthetic", "--results-dir", str(tmp_path))
    assert_one_line_error(code, err, "table9", "table3")


def test_unknown_profile(capsys, tmp_path):
    code, _, err = run(capsys, "run", "--profile", "huge", "--dataset", "synthetic", "--results-dir", str(tmp_path))
    assert_one_line_error(code, err, "unknown profile 'huge'", "smoke")


def test_unknown_dataset(capsys, tmp_path):
    code, _, err = run(capsys, "run", "--dataset", "mnist", "--results-dir", str(tmp_path))
    assert_one_line_error(code, err, "unknown dataset 'mnist'", "tiny-imagenet")


def test_missing_dataset_says_where_it_looked(capsys, tmp_path):
    code, _, err = run(capsys, "run", "--dataset", "tiny-imagenet", "--data-dir", str(tmp_path / "empty"),
                       "--profile", "smoke", "--results-dir", str(tmp_path / "r"))
    assert_one_line_error(code, err, str(tmp_path / "empty"), "--data-dir", "--dataset synthetic")
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("done"))


def test_corrupt_archive(capsys, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "tiny-imagenet-200.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    code, _, err = run(capsys, "run", "--dataset", "tiny-imagenet", "--data-dir", str(data), "--profile", "smoke",
                       "--results-dir", str(tmp_path / "r"))
    assert_one_line_error(code, err, "zip")


def test_truncated_archive(capsys, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", "n0001\n" * 10)
        zf.writestr("tiny-imagenet-200/words.txt", "n0001\tthing\n")
    raw = good.read_bytes()
    (data / "tiny-imagenet-200.zip").write_bytes(raw[: len(raw) // 2])
    code, _, err = run(capsys, "run", "--dataset", "tiny-imagenet", "--data-dir", str(data), "--profile", "smoke",
                       "--results-dir", str(tmp_path / "r"))
    assert_one_line_error(code, err)


def test_offline_auto_without_data(capsys, tmp_path, monkeypatch):
    import tasks.datasets as ds

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", offline)
    code, _, err = run(capsys, "run", "--data-dir", str(tmp_path / "nothing"), "--profile", "smoke",
                       "--results-dir", str(tmp_path / "r"))
    assert_one_line_error(code, err, "--data-dir", "BENCH_DATA_DIR", "--dataset synthetic")
    assert ds.resolve_auto(tmp_path / "nothing") == "cifar100"


def test_more_shots_than_images(capsys, tmp_path):
    prof = tmp_path / "p.toml"
    text = (Path(__file__).resolve().parents[1] / "bench" / "profiles" / "smoke.toml").read_text()
    prof.write_text(text.replace("shots = [10, 20]", "shots = [10, 500]"))
    code, _, err = run(capsys, "run", "--dataset", "synthetic", "--profile", str(prof), "--results-dir", str(tmp_path / "r"))
    assert_one_line_error(code, err, "500 shots", "lower")
    assert not (tmp_path / "r" / "cells").exists()


@pytest.mark.parametrize("flag", ["--seeds", "--tasks", "--image-size", "--workers"])
@pytest.mark.parametrize("value", ["0", "-3", "abc"])
def test_non_positive_numbers(capsys, tmp_path, flag, value):
    code, _, err = run(capsys, "run", "--dataset", "synthetic", flag, value, "--results-dir", str(tmp_path))
    assert code == 2
    assert "positive integer" in err and len(err.strip().splitlines()) == 1


def test_unwritable_results_dir(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run(capsys, "run", "--method", "scratch", "--dataset", "synthetic", "--profile", "smoke",
                       "--results-dir", str(blocker / "results"))
    assert_one_line_error(code, err, "not writable", "--results-dir")


def test_dry_run_prints_grid_and_estimate_and_writes_nothing(capsys, tmp_path):
    code, out, _ = run(capsys, "run", "--method", "all", "--dataset", "synthetic", "--profile", "paper",
                       "--results-dir", str(tmp_path / "r"), "--dry-run")
    assert code == 0
    assert "table3" in out and "estimated wall time" in out and "basis: " in out
    assert not (tmp_path / "r").exists()


def test_report_without_results(capsys, tmp_path):
    code, _, err = run(capsys, "report", "--results-dir", str(tmp_path / "none"))
    assert_one_line_error(code, err, "run `python -m bench run` first")


@pytest.mark.parametrize("value", ["-1", "abc", "1.5"])
def test_bad_artifact_seed(capsys, tmp_path, value):
    code, _, err = run(capsys, "run", "--dataset", "synthetic", "--artifact-seed", value, "--results-dir", str(tmp_path))
    assert code == 2
    assert "--artifact-seed must be an integer >= 0 or 'cell'" in err and len(err.strip().splitlines()) == 1


def test_artifact_seed_trains_other_base_models_and_is_recorded(capsys, tmp_path):
    """Base-training variance is measured by re-running with another artifact seed: the base model must
    really be trained again (another cached artifact), and the seed recorded with the cells and the run."""
    import json

    dirs = {}
    for seed in ("0", "1"):
        d = tmp_path / f"r{seed}"
        code, _, err = run(capsys, "run", "--method", "protonet", "--experiment", "table3", "--dataset", "synthetic",
                           "--profile", "smoke", "--seeds", "1", "--tasks", "2", "--artifact-seed", seed,
                           "--results-dir", str(d), "--no-report")
        assert code == 0, err
        dirs[seed] = d
        cells = [json.loads(p.read_text()) for p in (d / "cells").glob("*/*/cell.json")]
        assert cells and all(c["profile"]["episodes"]["artifact_seed"] == int(seed) for c in cells)
        assert json.loads((d / "meta" / "runs.jsonl").read_text().splitlines()[-1])["artifact_seed"] == int(seed)
    names = [{p.name for p in (dirs[s] / "artifacts").iterdir() if p.name.startswith("protonet-")} for s in dirs]
    assert names[0] and names[1] and not names[0] & names[1]


def test_a_logged_run_prints_each_finished_cell_with_its_elapsed_time(capsys, tmp_path):
    """In a log (not a TTY) every finished cell is one line with the run's elapsed time beside the ETA,
    so a reader can check afterwards how well the ETA held."""
    import re

    code, _, err = run(capsys, "run", "--method", "random-ncm", "--experiment", "table3", "--profile", "smoke",
                       "--dataset", "synthetic", "--results-dir", str(tmp_path / "r"), "--no-report")
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if ln.startswith("[")]
    assert lines and all(re.match(r"\[\d+/\d+\] \d+:\d\d elapsed, \d+px table3/random-ncm", ln) for ln in lines), lines
