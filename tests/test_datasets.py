"""Loaders (tiny-imagenet zip/folder/real, cifar100 pickles, mini-imagenet, imagefolder, synthetic),
the decode cache, and the one-line `DataError`s for bad input."""
from __future__ import annotations

import os
import shutil
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    PALETTE,
    build_tiny_set,
    cifar_pixels,
    write_cifar100,
    write_image,
    write_tiny_imagenet,
    zip_folder,
)

import tasks.datasets as ds
from tasks import DataError
from tasks.datasets import load_dataset, make_synthetic
from tasks.imageset import TEST_POOL, TRAIN_POOL

DEFAULT_NAMES = ["auto", "tiny-imagenet", "cifar100", "mini-imagenet", "imagefolder", "synthetic"]


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg, f"error message is not one line: {msg!r}"
    return msg


def mean_colours(images: torch.Tensor) -> torch.Tensor:
    return images.float().mean(dim=(2, 3))


def assert_colours(data, colours, tol=12.0):
    """Every image's mean colour is its class's colour (labels map to the right images)."""
    expected = torch.tensor([colours[int(lab)] for lab in data.labels], dtype=torch.float32)
    err = (mean_colours(data.images) - expected).abs().amax(dim=1)
    bad = torch.nonzero(err > tol).flatten().tolist()
    assert not bad, f"images {bad[:5]} do not have their class colour (max err {err.max():.1f})"


# --------------------------------------------------------------------------- tiny-imagenet


@pytest.fixture
def tiny_folder(tmp_path) -> tuple[Path, dict]:
    root = tmp_path / "data" / "tiny-imagenet-4"
    return root, write_tiny_imagenet(root, n_classes=4, n_train=5, n_val=3, size=64)


def _check_tiny(data, info, size):
    wnids = info["wnids"]
    assert data.name == "tiny-imagenet"
    assert data.class_names == wnids
    assert data.images.dtype == torch.uint8 and tuple(data.images.shape) == (4 * 5 + 4 * 3, 3, size, size)
    assert data.counts(TRAIN_POOL).tolist() == [5] * 4
    assert data.counts(TEST_POOL).tolist() == [3] * 4
    # the train pool comes first, class by class, in file order; then val in annotation order
    assert data.pool.tolist() == [TRAIN_POOL] * 20 + [TEST_POOL] * 12
    assert data.labels[:20].tolist() == [c for c in range(4) for _ in range(5)]
    assert data.labels[20:].tolist() == [wnids.index(w) for w in info["val"].values()]
    assert data.extra["words"] == [f"thing {i}, object {i}" for i in range(4)]
    grey = data.images[0].float()  # a greyscale JPEG becomes RGB with equal channels
    assert (grey - 77).abs().max() <= 3
    colours = list(info["colours"])
    keep = torch.arange(len(data.labels)) != 0
    sub = type(data)(name=data.name, images=data.images[keep], labels=data.labels[keep],
                     class_names=data.class_names, pool=data.pool[keep])
    assert_colours(sub, colours)


def test_tiny_imagenet_folder_official_layout(tiny_folder, cache_dir):
    root, info = tiny_folder
    data = load_dataset("tiny-imagenet", data_dir=root)
    _check_tiny(data, info, 64)
    # the parent folder holding `tiny-imagenet-4/` is found too, and --image-size resizes
    small = load_dataset("tiny-imagenet", data_dir=root.parent, image_size=32)
    _check_tiny(small, info, 32)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_tiny_imagenet_zip_matches_folder(tiny_folder, tmp_path, cache_dir, compression):
    root, info = tiny_folder
    zdir = tmp_path / "zipped"
    zdir.mkdir()
    zpath = zip_folder(root, zdir / "tiny-imagenet-4.zip", "tiny-imagenet-4", compression)
    from_zip = load_dataset("tiny-imagenet", data_dir=zdir, image_size=32)
    _check_tiny(from_zip, info, 32)
    from_folder = load_dataset("tiny-imagenet", data_dir=root, image_size=32)
    assert torch.equal(from_zip.images, from_folder.images)
    assert torch.equal(from_zip.labels, from_folder.labels) and torch.equal(from_zip.pool, from_folder.pool)
    assert from_zip.source == str(zpath)
    assert ds.resolve_auto(zdir) == "tiny-imagenet"
    assert torch.equal(load_dataset("auto", data_dir=zdir, image_size=32).images, from_zip.images)


