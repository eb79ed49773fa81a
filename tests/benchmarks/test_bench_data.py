"""Benchmark of the data path: episodes built and training batches gathered + augmented from the
cached uint8 tensor, against torchvision `ImageFolder` + `DataLoader` with per-image PIL transforms
(RandomHorizontalFlip, ToTensor, Normalize) over the same images written as PNG files.

Both sides deliver the same number of augmented, normalised float batches of 32 images; the unit is
images per second. Run it for numbers (the ratio is printed and stored in extra_info):

    .venv/bin/pytest tests/benchmarks/test_bench_data.py --benchmark-enable -p no:randomly

With the project's default `--benchmark-disable` each side runs once on a small workload (200
images) and only its correctness checks run, so the normal test run stays fast. The images are
~2000 train images of the first 20 classes of ../shared/data/tiny-imagenet-100.zip (32 px, as the
quick profile uses them) when the zip is there, else synthetic ones.

Both sides run on one core: the DataLoader with num_workers=0 and both with one torch intra-op
thread. The baseline's per-image ops are below torch's parallel grain size, so it is single-threaded
anyway; pinning the tensor side too makes the comparison core for core. It also matters: on a
2-core machine shared with other jobs, two OpenMP threads on these small batches stalled at their
barriers and ran 10x slower than one thread (seen while writing this benchmark).
"""
from __future__ import annotations

import math

import pytest
import torch
from conftest import real_data_path

from tasks.augment import IMAGENET_MEAN, IMAGENET_STD, train_transform
from tasks.datasets import load_dataset, make_synthetic
from tasks.episodes import sample_episodes
from tasks.imageset import TRAIN_POOL

BATCH = 32
N_CLASSES = 20
TARGET_RATIO = 5.0
RATES: dict[str, float] = {}


def _enabled(config) -> bool:
    # pytest-benchmark's own rule: --benchmark-enable overrides --benchmark-disable (from addopts)
    return config.getoption("benchmark_enable", default=False) or not config.getoption("benchmark_disable", default=False)


@pytest.fixture(scope="module")
def bench_setup(request, tmp_path_factory):
    from PIL import Image

    n_images = 2000 if _enabled(request.config) else 200
    per_class = n_images // N_CLASSES
    real = real_data_path() / "tiny-imagenet-100.zip"
    if real.is_file():
        data = load_dataset("tiny-imagenet", data_dir=real.parent, image_size=32)
    else:
        data = make_synthetic(num_classes=N_CLASSES, train_per_class=max(per_class, 40), test_per_class=20,
                              image_size=32)  # at least 20 shots per class for the episodes
    classes = list(range(N_CLASSES))
    idx = torch.cat([data.indices(c, TRAIN_POOL)[:per_class] for c in classes])
    folder = tmp_path_factory.mktemp("imagefolder")
    for k, i in enumerate(idx.tolist()):
        d = folder / data.class_names[int(data.labels[i])]
        d.mkdir(exist_ok=True)
        Image.fromarray(data.images[i].permute(1, 2, 0).numpy()).save(d / f"{k:05d}.png")
    return {"data": data, "classes": classes, "idx": idx, "folder": folder, "n": len(idx),
            "source": "tiny-imagenet-100" if real.is_file() else "synthetic"}


def tensor_path(data, classes, n_images: int, seed: int = 0) -> list[torch.Tensor]:
    """Build 5-way 20-shot episodes until they hold `n_images` support images, then gather shuffled
    batches of 32 from the tensor and augment each batch at once. Returns the last batch and labels."""
    g = torch.Generator().manual_seed(seed)
    n_eps = math.ceil(n_images / (5 * 20))
    episodes = sample_episodes(data, classes, n_way=5, k_shot=20, n_query=15, n_episodes=n_eps, seed=seed)
    done, last = 0, None
    for ep in episodes:
        perm = torch.randperm(len(ep.support), generator=g)
        order, labels = ep.support[perm], ep.support_labels[perm]
        for b, y in zip(order.split(BATCH), labels.split(BATCH), strict=True):
            x = train_transform(data.images[b], g)
            done += len(b)
            last = (x, y)
    assert done == n_eps * 100
    return last


def imagefolder_path(folder, seed: int = 0):
    from torch.utils.data import DataLoader
    from torchvision import transforms as T
    from torchvision.datasets import ImageFolder

    tf = T.Compose([T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    loader = DataLoader(ImageFolder(str(folder), transform=tf), batch_size=BATCH, shuffle=True, num_workers=0,
                        generator=torch.Generator().manual_seed(seed))
    done, last = 0, None
    for x, y in loader:
        done += len(x)
        last = (x, y)
    return done, last


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _rate(benchmark, n: int) -> float | None:
    """Images per second from the fastest round: the machines are shared, and the minimum is the
    round least disturbed by other processes (pytest-benchmark's table shows median and mean too)."""
    if benchmark.stats is None:  # --benchmark-disable
        return None
    return n / benchmark.stats.stats.min


def test_bench_tensor_episodes_and_batches(benchmark, bench_setup, one_thread):
    data, classes, n = bench_setup["data"], bench_setup["classes"], bench_setup["n"]
    x, y = benchmark.pedantic(tensor_path, args=(data, classes, n), rounds=10, warmup_rounds=1, iterations=1)
    assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32) and 0 < len(x) <= BATCH
    assert y.min() >= 0 and y.max() < 5
    assert -2.2 < float(x.min()) and float(x.max()) < 2.7  # ImageNet-normalised range
    rate = _rate(benchmark, n)
    if rate is not None:
        RATES["tensor"] = rate
        benchmark.extra_info.update(images_per_s=round(rate), data=bench_setup["source"], images=n)


def test_bench_imagefolder_dataloader(benchmark, bench_setup, capsys, one_thread):
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import ToTensor

    data, idx, folder, n = bench_setup["data"], bench_setup["idx"], bench_setup["folder"], bench_setup["n"]
    plain = ImageFolder(str(folder), transform=ToTensor())  # the files hold exactly the tensor's images
    assert len(plain) == n
    for j in (0, n // 2, n - 1):
        img, label = plain[j]
        k = int(plain.samples[j][0].rsplit("/", 1)[1].split(".")[0])  # files are named by position in idx
        assert torch.equal((img * 255).round().to(torch.uint8), data.images[idx[k]])
        assert plain.classes[label] == data.class_names[int(data.labels[idx[k]])]
    done, (x, y) = benchmark.pedantic(imagefolder_path, args=(folder,), rounds=5, warmup_rounds=1, iterations=1)
    assert done == n and x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)
    rate = _rate(benchmark, n)
    if rate is None:
        return
    RATES["imagefolder"] = rate
    benchmark.extra_info.update(images_per_s=round(rate), data=bench_setup["source"], images=n)
    assert "tensor" in RATES, "run the whole benchmark module so both sides are measured"
    ratio = RATES["tensor"] / rate
    benchmark.extra_info["tensor_over_imagefolder"] = round(ratio, 1)
    with capsys.disabled():
        print(f"\n[data path, {bench_setup['source']}, {n} images] tensor episodes+batches: "
              f"{RATES['tensor']:.0f} img/s; ImageFolder+DataLoader: {rate:.0f} img/s; ratio {ratio:.1f}x "
              f"(target >= {TARGET_RATIO:.0f}x)")
    assert ratio >= TARGET_RATIO
