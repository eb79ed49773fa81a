"""Shared fixtures for the data-layer tests.

- `real_data_dir`: BENCH_DATA_DIR, else ../shared/data beside the repo; skips only when the
  tiny-imagenet-100 zip is absent there.
- `cache_dir`: an empty decode cache for this test (BENCH_CACHE_DIR points at it), so tests that
  write their own data never read or pollute the shared cache.
- `tiny_set`: a small hand-built ImageSet whose pools are interleaved (not contiguous) and whose
  pixels encode each image's index, so gathering and pool bugs show up.
- `write_tiny_imagenet`, `write_cifar100`, `write_image`: writers for the official on-disk layouts.
"""
from __future__ import annotations

import os
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # the tests run from a checkout whether or not it is pip-installed
    sys.path.insert(0, str(REPO_ROOT))

from bench.usage import cap_torch_threads  # noqa: E402
from tasks.imageset import TEST_POOL, TRAIN_POOL, ImageSet  # noqa: E402

cap_torch_threads()  # in a container torch counts the host's CPUs: more threads than the quota thrash

REAL_ZIP_NAME = "tiny-imagenet-100.zip"

# Far-apart colours, one per class, so a decoded (lossy JPEG) image is attributable to its class.
PALETTE = [(230, 20, 20), (20, 230, 20), (20, 20, 230), (230, 230, 20), (20, 230, 230),
           (230, 20, 230), (120, 120, 120), (250, 250, 250), (10, 10, 10), (130, 60, 200)]