@pytest.mark.realdata
def test_real_tiny_imagenet_100(real_data_dir):
    """The shared tiny-imagenet-100.zip: 100 classes, 500 train / 50 val each, 64 px, resized to 32.
    Index 0 and the first val image are checked against a fresh decode from the zip."""
    from PIL import Image

    data = load_dataset("tiny-imagenet", data_dir=real_data_dir, image_size=32)
    zpath = real_data_dir / "tiny-imagenet-100.zip"
    assert data.source == str(zpath)
    assert data.num_classes == 100 and tuple(data.images.shape) == (55000, 3, 32, 32)
    assert data.counts(TRAIN_POOL).tolist() == [500] * 100
    assert data.counts(TEST_POOL).tolist() == [50] * 100
    with zipfile.ZipFile(zpath) as zf:
        top = "tiny-imagenet-100/"
        wnids = zf.read(top + "wnids.txt").decode().split()
        assert data.class_names == wnids
        first_train = sorted(n for n in zf.namelist() if n.startswith(f"{top}train/{wnids[0]}/images/"))[0]
        first_val, val_wnid = zf.read(top + "val/val_annotations.txt").decode().splitlines()[0].split("\t")[:2]
        for idx, member, label in ((0, first_train, 0), (50000, f"{top}val/images/{first_val}", wnids.index(val_wnid))):
            with Image.open(zf.open(member)) as im:
                assert im.size == (64, 64)  # native size
                arr = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)
            assert int(data.labels[idx]) == label
            assert torch.equal(data.images[idx], ds.resize_tensor(arr[None], 32)[0])
    assert data.pool[:50000].eq(TRAIN_POOL).all() and data.pool[50000:].eq(TEST_POOL).all()


# --------------------------------------------------------------------------- CIFAR-100


CIFAR_NAMES = ["apple", "aquarium_fish", "baby", "bear", "beaver"]
TRAIN_LABELS = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 2, 2]
TEST_LABELS = [4, 3, 2, 1, 0]


