"""Dataset loaders. Each returns an `ImageSet`; decoding happens once and is cached on disk.

Loaders: `tiny-imagenet` (official layout, zip or folder, any number of classes), `cifar100`
(official python pickles; torchvision downloads them when online), `mini-imagenet`
(`<wnid>/*.JPEG` folders, 84 px), `imagefolder` (`root/<class>/*`), `synthetic` (procedural).

Decoded tensors are cached as `<name>-<checksum>-<px>px.pt` under BENCH_CACHE_DIR (default
~/.cache/learngene-bench/decoded), so a second load costs one `torch.load`.

Why one module over 300 lines: five loaders share the cache, checksum, decode and error paths; each
loader alone is short, and splitting them would scatter those shared paths.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tasks.errors import DataError
from tasks.imageset import TEST_POOL, TRAIN_POOL, ImageSet

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CACHE_VERSION = 1


def default_data_dir() -> Path:
    """--data-dir, else BENCH_DATA_DIR, else the user cache directory (the CLI passes --data-dir first)."""
    env = os.environ.get("BENCH_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "data"


def user_cache_dir() -> Path:
    if os.environ.get("BENCH_CACHE_DIR"):
        return Path(os.environ["BENCH_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "learngene-bench"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    native_size: int | None
    loader: Callable[..., ImageSet] | None
    """(found path, image size, cache dir) -> ImageSet; None where `load_dataset` builds it itself (synthetic)."""
    finder: Callable[[Path], Path | None] | None = None


# --------------------------------------------------------------------------- caching and decoding


def checksum(path: Path) -> str:
    """sha1 of a file, or of a folder's listing (relative path, size, mtime in ns) - cheap and change-sensitive.

    Nanosecond mtimes: a file rewritten with the same size within one second must change the key."""
    h = hashlib.sha1()
    if path.is_file():
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    else:
        for p in sorted(path.rglob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _cache_file(source: Path, name: str, size: int | None, cache_dir: Path | None, digest: str) -> Path:
    """Where the decoded tensor lives: `cache_dir`, else BENCH_CACHE_DIR, else ~/.cache/learngene-bench.

    Never beside the data: shared data folders are often read-only or shared between users."""
    key = f"{name}-{digest}-{size or 'native'}px-v{CACHE_VERSION}.pt"
    return (Path(cache_dir) if cache_dir is not None else user_cache_dir() / "decoded") / key


def cached(source: Path, name: str, size: int | None, cache_dir: Path | None,
           build: Callable[[], ImageSet], source_label: str | None = None) -> ImageSet:
    """Load the decoded ImageSet from the cache, or build it and write the cache atomically.

    `source` is what the key is computed from; `source_label` (default: `source`) is the ImageSet's
    `source` on a cache hit, so it is the same whether or not the cache was used (the split file
    beside the data is found from it). A cache that cannot be written is a warning, not an error."""
    digest = checksum(source)
    path = _cache_file(source, name, size, cache_dir, digest)
    label = str(source_label if source_label is not None else source)
    if path.exists():
        try:
            blob = torch.load(path, weights_only=True)
            return ImageSet(name=blob["name"], images=blob["images"], labels=blob["labels"],
                            class_names=list(blob["class_names"]), pool=blob["pool"],
                            source=label, extra={**blob.get("extra", {}), "checksum": digest})
        except Exception:  # a truncated cache file is rebuilt, never trusted
            path.unlink(missing_ok=True)
    data = build()
    data.extra["checksum"] = digest
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"name": data.name, "images": data.images, "labels": data.labels,
                    "class_names": data.class_names, "pool": data.pool, "extra": data.extra}, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        warnings.warn(f"could not write the decode cache {path} ({exc}); set BENCH_CACHE_DIR to a writable "
                      "folder to avoid decoding again next time", stacklevel=2)
    return data


def decode_images(blobs: list[bytes], size: int | None, desc: str, names: list[str] | None = None) -> torch.Tensor:
    """Decode encoded images (JPEG/PNG/...) to uint8 [N,3,S,S], resizing to `size` (antialiased).

    With `names` (one per blob), a file that is not a readable image is a `DataError` naming it, so
    the user knows which file to remove; without, PIL's OSError propagates for the caller to word."""
    from PIL import Image

    out: list[torch.Tensor] = []
    for i, raw in enumerate(tqdm(blobs, desc=desc, unit="img", mininterval=1.0, disable=len(blobs) < 2000)):
        try:
            with Image.open(io.BytesIO(raw)) as im:
                arr = np.asarray(im.convert("RGB"))
        except OSError as exc:
            if names is None:
                raise
            why = str(exc).split(" <_io.", 1)[0]  # PIL names the in-memory buffer, not the file
            raise DataError(f"{names[i]} is not a readable image ({why}); remove or replace it") from exc
        out.append(torch.from_numpy(arr.copy()).permute(2, 0, 1))
    return resize_batch(out, size)