def real_data_path() -> Path:
    env = os.environ.get("BENCH_DATA_DIR")
    return Path(env).expanduser() if env else (REPO_ROOT / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    d = real_data_path()
    if not (d / REAL_ZIP_NAME).is_file():
        pytest.skip(f"real data not found: {d / REAL_ZIP_NAME} (set BENCH_DATA_DIR)")
    return d


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "decode-cache"
    monkeypatch.setenv("BENCH_CACHE_DIR", str(d))
    return d


def build_tiny_set(num_classes: int = 10, train_per_class: int = 24, test_per_class: int = 8,
                   size: int = 8) -> ImageSet:
    """Image i has label i % C; within a class the pools alternate (every 4th image is test while
    the test quota lasts), so a class's pools are interleaved in storage. Pixel [0,0,0] = i % 256
    and [1,0,0] = i // 256 identify the image."""
    per = train_per_class + test_per_class
    n = num_classes * per
    labels = torch.arange(n) % num_classes
    rank = torch.arange(n) // num_classes  # position of the image inside its class
    pool = torch.full((n,), TRAIN_POOL, dtype=torch.uint8)
    test_rank = (rank % 4 == 3) & (rank // 4 < test_per_class)
    pool[test_rank] = TEST_POOL
    # top up the test pool at the end of each class if the interleaving gave too few
    for c in range(num_classes):
        idx = torch.nonzero(labels == c).flatten()
        need = test_per_class - int((pool[idx] == TEST_POOL).sum())
        tail = [int(i) for i in idx.flip(0) if pool[i] == TRAIN_POOL][:need]
        pool[tail] = TEST_POOL
    images = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    images[:, 0, 0, 0] = (torch.arange(n) % 256).to(torch.uint8)
    images[:, 1, 0, 0] = (torch.arange(n) // 256).to(torch.uint8)
    images[:, 2] = (labels * 20).to(torch.uint8)[:, None, None]
    return ImageSet(name="tiny-test", images=images, labels=labels,
                    class_names=[f"class_{c:02d}" for c in range(num_classes)], pool=pool)


@pytest.fixture
def tiny_set() -> ImageSet:
    data = build_tiny_set()
    assert data.counts(TRAIN_POOL).tolist() == [24] * 10 and data.counts(TEST_POOL).tolist() == [8] * 10
    return data


def image_index(data: ImageSet, idx: torch.Tensor) -> torch.Tensor:
    """Recover image ids from the pixels written by `build_tiny_set` (checks gathering)."""
    px = data.images[idx]
    return px[:, 0, 0, 0].long() + 256 * px[:, 1, 0, 0].long()


# --------------------------------------------------------------------------- file writers


def write_image(path: Path, colour, size=(16, 16), fmt: str | None = None, border=None) -> None:
    """A solid image of `colour` (w, h = size); `border`=(colour, width) paints left/right bands."""
    w, h = size
    arr = np.empty((h, w, 3), dtype=np.uint8)
    arr[:] = colour
    if border is not None:
        bcol, bw = border
        arr[:, :bw] = bcol
        arr[:, w - bw:] = bcol
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt or ("JPEG" if path.suffix.lower() in (".jpeg", ".jpg") else "PNG"),
                              **({"quality": 95} if path.suffix.lower() in (".jpeg", ".jpg") else {}))


def write_tiny_imagenet(root: Path, n_classes: int = 4, n_train: int = 5, n_val: int = 3, size: int = 64,
                        seed: int = 0, grey_first: bool = True) -> dict:
    """The official Tiny-ImageNet layout under `root`; val images are shuffled across classes as in
    the real val_annotations.txt. Returns wnids, colours and the val file -> wnid map."""
    rng = np.random.default_rng(seed)
    wnids = [f"n{1000000 + 7919 * i + seed:08d}" for i in range(n_classes)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("".join(f"{w}\tthing {i}, object {i}\n" for i, w in enumerate(wnids))
                                    + "n99999999\tnot in wnids\n")
    for c, w in enumerate(wnids):
        d = root / "train" / w
        for i in range(n_train):
            write_image(d / "images" / f"{w}_{i}.JPEG", PALETTE[c % len(PALETTE)], (size, size))
        (d / f"{w}_boxes.txt").write_text("".join(f"{w}_{i}.JPEG\t0\t0\t10\t10\n" for i in range(n_train)))
    val = [w for w in wnids for _ in range(n_val)]
    rng.shuffle(val)
    lines = []
    for j, w in enumerate(val):
        write_image(root / "val" / "images" / f"val_{j}.JPEG", PALETTE[wnids.index(w) % len(PALETTE)], (size, size))
        lines.append(f"val_{j}.JPEG\t{w}\t0\t0\t10\t10\n")
    (root / "val" / "val_annotations.txt").write_text("".join(lines))
    if grey_first:  # the real data has greyscale JPEGs; the loader must turn them into RGB
        p = root / "train" / wnids[0] / "images" / f"{wnids[0]}_0.JPEG"
        Image.fromarray(np.full((size, size), 77, dtype=np.uint8), mode="L").save(p, format="JPEG")
    return {"wnids": wnids, "colours": [PALETTE[c % len(PALETTE)] for c in range(n_classes)],
            "val": {f"val_{j}.JPEG": w for j, w in enumerate(val)}, "grey": (wnids[0], 0)}


def zip_folder(folder: Path, zip_path: Path, top: str, compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(zip_path, "w", compression=compression) as zf:
        zf.writestr(top + "/", b"")
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, f"{top}/{p.relative_to(folder)}")
    return zip_path


class _Py2Str(bytes):
    """A Python 2 `str`: pickled as (SHORT_)BINSTRING, which Python 3 decodes with `encoding=`."""


class _Py2Pickler(pickle._Pickler):
    """Writes pickles the way Python 2 wrote CIFAR-100's: str keys and names as BINSTRING, and the
    numpy array's raw buffer as a BINSTRING too (only `encoding='latin1'` reads that back)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2str(self, obj):
        raw = bytes(obj)
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[_Py2Str] = save_py2str

    def save_ndarray(self, arr):
        from numpy._core.multiarray import _reconstruct

        arr = np.ascontiguousarray(arr)
        state = (1, arr.shape, arr.dtype, False, _Py2Str(arr.tobytes()))
        self.save_reduce(_reconstruct, (np.ndarray, (0,), _Py2Str(b"b")), state, obj=arr)

    dispatch[np.ndarray] = save_ndarray


def _py2_pickle(obj, path: Path) -> None:
    def conv(o):
        if isinstance(o, str):
            return _Py2Str(o.encode("latin1"))
        if isinstance(o, dict):
            return {conv(k): conv(v) for k, v in o.items()}
        if isinstance(o, list):
            return [conv(v) for v in o]
        return o

    with open(path, "wb") as fh:
        _Py2Pickler(fh, protocol=2).dump(conv(obj))


def cifar_pixels(n: int, offset: int) -> np.ndarray:
    """Rows of 3072 bytes in CIFAR's layout (R plane, G plane, B plane; each row-major 32x32):
    R = x*8 (varies along width), G = y*8 (varies along height), B = image id."""
    x = np.arange(32)
    r = np.broadcast_to((x * 8) % 256, (32, 32))
    g = np.broadcast_to(((x * 8) % 256)[:, None], (32, 32))
    rows = np.empty((n, 3072), dtype=np.uint8)
    for i in range(n):
        rows[i, :1024] = r.reshape(-1)
        rows[i, 1024:2048] = g.reshape(-1)
        rows[i, 2048:] = (offset + i) % 256
    return rows


def write_cifar100(root: Path, train_labels: list[int], test_labels: list[int], names: list[str]) -> Path:
    """`root/cifar-100-python/{train,test,meta}` as Python 2 pickles, keys as in the real files."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, labels, off in (("train", train_labels, 0), ("test", test_labels, 100)):
        _py2_pickle({"filenames": [f"img_{split}_{i}.png" for i in range(len(labels))],
                     "batch_label": f"{split}ing batch 1 of 1", "fine_labels": list(labels),
                     "coarse_labels": [lab // 5 for lab in labels],
                     "data": cifar_pixels(len(labels), off)}, folder / split)
    _py2_pickle({"fine_label_names": list(names), "coarse_label_names": [f"super_{i}" for i in range(20)]},
                folder / "meta")
    return folder


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: intra-op threads only add contention on a shared 2-core machine (up to 20x slower).
    Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def synthetic_source():
    """A small procedural source (15 classes) for end-to-end method tests."""
    from methods.base import SourceData
    from tasks.datasets import make_synthetic
    from tasks.splits import seeded_split

    data = make_synthetic(num_classes=15, train_per_class=30, test_per_class=20, image_size=32, seed=3)
    return SourceData(data, seeded_split(data, 0), seed=0, dataset="synthetic")