def test_cifar100_official_pickles(tmp_path, cache_dir):
    write_cifar100(tmp_path, TRAIN_LABELS, TEST_LABELS, CIFAR_NAMES)
    data = load_dataset("cifar100", data_dir=tmp_path, download=False)
    n_tr, n_te = len(TRAIN_LABELS), len(TEST_LABELS)
    assert data.name == "cifar100" and data.class_names == CIFAR_NAMES
    assert tuple(data.images.shape) == (n_tr + n_te, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.labels.tolist() == TRAIN_LABELS + TEST_LABELS
    assert data.pool.tolist() == [TRAIN_POOL] * n_tr + [TEST_POOL] * n_te
    x = torch.arange(32)
    for i in range(n_tr + n_te):  # planes R, G, B; rows are y, columns are x
        assert torch.equal(data.images[i, 0], (x * 8).expand(32, 32).to(torch.uint8))
        assert torch.equal(data.images[i, 1], (x * 8)[:, None].expand(32, 32).to(torch.uint8))
        assert data.images[i, 2].eq(i if i < n_tr else 100 + i - n_tr).all()
    raw = np.concatenate([cifar_pixels(n_tr, 0), cifar_pixels(n_te, 100)]).reshape(-1, 3, 32, 32)
    assert torch.equal(data.images, torch.from_numpy(raw))
    # the cifar-100-python folder itself works as --data-dir; resizing keeps labels and pools
    small = load_dataset("cifar100", data_dir=tmp_path / "cifar-100-python", image_size=16, download=False)
    assert tuple(small.images.shape) == (n_tr + n_te, 3, 16, 16)
    assert small.labels.tolist() == data.labels.tolist() and torch.equal(small.pool, data.pool)
    assert ds.resolve_auto(tmp_path) == "cifar100"


def test_cifar100_source_same_on_cache_hit(tmp_path, cache_dir):
    write_cifar100(tmp_path, TRAIN_LABELS, TEST_LABELS, CIFAR_NAMES)
    first = load_dataset("cifar100", data_dir=tmp_path, download=False)
    second = load_dataset("cifar100", data_dir=tmp_path, download=False)
    assert first.source == second.source == str(tmp_path / "cifar-100-python")


def test_cifar100_cache_key_covers_test_file(tmp_path, cache_dir):
    write_cifar100(tmp_path, TRAIN_LABELS, TEST_LABELS, CIFAR_NAMES)
    load_dataset("cifar100", data_dir=tmp_path, download=False)
    train = (tmp_path / "cifar-100-python" / "train").read_bytes()
    write_cifar100(tmp_path, TRAIN_LABELS, [0, 0], CIFAR_NAMES)
    (tmp_path / "cifar-100-python" / "train").write_bytes(train)  # only test + meta changed
    data = load_dataset("cifar100", data_dir=tmp_path, download=False)
    assert data.labels.tolist() == TRAIN_LABELS + [0, 0]


def test_cifar100_offline_download_failure(tmp_path, cache_dir, monkeypatch):
    import torchvision.datasets.utils as tvu

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvu, "download_and_extract_archive", offline)
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    for name in ("cifar100", "auto"):
        with pytest.raises(DataError) as exc:
            load_dataset(name, data_dir=empty)
        msg = one_line(exc)
        assert "offline" in msg and "--data-dir" in msg and "BENCH_DATA_DIR" in msg and "--dataset synthetic" in msg
        assert str(empty) in msg
    absent = tmp_path / "not" / "there"
    with pytest.raises(DataError) as exc:
        load_dataset("auto", data_dir=absent)
    assert "offline" in one_line(exc)
    assert not (tmp_path / "not").exists(), "a failed download leaves no folders behind"


def test_cifar100_missing_without_download(tmp_path, cache_dir):
    with pytest.raises(DataError) as exc:
        load_dataset("cifar100", data_dir=tmp_path, download=False)
    msg = one_line(exc)
    assert str(tmp_path) in msg and "--data-dir" in msg and "BENCH_DATA_DIR" in msg and "--dataset synthetic" in msg


def test_cifar100_corrupt_pickle(tmp_path, cache_dir):
    folder = write_cifar100(tmp_path, TRAIN_LABELS, TEST_LABELS, CIFAR_NAMES)
    raw = (folder / "train").read_bytes()
    (folder / "train").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError) as exc:
        load_dataset("cifar100", data_dir=tmp_path, download=False)
    assert "train" in one_line(exc)


# --------------------------------------------------------------------------- mini-imagenet


MINI_WNIDS = ["n01532829", "n01558993", "n01704323"]
MAGENTA = (255, 0, 255)


def _write_mini(root: Path, per_class: int = 52) -> None:
    """Non-square 20x12 JPEGs: class colour in the centre, magenta bands left and right that a
    centre crop removes."""
    for c, w in enumerate(MINI_WNIDS):
        for i in range(per_class):
            write_image(root / w / f"{w}_{i:04d}.JPEG", PALETTE[c], (20, 12), border=(MAGENTA, 4))


def test_mini_imagenet_folders(tmp_path, cache_dir):
    _write_mini(tmp_path / "mini-imagenet")
    data = load_dataset("mini-imagenet", data_dir=tmp_path)
    assert data.name == "mini-imagenet" and data.class_names == MINI_WNIDS
    assert tuple(data.images.shape) == (3 * 52, 3, 84, 84)
    assert data.counts(TRAIN_POOL).tolist() == [2] * 3 and data.counts(TEST_POOL).tolist() == [50] * 3
    assert data.labels.tolist() == [c for c in range(3) for _ in range(52)]
    # held-out test images are the last 50 of each class (sorted file order), deterministically
    assert data.pool.tolist() == ([TRAIN_POOL] * 2 + [TEST_POOL] * 50) * 3
    assert_colours(data, PALETTE[:3], tol=15)  # centre-cropped: no magenta band survives


