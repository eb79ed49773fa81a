"""Checks of a `run`'s arguments and environment that must pass before anything is written.

Why a module of its own: the command line promises "one line, exit 2, before any work is done", so
every check here is cheap, raises `UsageError` with the allowed values in the message, and runs
before the results directory (or the data directory, for a download) is touched. Checks of the
profile's contents live with the profile/settings code; these cover the command line, the machine
(GPU) and the data directory.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from bench.errors import UsageError

# Image sizes: the individual network pools 3-4 times (needs >= 16 px); a method may need more (its
# `MethodFacts.min_image_size`: the collective network pools 5 times, 32 px). Above 256 px one uint8
# copy of Tiny-ImageNet-100 (55,000 images) alone is over 10 GB and the paper never goes past 84 px,
# so a larger value is almost surely a typo.
IMAGE_SIZE_MIN = 16
IMAGE_SIZE_MAX = 256
CIFAR100_DOWNLOAD = "about 160 MB"


def unique(names: list[str], flag: str) -> list[str]:
    """Drop repeated names (keeping the first), with a note: `--method scratch,scratch` runs scratch once."""
    seen: list[str] = []
    for n in names:
        if n not in seen:
            seen.append(n)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        print(f"note: {flag} lists {', '.join(repeated)} more than once; each runs once", file=sys.stderr)
    return seen


def check_image_sizes(sizes: Iterable[int], from_profile: bool) -> None:
    """Every size within [IMAGE_SIZE_MIN, IMAGE_SIZE_MAX], before any data is decoded at that size."""
    what = "the profile's image size" if from_profile else "--image-size"
    for s in sizes:
        if not IMAGE_SIZE_MIN <= int(s) <= IMAGE_SIZE_MAX:
            raise UsageError(f"{what} {s} is out of range: allowed {IMAGE_SIZE_MIN} to {IMAGE_SIZE_MAX} px "
                             f"(32 = CIFAR, 64 = Tiny-ImageNet, 84 = mini-ImageNet)")


def check_collective_size(size: int, methods: Iterable[str]) -> None:
    """Each method's own minimum image size (`MethodFacts.min_image_size`), e.g. learngene's: its
    collective network halves the map 5 times, so below 32 px nothing is left to classify."""
    from methods import registry

    need = {m: registry.facts(m) for m in set(methods)}
    small = sorted(m for m, f in need.items() if size < f.min_image_size)
    if small:
        m, f = small[0], need[small[0]]
        why = " (its 13-conv collective network pools 5 times)" if f.needs_ancestor else ""
        raise UsageError(f"--image-size {size} is too small for {m}{why}: allowed {f.min_image_size} to "
                         f"{IMAGE_SIZE_MAX} px when {m} runs")


def check_device(name: str) -> None:
    """`--device cuda` on a machine without a usable GPU: say so now, not as a traceback in the first cell."""
    if name != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise UsageError("--device cuda, but no CUDA GPU is usable on this machine (torch "
                         f"{torch.__version__} sees none); pass --device cpu or --device auto")


def _is_empty(d: Path) -> bool:
    return not any(p for p in d.iterdir() if not p.name.startswith("."))


def _source(explicit: str | None) -> str:
    return explicit or "the default data directory"


def resolve_dataset(dataset: str, data_dir: Path, explicit: str | None, dry_run: bool) -> str:
    """The dataset to load, checking the data directory first; never downloads anything itself.

    `explicit` names where `data_dir` came from ("--data-dir" or "BENCH_DATA_DIR"), None for the
    default. A folder the user named must exist (a typo must not start a download into a new
    folder); `auto` falls back to downloading CIFAR-100 only into an empty (or the default, absent)
    folder, and says so first; `--dry-run` never downloads."""
    from tasks.datasets import DATASETS, find_cifar100, resolve_auto

    if dataset == "synthetic":
        return dataset
    if data_dir.exists() and not data_dir.is_dir():
        raise UsageError(f"{_source(explicit)} {data_dir} is a file, not a folder; pass the folder that holds the "
                         "dataset (e.g. the folder containing tiny-imagenet-100.zip), or use --dataset synthetic")
    if not data_dir.exists() and explicit:
        raise UsageError(f"data directory {data_dir} (from {explicit}) does not exist; check the path given by "
                         "--data-dir or BENCH_DATA_DIR (create the folder first to download CIFAR-100 into it), "
                         "or use --dataset synthetic")
    if dataset == "auto":
        found = resolve_auto(data_dir) if data_dir.is_dir() else "cifar100"
        present = data_dir.is_dir() and DATASETS[found].finder(data_dir) is not None  # type: ignore[misc]
        if present:
            return found
        if data_dir.is_dir() and not _is_empty(data_dir):
            raise UsageError(f"no dataset found in {data_dir} (looked for tiny-imagenet*.zip or a folder with wnids.txt, "
                             "mini-imagenet <wnid>/ folders, cifar-100-python/); the folder is not empty, so nothing is "
                             "downloaded into it: pass --data-dir (or BENCH_DATA_DIR) to the folder holding a dataset, "
                             "--dataset NAME, or --dataset synthetic")
        dataset = "cifar100"
    if dataset == "cifar100" and not (data_dir.is_dir() and find_cifar100(data_dir)) \
            and not (data_dir / "train").exists():
        if dry_run:
            raise UsageError(f"--dry-run never downloads, and CIFAR-100 is not in {data_dir}; run without --dry-run "
                             f"to download it ({CIFAR100_DOWNLOAD}), or pass --data-dir, or --dataset synthetic")
        print(f"note: no dataset in {data_dir}; downloading CIFAR-100 ({CIFAR100_DOWNLOAD}) into it", file=sys.stderr)
    return dataset


def data_dir_source(arg: Path | None) -> str | None:
    """Where the data directory was named: the flag, the environment variable, or nowhere (default)."""
    if arg is not None:
        return "--data-dir"
    return "BENCH_DATA_DIR" if os.environ.get("BENCH_DATA_DIR") else None
