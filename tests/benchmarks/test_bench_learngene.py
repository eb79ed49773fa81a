"""Benchmarks of collective-model training (learngene's dominant cost).

1. Throughput (images/s) of collective training steps fed from the cached uint8 tensor (batches
   gathered by index, augmented as one tensor: the suite's data path) against the same model and
   optimizer fed by torchvision `ImageFolder` + `DataLoader` with per-image PIL transforms
   (RandomHorizontalFlip, ToTensor, Normalize: the official code's data path) over the same images
   written as PNG files. The ratio isolates the data path's cost inside real training.
2. bf16 autocast against fp32 on this CPU: the step-time ratio, and the test-accuracy difference of
   the same seeded short continual run (same tasks, same batch order), so the profile option
   `[collective].amp = "bf16"` can be judged on both speed and accuracy.

Run for numbers:

    .venv/bin/pytest tests/benchmarks/test_bench_learngene.py --benchmark-enable -p no:randomly -s

With the default `--benchmark-disable` every function runs once on a tiny workload and only the
correctness checks run. One torch thread is used (the 2-core machines this suite targets are
shared; 2 threads under contention were 6x slower in our probes); `extra_info` records it.
Images: the first 10 classes of ../shared/data/tiny-imagenet-100.zip at 32 px when present and the
benchmark is enabled, else synthetic ones. Width 0.25 (the quick profile's).
"""
from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F
from conftest import real_data_path

from methods.backbones import CollectiveNet
from methods.learngene.collective import ContinualLearner
from methods.settings import CollectiveSettings
from methods.training import Recipe, train_supervised
from tasks.augment import IMAGENET_MEAN, IMAGENET_STD
from tasks.continual import continual_tasks
from tasks.datasets import load_dataset, make_synthetic
from tasks.imageset import TRAIN_POOL

WIDTH = 0.25
BATCH = 64
N_CLASSES = 10
RATES: dict[str, float] = {}


def _enabled(config) -> bool:
    """--benchmark-enable wins over the project's default --benchmark-disable (addopts)."""
    return bool(config.getoption("benchmark_enable", default=False)) or \
        not config.getoption("benchmark_disable", default=False)


@pytest.fixture(scope="module")
def setup(request, tmp_path_factory):
    from PIL import Image

    torch.set_num_threads(1)
    per_class = 60 if _enabled(request.config) else 8
    real = real_data_path() / "tiny-imagenet-100.zip"
    if real.is_file() and _enabled(request.config):
        data = load_dataset("tiny-imagenet", data_dir=real.parent, image_size=32)
    else:
        data = make_synthetic(num_classes=N_CLASSES, train_per_class=per_class, test_per_class=20, image_size=32)
    idx = torch.cat([data.indices(c, TRAIN_POOL)[:per_class] for c in range(N_CLASSES)])
    folder = tmp_path_factory.mktemp("collective-imagefolder")
    for k, i in enumerate(idx.tolist()):
        d = folder / data.class_names[int(data.labels[i])]
        d.mkdir(exist_ok=True)
        Image.fromarray(data.images[i].permute(1, 2, 0).numpy()).save(d / f"{k:05d}.png")
    labels = torch.cat([torch.full((per_class,), c) for c in range(N_CLASSES)])
    return {"data": data, "idx": idx, "labels": labels, "folder": folder, "n": len(idx),
            "source": data.name, "full": _enabled(request.config)}


def _model() -> tuple[CollectiveNet, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = CollectiveNet(N_CLASSES, 32, width=WIDTH)
    return net, torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)