def test_mini_imagenet_data_dir_is_the_folder_itself(tmp_path, cache_dir):
    _write_mini(tmp_path / "my-mini")
    data = load_dataset("mini-imagenet", data_dir=tmp_path / "my-mini", image_size=32)
    assert data.class_names == MINI_WNIDS and data.image_size == 32


def test_mini_imagenet_split_folders(tmp_path, cache_dir):
    _write_mini(tmp_path / "mini-imagenet" / "train")
    (tmp_path / "mini-imagenet" / "test").mkdir()
    shutil.move(tmp_path / "mini-imagenet" / "train" / MINI_WNIDS[2], tmp_path / "mini-imagenet" / "test")
    data = load_dataset("mini-imagenet", data_dir=tmp_path)
    assert sorted(data.class_names) == MINI_WNIDS and data.num_classes == 3


def test_mini_imagenet_too_few_images(tmp_path, cache_dir):
    _write_mini(tmp_path / "mini-imagenet", per_class=50)
    with pytest.raises(DataError) as exc:
        load_dataset("mini-imagenet", data_dir=tmp_path)
    assert "50" in one_line(exc)


# --------------------------------------------------------------------------- imagefolder


def test_imagefolder_flat(tmp_path, cache_dir):
    names = ["cat", "dog", "eel"]
    for c, n in enumerate(names):
        for i in range(5):
            write_image(tmp_path / n / f"{i}.png", PALETTE[c], (24, 24))
    (tmp_path / ".hidden").mkdir()
    write_image(tmp_path / ".hidden" / "x.png", MAGENTA, (24, 24))
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    data = load_dataset("imagefolder", data_dir=tmp_path, image_size=16)
    assert data.class_names == names and tuple(data.images.shape) == (15, 3, 16, 16)
    assert data.labels.tolist() == [c for c in range(3) for _ in range(5)]
    assert data.pool.tolist() == ([TRAIN_POOL] * 4 + [TEST_POOL]) * 3  # last 20% of each class
    expected = torch.tensor([PALETTE[int(lab)] for lab in data.labels], dtype=torch.uint8)
    assert torch.equal(data.images, expected[:, :, None, None].expand(15, 3, 16, 16))  # PNG: exact


def test_imagefolder_train_test_subfolders(tmp_path, cache_dir):
    names = ["ant", "bee"]
    for c, n in enumerate(names):
        for i in range(4):
            write_image(tmp_path / "train" / n / f"{i}.jpg", PALETTE[c], (16, 16))
        for i in range(c + 1):
            write_image(tmp_path / "test" / n / f"{i}.png", PALETTE[c], (16, 16))
    data = load_dataset("imagefolder", data_dir=tmp_path)
    assert data.class_names == names and data.image_size == 16
    assert data.counts(TRAIN_POOL).tolist() == [4, 4] and data.counts(TEST_POOL).tolist() == [1, 2]
    assert_colours(data, PALETTE[:2])


def test_imagefolder_train_only(tmp_path, cache_dir):
    for c, n in enumerate(["ant", "bee"]):
        for i in range(5):
            write_image(tmp_path / "train" / n / f"{i}.png", PALETTE[c], (16, 16))
    data = load_dataset("imagefolder", data_dir=tmp_path)
    assert data.class_names == ["ant", "bee"]
    assert data.counts(TRAIN_POOL).tolist() == [4, 4] and data.counts(TEST_POOL).tolist() == [1, 1]


def test_imagefolder_mixed_sizes(tmp_path, cache_dir):
    write_image(tmp_path / "a" / "0.png", PALETTE[0], (16, 16))
    write_image(tmp_path / "a" / "1.png", PALETTE[0], (20, 20))
    write_image(tmp_path / "b" / "0.png", PALETTE[1], (30, 20))
    with pytest.raises(DataError) as exc:
        load_dataset("imagefolder", data_dir=tmp_path)
    assert "--image-size" in one_line(exc)
    data = load_dataset("imagefolder", data_dir=tmp_path, image_size=8)
    assert tuple(data.images.shape) == (3, 3, 8, 8)
    assert_colours(data, PALETTE[:2], tol=1)


