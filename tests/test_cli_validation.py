"""Every wrong argument is one line and exit 2 *before anything is written*.

Each case checks the message (with the allowed range where there is one) and that the results
directory does not exist afterwards; the data cases also check that nothing was downloaded.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import one_line_error, run

SMOKE = Path(__file__).resolve().parents[1] / "bench" / "profiles" / "smoke.toml"




@pytest.fixture
def no_download(monkeypatch):
    """Any download attempt fails the test (the machine is offline anyway; this makes it loud)."""
    def forbidden(*a, **k):
        raise AssertionError("a download was started")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", forbidden)


@pytest.mark.parametrize("size", ["7", "10000", "32,300"])
def test_image_size_out_of_range(capsys, tmp_path, size):
    r = tmp_path / "r"
    code, _, err = run(capsys, "run", "--method", "scratch", "--dataset", "synthetic", "--profile", "smoke",
                       "--image-size", size, "--results-dir", str(r))
    one_line_error(code, err, "--image-size", "out of range", "16 to 256 px")
    assert not r.exists()


def test_image_size_too_small_for_learngene(capsys, tmp_path):
    r = tmp_path / "r"
    code, _, err = run(capsys, "run", "--method", "learngene", "--dataset", "synthetic", "--profile", "smoke",
                       "--image-size", "16", "--results-dir", str(r))
    one_line_error(code, err, "--image-size 16", "learngene", "32 to 256 px")
    assert not r.exists()


def test_image_size_16_is_fine_without_learngene(capsys, tmp_path):
    code, out, err = run(capsys, "run", "--method", "scratch", "--dataset", "synthetic", "--profile", "smoke",
                         "--image-size", "16", "--results-dir", str(tmp_path / "r"), "--dry-run")
    assert code == 0, err
    assert "16 px" in out


def test_device_cuda_without_gpu(capsys, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = tmp_path / "r"
    code, _, err = run(capsys, "run", "--method", "scratch", "--dataset", "synthetic", "--profile", "smoke",
                       "--device", "cuda", "--results-dir", str(r))
    one_line_error(code, err, "--device cuda", "no CUDA GPU", "--device cpu")
    assert not r.exists()


def test_abbreviated_flags_are_rejected(capsys, tmp_path):
    r = tmp_path / "r"
    code, _, err = run(capsys, "run", "--meth", "scratch", "--prof", "smoke", "--dataset", "synthetic",
                       "--results-dir", str(r))
    one_line_error(code, err, "unrecognized arguments", "--meth")
    assert not r.exists()


def test_dry_run_with_typo_data_dir_neither_downloads_nor_writes(capsys, tmp_path, no_download):
    r = tmp_path / "r"
    code, _, err = run(capsys, "run", "--method", "scratch", "--profile", "smoke", "--dry-run",
                       "--data-dir", str(tmp_path / "datta"), "--results-dir", str(r))
    one_line_error(code, err, str(tmp_path / "datta"), "does not exist", "--data-dir")
    assert not r.exists() and not (tmp_path / "datta").exists()


def test_dry_run_on_empty_data_dir_does_not_download(capsys, tmp_path, no_download):
    data = tmp_path / "data"
    data.mkdir()
    code, _, err = run(capsys, "run", "--method", "scratch", "--profile", "smoke", "--dry-run",
                       "--data-dir", str(data), "--results-dir", str(tmp_path / "r"))
    one_line_error(code, err, "--dry-run never downloads", str(data))
    assert list(data.iterdir()) == [] and not (tmp_path / "r").exists()


def test_auto_downloads_only_into_an_empty_dir_and_says_so_first(capsys, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    calls = []

    def offline(url, root, **k):
        calls.append(root)
        raise OSError("network is unreachable")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", offline)
    code, _, err = run(capsys, "run", "--method", "scratch", "--profile", "smoke", "--data-dir", str(data),
                       "--results-dir", str(tmp_path / "r"))
    lines = err.strip().splitlines()
    assert code == 2 and calls == [str(data)]
    assert lines[0].startswith("note: no dataset in") and "downloading CIFAR-100" in lines[0]
    assert lines[-1].startswith("error: could not download CIFAR-100")
    assert not (tmp_path / "r").exists()


def test_auto_never_downloads_into_a_non_empty_dir(capsys, tmp_path, no_download):
    data = tmp_path / "data"
    data.mkdir()
    (data / "holiday.txt").write_text("not a dataset")
    code, _, err = run(capsys, "run", "--method", "scratch", "--profile", "smoke", "--data-dir", str(data),
                       "--results-dir", str(tmp_path / "r"))
    one_line_error(code, err, "no dataset found in", "not empty", "--dataset synthetic")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("dataset", ["auto", "tiny-imagenet", "cifar100", "imagefolder"])
def test_data_dir_that_is_a_file(capsys, tmp_path, dataset, no_download):
    f = tmp_path / "tiny-imagenet-100.zip"
    f.write_bytes(b"PK\x03\x04")
    code, _, err = run(capsys, "run", "--method", "scratch", "--profile", "smoke", "--dataset", dataset,
                       "--data-dir", str(f), "--results-dir", str(tmp_path / "r"))
    one_line_error(code, err, str(f), "is a file, not a folder")
    assert not (tmp_path / "r").exists()


def test_imagefolder_with_a_non_image_names_the_file(capsys, tmp_path, monkeypatch):
    from conftest import write_image

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "imgs"
    for c in range(3):
        for i in range(4):
            write_image(root / f"class{c}" / f"{i}.png", (40 * c, 10 * i, 100))
    bad = root / "class1" / "notes.jpg"
    bad.write_text("this is a text file with an image suffix")
    code, _, err = run(capsys, "run", "--method", "scratch", "--profile", "smoke", "--dataset", "imagefolder",
                       "--data-dir", str(root), "--results-dir", str(tmp_path / "r"))
    line = one_line_error(code, err, str(bad), "not a readable image")
    assert "BytesIO" not in line
    assert not (tmp_path / "r").exists()


def test_results_dir_that_is_a_file(capsys, tmp_path):
    f = tmp_path / "results"
    f.write_text("")
    code, _, err = run(capsys, "run", "--method", "scratch", "--dataset", "synthetic", "--profile", "smoke",
                       "--results-dir", str(f))
    one_line_error(code, err, "is a file")


def test_bad_profile_path(capsys, tmp_path):
    code, _, err = run(capsys, "run", "--method", "scratch", "--dataset", "synthetic", "--profile",
                       str(tmp_path / "nope.toml"), "--results-dir", str(tmp_path / "r"))
    one_line_error(code, err, "nope.toml")
    assert not (tmp_path / "r").exists()


def test_failure_after_loading_the_data_writes_nothing(capsys, tmp_path):
    """Too many shots is found only once the data is loaded: still before the results dir exists."""
    prof = tmp_path / "p.toml"
    prof.write_text(SMOKE.read_text().replace("shots = [10, 20]", "shots = [10, 500]"))
    r = tmp_path / "r"
    code, _, err = run(capsys, "run", "--dataset", "synthetic", "--profile", str(prof), "--results-dir", str(r))
    one_line_error(code, err, "500 shots")
    assert not r.exists()


def test_duplicate_methods_are_merged_with_a_note(capsys, tmp_path):
    args = ["run", "--experiment", "table3", "--dataset", "synthetic", "--profile", "smoke", "--dry-run",
            "--results-dir", str(tmp_path / "r")]
    code, once, _ = run(capsys, *args, "--method", "scratch")
    assert code == 0
    code, twice, err = run(capsys, *args, "--method", "scratch,scratch", "--experiment", "table3,table3")
    assert code == 0
    assert "note: --method lists scratch more than once; each runs once" in err
    assert "note: --experiment lists table3 more than once" in err
    assert twice == once