def tensor_epoch(data, idx, labels) -> int:
    """One epoch of collective training through the shared loop (tensor gather + batched augment)."""
    net, _ = _model()
    train_supervised(net, data.images[idx], labels, Recipe(epochs=1, lr=1e-3, batch_size=BATCH),
                     generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    return len(idx)


def imagefolder_epoch(folder) -> int:
    """One epoch of the same training fed by ImageFolder + DataLoader with per-image PIL transforms."""
    from torch.utils.data import DataLoader
    from torchvision import transforms as T
    from torchvision.datasets import ImageFolder

    tf = T.Compose([T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    loader = DataLoader(ImageFolder(str(folder), transform=tf), batch_size=BATCH, shuffle=True, num_workers=0,
                        generator=torch.Generator().manual_seed(0))
    net, opt = _model()
    net.train()
    done = 0
    for x, y in loader:
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += len(x)
    return done


def _rate(benchmark, n: int) -> float | None:
    return None if benchmark.stats is None else n / benchmark.stats.stats.median


def test_bench_collective_tensor_path(benchmark, setup):
    n = benchmark.pedantic(tensor_epoch, args=(setup["data"], setup["idx"], setup["labels"]), rounds=3,
                           warmup_rounds=1, iterations=1)
    assert n == setup["n"]
    rate = _rate(benchmark, n)
    if rate is not None:
        RATES["tensor"] = rate
        benchmark.extra_info.update(images_per_s=round(rate, 1), threads=torch.get_num_threads(), width=WIDTH,
                                    data=setup["source"], images=n)


def test_bench_collective_imagefolder_path(benchmark, setup):
    n = benchmark.pedantic(imagefolder_epoch, args=(setup["folder"],), rounds=3, warmup_rounds=1, iterations=1)
    assert n == setup["n"]
    rate = _rate(benchmark, n)
    if rate is None:
        return
    benchmark.extra_info.update(images_per_s=round(rate, 1), threads=torch.get_num_threads(), width=WIDTH,
                                data=setup["source"], images=n)
    if "tensor" in RATES:
        ratio = RATES["tensor"] / rate
        benchmark.extra_info["tensor_over_imagefolder"] = round(ratio, 2)
        print(f"\n[collective training, width {WIDTH}, 32 px, {n} images, 1 thread] tensor path "
              f"{RATES['tensor']:.0f} img/s; ImageFolder+DataLoader {rate:.0f} img/s; ratio {ratio:.2f}x")


def short_run(data, amp: str, epochs: int) -> tuple[float, float]:
    """(seconds, mean final-task-row accuracy) of a seeded 3-task continual run with `amp`."""
    tasks = continual_tasks(data, list(range(N_CLASSES)), 3, 5, 40 if epochs > 1 else 8, 20, seed=0)
    cfg = CollectiveSettings(width=WIDTH, epochs=epochs, batch_size=BATCH, lr=0.01, momentum=0.9,
                             weight_decay=5e-4, sigma=1e-4, amp=amp)
    torch.manual_seed(0)
    learner = ContinualLearner(CollectiveNet(N_CLASSES, 32, width=WIDTH), data, cfg, device=torch.device("cpu"), seed=0)
    t0 = time.perf_counter()
    for task in tasks:
        learner.learn(task)
    return time.perf_counter() - t0, sum(learner.R[-1]) / len(learner.R[-1])


def test_bench_bf16_autocast_vs_fp32(benchmark, setup):
    epochs = 4 if setup["full"] else 1
    results = {}

    def both():
        for amp in ("none", "bf16"):
            results[amp] = short_run(setup["data"], amp, epochs)
        return results

    benchmark.pedantic(both, rounds=1, iterations=1)
    (t32, a32), (t16, a16) = results["none"], results["bf16"]
    assert 0.0 <= a32 <= 1.0 and 0.0 <= a16 <= 1.0
    benchmark.extra_info.update(fp32_s=round(t32, 2), bf16_s=round(t16, 2), bf16_speedup=round(t32 / t16, 2),
                                acc_fp32=round(a32, 3), acc_bf16=round(a16, 3), acc_diff=round(a16 - a32, 3),
                                threads=torch.get_num_threads(), epochs=epochs)
    print(f"\n[bf16 autocast vs fp32, width {WIDTH}, 32 px, 3 tasks x {epochs} epochs, 1 thread] "
          f"fp32 {t32:.2f}s acc {a32:.3f}; bf16 {t16:.2f}s acc {a16:.3f}; speedup {t32 / t16:.2f}x")
