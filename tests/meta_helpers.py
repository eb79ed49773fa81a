"""Tiny data and profiles shared by the meta-learner tests (maml, protonet, matchingnet).

`colour_set` is the "easy synthetic task": every class is a far-apart solid colour plus mild noise, so
any working method separates novel classes after a few meta-iterations, while a method that has lost
the link between support labels and images (shuffled labels) must sit near chance.
"""
from __future__ import annotations

import copy

import torch

from methods.artifacts import ArtifactCache
from methods.base import EpisodeData, SourceData
from tasks.episodes import sample_episodes
from tasks.imageset import TEST_POOL, TRAIN_POOL, ImageSet
from tasks.splits import seeded_split

IMAGE_SIZE = 16

PROFILE = {
    "episodes": {"n_way": 5},
    "individual": {"width": 0.125},
    "methods": {
        "maml": {"meta_iterations": 3, "meta_batch": 2, "inner_lr": 0.5, "inner_steps_train": 1,
                 "inner_steps_test": 10, "outer_lr": 1e-3, "train_shots": 3, "train_queries": 3},
        "protonet": {"meta_iterations": 3, "train_way": 5, "train_shots": 3, "train_queries": 3, "lr": 1e-3,
                     "lr_halve_every": 0, "bn_recalibration_episodes": 4},
        "matchingnet": {"meta_iterations": 3, "train_way": 5, "train_shots": 3, "train_queries": 3, "lr": 1e-3,
                        "lr_halve_every": 0, "bn_recalibration_episodes": 4, "temperature": 10.0, "fce": False, "fce_steps": 2},
    },
}


def profile(family: str | None = None, **override) -> dict:
    prof = copy.deepcopy(PROFILE)
    if family:
        prof["methods"][family].update(override)
    return prof


def colour_set(num_classes: int = 20, train_per_class: int = 12, test_per_class: int = 6,
               size: int = IMAGE_SIZE, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    # colours on a coarse RGB lattice, shuffled: pairwise distance >= 1/3 of the range
    levels = torch.tensor([0.1, 0.45, 0.8])
    lattice = torch.cartesian_prod(levels, levels, levels)
    colours = lattice[torch.randperm(len(lattice), generator=g)[:num_classes]]
    per = train_per_class + test_per_class
    labels = torch.arange(num_classes).repeat_interleave(per)
    img = colours[labels][:, :, None, None] + 0.04 * torch.randn(len(labels), 3, size, size, generator=g)
    pool = torch.tensor(([TRAIN_POOL] * train_per_class + [TEST_POOL] * test_per_class) * num_classes)
    return ImageSet(name="colours", images=(img.clamp(0, 1) * 255).round().to(torch.uint8), labels=labels,
                    class_names=[f"colour_{i:02d}" for i in range(num_classes)], pool=pool, synthetic=True,
                    source="tests/meta_helpers.colour_set")


def source(data: ImageSet | None = None, seed: int = 0) -> SourceData:
    data = data if data is not None else colour_set()
    return SourceData(data, seeded_split(data, 0), seed, dataset="colours")


def episodes(src: SourceData, k_shot: int = 5, n_query: int = 6, n: int = 3, seed: int = 1,
             shuffle_labels: bool = False) -> list[EpisodeData]:
    """Novel-class episodes; `shuffle_labels` permutes the support labels (the control that must fail)."""
    out = []
    for e in sample_episodes(src.data, src.novel_ids, 5, k_shot, n_query, n, seed):
        ys = e.support_labels
        if shuffle_labels:
            ys = ys[torch.randperm(len(ys), generator=torch.Generator().manual_seed(seed * 100 + e.index))]
        out.append(EpisodeData(src.data.images[e.support], ys, src.data.images[e.query], e.query_labels,
                               e.n_way, e.k_shot, seed, e.index))
    return out


def mean_accuracy(method, eps: list[EpisodeData], prof: dict) -> float:
    return sum(method.run_episode(e).accuracy for e in eps) / len(eps)


def cache(tmp_path) -> ArtifactCache:
    return ArtifactCache(tmp_path / "artifacts")


def state_snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