def test_imagefolder_errors(tmp_path, cache_dir):
    with pytest.raises(DataError) as exc:
        load_dataset("imagefolder", data_dir=tmp_path / "absent")
    msg = one_line(exc)
    assert str(tmp_path / "absent") in msg and "--data-dir" in msg
    with pytest.raises(DataError) as exc:
        load_dataset("imagefolder", data_dir=tmp_path)  # exists, but no class folders
    one_line(exc)
    write_image(tmp_path / "a" / "0.png", PALETTE[0], (8, 8))
    (tmp_path / "a" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(DataError) as exc:
        load_dataset("imagefolder", data_dir=tmp_path)
    one_line(exc)


# --------------------------------------------------------------------------- synthetic


def test_synthetic_deterministic_and_shaped():
    a = make_synthetic(num_classes=10, train_per_class=6, test_per_class=3, image_size=16, seed=3)
    b = make_synthetic(num_classes=10, train_per_class=6, test_per_class=3, image_size=16, seed=3)
    c = make_synthetic(num_classes=10, train_per_class=6, test_per_class=3, image_size=16, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and torch.equal(a.pool, b.pool)
    assert not torch.equal(a.images, c.images)
    assert a.synthetic and tuple(a.images.shape) == (90, 3, 16, 16) and a.images.dtype == torch.uint8
    assert a.counts(TRAIN_POOL).tolist() == [6] * 10 and a.counts(TEST_POOL).tolist() == [3] * 10
    assert len(set(a.class_names)) == 10
    d = load_dataset("synthetic", image_size=24, synthetic_options={"num_classes": 20})
    assert d.synthetic and d.num_classes == 20 and d.image_size == 24


def test_synthetic_is_learnable():
    """Nearest class mean on raw pixels: train-pool means, test-pool accuracy, far above 1/C."""
    data = make_synthetic(num_classes=50, train_per_class=30, test_per_class=10, image_size=32, seed=0)
    x = data.images.float().flatten(1)
    tr, te = data.pool == TRAIN_POOL, data.pool == TEST_POOL
    means = torch.stack([x[tr & (data.labels == c)].mean(0) for c in range(data.num_classes)])
    pred = torch.cdist(x[te], means).argmin(1)
    acc = (pred == data.labels[te]).float().mean().item()
    assert acc > 10 / data.num_classes, f"nearest-class-mean accuracy {acc:.3f} is near chance"
    # and not trivial: the images of one class are not identical copies
    assert x[tr & (data.labels == 0)].std(0).mean() > 5


# --------------------------------------------------------------------------- the decode cache


def test_second_load_does_not_decode(tiny_folder, cache_dir, monkeypatch):
    root, _ = tiny_folder
    first = load_dataset("tiny-imagenet", data_dir=root, image_size=32)
    files = list(cache_dir.rglob("*.pt"))
    assert len(files) == 1
    assert not any(p.suffix == ".pt" for p in root.rglob("*"))  # never written beside the data

    def no_decode(*a, **k):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(ds, "decode_images", no_decode)
    second = load_dataset("tiny-imagenet", data_dir=root, image_size=32)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert torch.equal(first.pool, second.pool) and first.class_names == second.class_names
    assert first.extra == second.extra and first.source == second.source
    with pytest.raises(AssertionError):  # a different size is a different cache entry
        load_dataset("tiny-imagenet", data_dir=root, image_size=16)


def test_cache_key_changes_with_zip_content(tiny_folder, tmp_path, cache_dir):
    root, info = tiny_folder
    zdir = tmp_path / "z"
    zdir.mkdir()
    zpath = zip_folder(root, zdir / "tiny-imagenet-4.zip", "tiny-imagenet-4")
    before = load_dataset("tiny-imagenet", data_dir=zdir, image_size=32)
    w = info["wnids"][1]
    write_image(root / "train" / w / "images" / f"{w}_99.JPEG", PALETTE[1], (64, 64))
    zip_folder(root, zpath, "tiny-imagenet-4")
    after = load_dataset("tiny-imagenet", data_dir=zdir, image_size=32)
    assert len(after.labels) == len(before.labels) + 1
    assert after.counts(TRAIN_POOL).tolist() == [5, 6, 5, 5]
    assert len(list(cache_dir.rglob("*.pt"))) == 2


def test_cache_key_changes_when_a_folder_file_is_replaced(tmp_path, cache_dir):
    for c, n in enumerate(["a", "b"]):
        for i in range(3):
            write_image(tmp_path / "data" / n / f"{i}.png", PALETTE[c], (8, 8))
    before = load_dataset("imagefolder", data_dir=tmp_path / "data")
    p = tmp_path / "data" / "a" / "0.png"
    st = p.stat()
    write_image(p, PALETTE[2], (8, 8))  # same size on disk, new content, within the same second
    assert p.stat().st_size == st.st_size
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    after = load_dataset("imagefolder", data_dir=tmp_path / "data")
    assert before.images[0, :, 0, 0].tolist() == list(PALETTE[0])
    assert after.images[0, :, 0, 0].tolist() == list(PALETTE[2])


def test_truncated_cache_file_is_rebuilt(tiny_folder, cache_dir, monkeypatch):
    root, _ = tiny_folder
    first = load_dataset("tiny-imagenet", data_dir=root, image_size=32)
    (cache_file,) = cache_dir.rglob("*.pt")
    raw = cache_file.read_bytes()
    cache_file.write_bytes(raw[: len(raw) // 2])
    calls = []
    real_decode = ds.decode_images
    monkeypatch.setattr(ds, "decode_images", lambda *a, **k: calls.append(1) or real_decode(*a, **k))
    again = load_dataset("tiny-imagenet", data_dir=root, image_size=32)
    assert calls == [1]
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    assert cache_file.stat().st_size == len(raw)
    third = load_dataset("tiny-imagenet", data_dir=root, image_size=32)  # the rebuilt file is used
    assert calls == [1] and torch.equal(third.images, first.images)


def test_unwritable_cache_does_not_stop_a_load(tiny_folder, tmp_path, monkeypatch):
    root, _ = tiny_folder
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("BENCH_CACHE_DIR", str(blocker))
    with pytest.warns(UserWarning, match="BENCH_CACHE_DIR"):
        data = load_dataset("tiny-imagenet", data_dir=root, image_size=32)
    assert len(data.labels) == 32


# --------------------------------------------------------------------------- bad input


def test_unknown_dataset_lists_valid_names(tmp_path):
    with pytest.raises(DataError) as exc:
        load_dataset("imagenet-21k", data_dir=tmp_path)
    msg = one_line(exc)
    assert "imagenet-21k" in msg
    for name in DEFAULT_NAMES:
        assert name in msg
    assert ds.dataset_names() == DEFAULT_NAMES


@pytest.mark.parametrize("name", ["tiny-imagenet", "mini-imagenet"])
def test_missing_dataset_says_where_and_how(tmp_path, name):
    with pytest.raises(DataError) as exc:
        load_dataset(name, data_dir=tmp_path)
    msg = one_line(exc)
    assert str(tmp_path) in msg
    assert "--data-dir" in msg and "BENCH_DATA_DIR" in msg and "--dataset synthetic" in msg


def test_missing_data_dir_uses_env(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "from-env"))
    assert ds.default_data_dir() == tmp_path / "from-env"
    with pytest.raises(DataError) as exc:
        load_dataset("tiny-imagenet")
    assert str(tmp_path / "from-env") in one_line(exc)


@pytest.mark.parametrize("size", [0, -32])
def test_non_positive_image_size(tmp_path, size):
    with pytest.raises(DataError) as exc:
        load_dataset("synthetic", data_dir=tmp_path, image_size=size)
    assert "image-size" in one_line(exc)


def _corrupt(zpath: Path, how: str) -> None:
    raw = bytearray(zpath.read_bytes())
    if how == "truncated":
        zpath.write_bytes(bytes(raw[: len(raw) // 2]))
    elif how == "garbage":
        zpath.write_bytes(b"this is not a zip file at all" * 10)
    else:  # flip bytes in the middle of the first member's data, keep the central directory intact
        with zipfile.ZipFile(zpath) as zf:
            info = next(i for i in zf.infolist() if i.filename.endswith(".JPEG"))
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 40
        for k in range(start, start + 64):
            raw[k] ^= 0x5A
        zpath.write_bytes(bytes(raw))


@pytest.mark.parametrize("how,compression", [("truncated", zipfile.ZIP_STORED), ("garbage", zipfile.ZIP_STORED),
                                             ("flipped", zipfile.ZIP_STORED), ("flipped", zipfile.ZIP_DEFLATED)])
def test_corrupt_or_truncated_zip(tiny_folder, tmp_path, cache_dir, how, compression):
    root, _ = tiny_folder
    zdir = tmp_path / "z"
    zdir.mkdir()
    zpath = zip_folder(root, zdir / "tiny-imagenet-4.zip", "tiny-imagenet-4", compression)
    _corrupt(zpath, how)
    with pytest.raises(DataError) as exc:
        load_dataset("tiny-imagenet", data_dir=zdir)
    msg = one_line(exc)
    assert str(zpath) in msg
    assert not list(cache_dir.rglob("*.pt")), "nothing is cached from a corrupt archive"


def test_corrupt_member_of_a_large_zip_is_a_data_error(tiny_folder, tmp_path, cache_dir, monkeypatch):
    """Big archives skip the up-front CRC scan; a bad member must still be a DataError when read."""
    root, _ = tiny_folder
    zpath = zip_folder(root, tmp_path / "tiny-imagenet-4.zip", "tiny-imagenet-4", zipfile.ZIP_DEFLATED)
    _corrupt(zpath, "flipped")
    monkeypatch.setattr(zipfile.ZipFile, "testzip", lambda self: None)
    with pytest.raises(DataError) as exc:
        ds.load_tiny_imagenet(zpath, 32)
    one_line(exc)


def test_zip_without_tiny_imagenet_layout(tmp_path, cache_dir):
    zpath = tmp_path / "tiny-imagenet-x.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(DataError) as exc:
        load_dataset("tiny-imagenet", data_dir=tmp_path)
    assert "wnids.txt" in one_line(exc)


def test_tiny_set_fixture_is_interleaved():
    data = build_tiny_set()
    idx = data.indices(0, TEST_POOL)
    assert (idx[1:] - idx[:-1]).min() > 1  # the test pool of a class is not one contiguous block


# --------------------------------------------------------------------------- CIFAR-100: restricted unpickler


class _RunsCode:
    """Unpickling this calls os.system: what a hostile file in a shared data directory would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_cifar100_pickle_that_would_run_code_is_refused(tmp_path, cache_dir):
    import pickle

    folder = write_cifar100(tmp_path, TRAIN_LABELS, TEST_LABELS, CIFAR_NAMES)
    marker = tmp_path / "pwned"
    (folder / "train").write_bytes(pickle.dumps({"data": _RunsCode(marker), "fine_labels": [0]}, protocol=2))
    with pytest.raises(DataError) as exc:
        load_dataset("cifar100", data_dir=tmp_path, download=False)
    msg = one_line(exc)
    assert not marker.exists(), "the pickle ran code"
    assert str(folder / "train") in msg and "system" in msg and "refused" in msg


@pytest.mark.parametrize("payload", [("builtins", "eval"), ("numpy", "load"), ("numpy.lib.npyio", "load")])
def test_cifar100_unpickler_refuses_every_other_global(tmp_path, cache_dir, payload):
    import pickle

    module, name = payload
    folder = write_cifar100(tmp_path, TRAIN_LABELS, TEST_LABELS, CIFAR_NAMES)
    raw = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X\x01\x00\x00\x001\x85R."  # GLOBAL, then call it
    (folder / "meta").write_bytes(raw)
    with pytest.raises(DataError) as exc:
        load_dataset("cifar100", data_dir=tmp_path, download=False)
    assert f"{module}.{name}" in one_line(exc)
    with pytest.raises(pickle.UnpicklingError):  # the file really is a pickle that calls the global
        import io

        from tasks.datasets import _CifarUnpickler

        _CifarUnpickler(io.BytesIO(raw), encoding="latin1").load()