def resize_batch(images: list[torch.Tensor] | torch.Tensor, size: int | None) -> torch.Tensor:
    """Stack CHW uint8 images, centre-cropping to square and resizing to `size` in chunks."""
    if not isinstance(images, torch.Tensor) and images and all(i.shape == images[0].shape for i in images):
        images = torch.stack(images)
    if size is None and not isinstance(images, torch.Tensor) and images:
        sides = {min(i.shape[-2:]) for i in images}
        if len(sides) > 1:
            raise DataError(f"the images have different sizes ({min(sides)} to {max(sides)} px); "
                            "pass --image-size to resize them all to one size")
    if isinstance(images, torch.Tensor) and images.shape[-1] == images.shape[-2]:
        return (resize_tensor(images, size) if size is not None else images).contiguous()
    results = []
    for img in images:
        h, w = img.shape[-2:]
        if h != w:
            s = min(h, w)
            top, left = (h - s) // 2, (w - s) // 2
            img = img[..., top:top + s, left:left + s]
        if size is not None and img.shape[-1] != size:
            img = F.interpolate(img[None].float(), size=(size, size), mode="bilinear",
                                antialias=True, align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
        results.append(img)
    if not results:
        raise DataError("no images were found in the dataset; check the folder layout")
    return torch.stack(results).contiguous()


def resize_tensor(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a stacked uint8 batch in chunks (fast path when all images share a size)."""
    if images.shape[-1] == size:
        return images
    out = []
    for chunk in images.split(4096):
        out.append(F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True,
                                 align_corners=False).round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


# --------------------------------------------------------------------------- tiny-imagenet


class _Archive:
    """Uniform read access to a zip file or a folder, with paths relative to the dataset root."""

    def __init__(self, path: Path):
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        self.prefix = ""
        if path.is_file():
            try:
                self.zip = zipfile.ZipFile(path)
                bad = self.zip.testzip() if path.stat().st_size < 50_000_000 else None
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                raise DataError(f"{path} is not a readable zip archive ({exc}); re-download it or pass another --data-dir") from exc
            if bad is not None:
                raise DataError(f"{path} is corrupt (bad CRC in {bad}); re-download it")
            names = self.zip.namelist()
            wn = [n for n in names if n.endswith("wnids.txt")]
            if not wn:
                raise DataError(f"{path} has no wnids.txt: it is not in the Tiny-ImageNet layout")
            self.prefix = wn[0][: -len("wnids.txt")]
            self.names = set(names)
        elif not (path / "wnids.txt").exists():
            raise DataError(f"{path} has no wnids.txt: it is not in the Tiny-ImageNet layout")

    def read(self, rel: str) -> bytes:
        try:
            if self.zip is not None:
                return self.zip.read(self.prefix + rel)
            return (self.path / rel).read_bytes()
        except (KeyError, FileNotFoundError) as exc:
            raise DataError(f"{self.path}: missing {rel}; the archive is incomplete, re-download it") from exc
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{self.path}: cannot read {rel} ({exc}); the archive is truncated or corrupt") from exc

    def list(self, rel_dir: str) -> list[str]:
        if self.zip is not None:
            pre = self.prefix + rel_dir.rstrip("/") + "/"
            return sorted(n[len(self.prefix):] for n in self.names
                          if n.startswith(pre) and not n.endswith("/") and "/" not in n[len(pre):])
        d = self.path / rel_dir
        return sorted(str(p.relative_to(self.path)) for p in d.iterdir() if p.is_file()) if d.is_dir() else []


def load_tiny_imagenet(path: Path, image_size: int | None = None, cache_dir: Path | None = None) -> ImageSet:
    """Official Tiny-ImageNet layout: train/<wnid>/images/* is the train pool, val/images/* the test pool."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"Tiny-ImageNet not found at {path}; pass --data-dir to the folder holding it")

    def build() -> ImageSet:
        arc = _Archive(path)
        wnids = [w.strip() for w in arc.read("wnids.txt").decode().split() if w.strip()]
        words = {}
        try:
            for line in arc.read("words.txt").decode().splitlines():
                if "\t" in line:
                    k, v = line.split("\t", 1)
                    words[k] = v.strip()
        except DataError:
            pass
        cls = {w: i for i, w in enumerate(wnids)}
        files, labels, pools = [], [], []
        for w in wnids:
            for f in arc.list(f"train/{w}/images"):
                if f.lower().endswith(IMAGE_SUFFIXES):
                    files.append(f)
                    labels.append(cls[w])
                    pools.append(TRAIN_POOL)
        for line in arc.read("val/val_annotations.txt").decode().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1] in cls:
                files.append(f"val/images/{parts[0]}")
                labels.append(cls[parts[1]])
                pools.append(TEST_POOL)
        blobs = [arc.read(f) for f in tqdm(files, desc="reading tiny-imagenet", unit="file",
                                              mininterval=1.0, disable=len(files) < 2000)]
        try:
            images = decode_images(blobs, image_size, "decoding tiny-imagenet", names=[f"{path}:{f}" for f in files])
        except OSError as exc:
            raise DataError(f"{path}: an image could not be decoded ({exc}); the archive is corrupt") from exc
        return ImageSet(name="tiny-imagenet", images=images, labels=torch.tensor(labels),
                        class_names=wnids, pool=torch.tensor(pools), source=str(path),
                        extra={"words": [words.get(w, w) for w in wnids]})

    return cached(path, "tiny-imagenet", image_size, cache_dir, build)


def find_tiny_imagenet(data_dir: Path) -> Path | None:
    if (data_dir / "wnids.txt").exists():
        return data_dir
    for pattern in ("tiny-imagenet*.zip", "tiny-imagenet*"):
        for p in sorted(data_dir.glob(pattern)):
            if p.suffix == ".zip" or (p / "wnids.txt").exists():
                return p
    return None


# --------------------------------------------------------------------------- CIFAR-100


# The only globals the official CIFAR-100 pickles reference (dicts, lists, strings and ints are
# pickle opcodes, not globals): a numpy array is rebuilt by `_reconstruct(ndarray, ...)` with a dtype.
# `numpy.core` is how numpy 1.x (and the official files) name the module, `numpy._core` numpy 2.
_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _CifarUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that resolves only `_CIFAR_GLOBALS`.

    Why: a pickle may name any callable (os.system, builtins.eval) and unpickling calls it, so a file
    in a shared data directory could run code as the user; the official files need only numpy's
    array constructors, and anything else is refused before it is imported or called."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"it references {module}.{name}, which a CIFAR-100 file never does; "
                                         "refused to load it (it could run code)")
        if name == "_reconstruct":
            from numpy._core.multiarray import _reconstruct

            return _reconstruct
        return getattr(np, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = _CifarUnpickler(fh, encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{path} is not a CIFAR-100 pickle: {exc}; delete it and download again") from exc
    except (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(f"{path} is not a readable CIFAR-100 pickle ({exc}); delete it and download again") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR-100 pickle (it holds a {type(obj).__name__}, not a dict); "
                        "delete it and download again")
    return obj


def load_cifar100(root: Path, image_size: int | None = None, cache_dir: Path | None = None,
                  download: bool = True) -> ImageSet:
    """torchvision's CIFAR-100 files (`cifar-100-python/{train,test,meta}`): official train = train pool, test = test pool."""
    root = Path(root)
    folder = root / "cifar-100-python" if (root / "cifar-100-python").exists() or root.name != "cifar-100-python" else root
    if not (folder / "train").exists():
        if not download:
            raise DataError(f"CIFAR-100 not found in {root} (no cifar-100-python/train); pass --data-dir (or set "
                            "BENCH_DATA_DIR) to the folder holding cifar-100-python/, or use --dataset synthetic")
        fetch_cifar100(root)
        folder = root / "cifar-100-python"

    def build() -> ImageSet:
        meta = _unpickle(folder / "meta")
        names = list(meta["fine_label_names"])
        imgs, labels, pools = [], [], []
        for split, pool in (("train", TRAIN_POOL), ("test", TEST_POOL)):
            d = _unpickle(folder / split)
            try:
                arr = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                lab = np.asarray(d["fine_labels"], dtype=np.int64)
            except (KeyError, ValueError) as exc:
                raise DataError(f"{folder / split} is not in the CIFAR-100 format ({exc})") from exc
            imgs.append(torch.from_numpy(arr.copy()))
            labels.append(torch.from_numpy(lab))
            pools.append(torch.full((len(lab),), pool, dtype=torch.uint8))
        images = torch.cat(imgs)
        if image_size is not None:
            images = resize_tensor(images, image_size)
        return ImageSet(name="cifar100", images=images, labels=torch.cat(labels), class_names=names,
                        pool=torch.cat(pools), source=str(folder))

    # keyed on the folder (train, test and meta), not on the train file alone
    return cached(folder, "cifar100", image_size, cache_dir, build, source_label=str(folder))


def fetch_cifar100(root: Path) -> None:
    """Download and extract CIFAR-100 with torchvision's downloader (checks the official md5)."""
    from torchvision.datasets.utils import download_and_extract_archive

    created = [p for p in (root, *root.parents) if not p.exists()]
    try:
        root.mkdir(parents=True, exist_ok=True)
        download_and_extract_archive(CIFAR100_URL, str(root), md5=CIFAR100_MD5)
    except Exception as exc:  # urllib errors, md5 mismatch, tar errors
        for p in created:  # leave nothing behind: remove the folders made for the download if still empty
            try:
                p.rmdir()
            except OSError:
                break
        why = " ".join(str(exc).split())  # one line, whatever the exception's text
        raise DataError(
            f"could not download CIFAR-100 into {root} ({type(exc).__name__}: {why}); "
            "this machine may be offline: put a dataset in --data-dir or BENCH_DATA_DIR, or use --dataset synthetic"
        ) from exc


def find_cifar100(data_dir: Path) -> Path | None:
    if (data_dir / "cifar-100-python" / "train").exists():
        return data_dir
    return None


# --------------------------------------------------------------------------- folders of images


def _folder_classes(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_imagefolder(root: Path, image_size: int | None = None, cache_dir: Path | None = None,
                     test_fraction: float = 0.2, name: str = "imagefolder") -> ImageSet:
    """`root/<class>/*` images. `root/train` + `root/test` (or `val`) give the pools; otherwise the
    last `test_fraction` of each class's sorted file list is the test pool (deterministic)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; pass --data-dir (or set BENCH_DATA_DIR) to a folder "
                        "of <class>/ sub-folders, or use --dataset synthetic")
    pooled = [(root / "train", TRAIN_POOL)]
    test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    class_root = root
    if (root / "train").is_dir() and test_dir is not None:
        pooled.append((test_dir, TEST_POOL))
    else:
        pooled = []
        if (root / "train").is_dir():  # train/ alone: its sub-folders are the classes, not "train"
            class_root = root / "train"

    def build() -> ImageSet:
        files: list[Path] = []
        labels: list[int] = []
        pools: list[int] = []
        if pooled:
            names = [p.name for p in _folder_classes(pooled[0][0])]
            for d, pool in pooled:
                for c in _folder_classes(d):
                    if c.name not in names:
                        raise DataError(f"{c} is not a class of {pooled[0][0]}; train and test must have the same classes")
                    imgs = _images_in(c)
                    files += imgs
                    labels += [names.index(c.name)] * len(imgs)
                    pools += [pool] * len(imgs)
        else:
            names = [p.name for p in _folder_classes(class_root)]
            for ci, name_ in enumerate(names):
                imgs = _images_in(class_root / name_)
                n_test = max(1, int(round(len(imgs) * test_fraction))) if len(imgs) > 1 else 0
                files += imgs
                labels += [ci] * len(imgs)
                pools += [TRAIN_POOL] * (len(imgs) - n_test) + [TEST_POOL] * n_test
        if not names or not files:
            raise DataError(f"no class folders with images found in {root}; expected {root}/<class>/*.jpg")
        blobs = [f.read_bytes() for f in files]
        try:
            images = decode_images(blobs, image_size, f"decoding {name}", names=[str(f) for f in files])
        except OSError as exc:
            raise DataError(f"{root}: an image could not be decoded ({exc}); remove or replace it") from exc
        return ImageSet(name=name, images=images, labels=torch.tensor(labels), class_names=names,
                        pool=torch.tensor(pools), source=str(root))

    key = name if test_fraction == 0.2 else f"{name}-test{test_fraction:g}"
    return cached(root, key, image_size, cache_dir, build)


def load_mini_imagenet(root: Path, image_size: int | None = 84, cache_dir: Path | None = None,
                       test_per_class: int = 50) -> ImageSet:
    """ImageNet-style `<wnid>/*.JPEG` folders (optionally under train/val/test split folders), resized
    to 84 px; the last `test_per_class` sorted images of each class are the held-out test pool."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"mini-ImageNet folder {root} does not exist; pass --data-dir (or set BENCH_DATA_DIR) to a "
                        "folder of <wnid>/ sub-folders, or use --dataset synthetic")
    class_dirs: list[Path] = []
    for sub in ("train", "val", "test"):
        if (root / sub).is_dir():
            class_dirs += _folder_classes(root / sub)
    if not class_dirs:
        class_dirs = _folder_classes(root)

    def build() -> ImageSet:
        files, labels, pools, names = [], [], [], []
        for ci, d in enumerate(class_dirs):
            imgs = _images_in(d)
            if len(imgs) <= test_per_class:
                raise DataError(f"class {d.name} has {len(imgs)} images, not more than the {test_per_class} held out for testing")
            names.append(d.name)
            files += imgs
            labels += [ci] * len(imgs)
            pools += [TRAIN_POOL] * (len(imgs) - test_per_class) + [TEST_POOL] * test_per_class
        if not files:
            raise DataError(f"no <wnid>/ folders with images found in {root}")
        blobs = [f.read_bytes() for f in files]
        try:
            images = decode_images(blobs, image_size or 84, "decoding mini-imagenet", names=[str(f) for f in files])
        except OSError as exc:
            raise DataError(f"{root}: an image could not be decoded ({exc}); remove or replace it") from exc
        return ImageSet(name="mini-imagenet", images=images, labels=torch.tensor(labels), class_names=names,
                        pool=torch.tensor(pools), source=str(root))

    key = "mini-imagenet" if test_per_class == 50 else f"mini-imagenet-test{test_per_class}"
    return cached(root, key, image_size or 84, cache_dir, build)


def _has_wnid_folders(d: Path) -> bool:
    return any(p.is_dir() and len(p.name) == 9 and p.name[0] == "n" and p.name[1:].isdigit() for p in d.iterdir())


def find_mini_imagenet(data_dir: Path) -> Path | None:
    """`data_dir/mini-imagenet` (or miniImageNet, mini_imagenet), else `data_dir` itself when it holds
    `<wnid>/` folders directly or under train/val/test."""
    for name in ("mini-imagenet", "miniImageNet", "mini_imagenet"):
        if (data_dir / name).is_dir():
            return data_dir / name
    if (data_dir / "wnids.txt").exists():  # that is Tiny-ImageNet's layout
        return None
    if _has_wnid_folders(data_dir) or any((data_dir / s).is_dir() and _has_wnid_folders(data_dir / s)
                                          for s in ("train", "val", "test")):
        return data_dir
    return None


# --------------------------------------------------------------------------- synthetic


def make_synthetic(num_classes: int = 100, train_per_class: int = 60, test_per_class: int = 20,
                   image_size: int = 32, seed: int = 0) -> ImageSet:
    """Procedural images: each class is a colour plus an oriented grating, each image adds a random
    phase, contrast, shift and noise. Learnable but not trivial; no files, for smoke runs only."""
    g = torch.Generator().manual_seed(seed)
    size = image_size or 32
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    colours = torch.rand(num_classes, 3, generator=g) * 0.6 + 0.2
    angles = torch.rand(num_classes, generator=g) * torch.pi
    freqs = 2.0 + torch.rand(num_classes, generator=g) * 6.0
    per = train_per_class + test_per_class
    n = num_classes * per
    labels = torch.arange(num_classes).repeat_interleave(per)
    phase = torch.rand(n, generator=g) * 2 * torch.pi
    contrast = 0.15 + 0.2 * torch.rand(n, generator=g)
    ang = angles[labels] + 0.15 * torch.randn(n, generator=g)
    proj = xx[None] * torch.cos(ang)[:, None, None] + yy[None] * torch.sin(ang)[:, None, None]
    wave = torch.sin(freqs[labels][:, None, None] * torch.pi * proj + phase[:, None, None])
    img = colours[labels][:, :, None, None] + contrast[:, None, None, None] * wave[:, None]
    img = img + 0.08 * torch.randn(n, 3, size, size, generator=g)
    images = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    pool = torch.tensor(([TRAIN_POOL] * train_per_class + [TEST_POOL] * test_per_class) * num_classes)
    names = [f"synthetic_{i:03d}" for i in range(num_classes)]
    return ImageSet(name="synthetic", images=images, labels=labels, class_names=names, pool=pool,
                    synthetic=True, source="procedural (tasks.datasets.make_synthetic)")


# --------------------------------------------------------------------------- registry and entry point


DATASETS: dict[str, DatasetInfo] = {
    "tiny-imagenet": DatasetInfo("tiny-imagenet", "Tiny-ImageNet (official zip or folder, any number of classes), 64 px",
                                 64, load_tiny_imagenet, find_tiny_imagenet),
    "cifar100": DatasetInfo("cifar100", "CIFAR-100 (torchvision's official pickles; downloaded when online), 32 px",
                            32, load_cifar100, find_cifar100),
    "mini-imagenet": DatasetInfo("mini-imagenet", "ImageNet-style <wnid>/*.JPEG folders, resized to 84 px",
                                 84, load_mini_imagenet, find_mini_imagenet),
    "imagefolder": DatasetInfo("imagefolder", "your own root/<class>/* images (root/train + root/test if present)",
                               None, load_imagefolder, None),
    "synthetic": DatasetInfo("synthetic", "procedural images made in code (no files; smoke runs and offline demos)",
                             32, None, None),
}


def dataset_names() -> list[str]:
    return ["auto", *DATASETS]


def resolve_auto(data_dir: Path) -> str:
    """The first real dataset found in the data directory, else cifar100 (which will be downloaded)."""
    for name in ("tiny-imagenet", "mini-imagenet", "cifar100"):
        finder = DATASETS[name].finder
        if finder is not None and data_dir.is_dir() and finder(data_dir) is not None:
            return name
    return "cifar100"


def load_dataset(name: str, data_dir: Path | None = None, image_size: int | None = None,
                 cache_dir: Path | None = None, download: bool = True,
                 synthetic_options: dict | None = None) -> ImageSet:
    """Load a dataset by name. Raises `DataError` with a one-line fix for every user-facing problem."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    if name == "auto":
        name = resolve_auto(data_dir)
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; choose one of: {', '.join(dataset_names())}")
    if image_size is not None and image_size <= 0:
        raise DataError(f"--image-size must be a positive number of pixels, got {image_size}")
    if name == "synthetic":
        opts = dict(synthetic_options or {})
        return make_synthetic(image_size=image_size or 32, **opts)
    if name == "cifar100":
        return load_cifar100(data_dir, image_size, cache_dir, download=download)
    if name == "imagefolder":
        return load_imagefolder(data_dir, image_size, cache_dir)
    info = DATASETS[name]
    assert info.finder is not None and info.loader is not None
    found = info.finder(data_dir) if data_dir.is_dir() else None
    if found is None:
        raise DataError(
            f"no {name} data found in {data_dir}; pass --data-dir (or set BENCH_DATA_DIR) to the folder that "
            f"holds it, or use --dataset synthetic for an offline demo"
        )
    return info.loader(found, image_size, cache_dir)


def split_file_beside(source: str | Path) -> Path | None:
    """`<stem>.split.json` beside a dataset file/folder (e.g. tiny-imagenet-100.split.json)."""
    p = Path(source)
    cand = p.with_name(p.stem + ".split.json") if p.suffix else p.with_name(p.name + ".split.json")
    return cand if cand.exists() else None

