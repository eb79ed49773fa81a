"""Seeded N-way K-shot episodes, identical for every method (paired comparisons).

Evaluation episodes (novel and open-world classes, `query_pool="test"`): shots come from each
class's *train* pool, queries from its disjoint *test* pool (Q per class, or all of them as the paper
does). Training episodes on base classes (`query_pool="train"`) draw shots and queries from the
*train* pool, disjoint, as the reference implementations of ProtoNet and MAML do: base-class test
images stay held out for measurement, and meta-training sees all ~500 train images per class instead
of computing every query loss on the 50 test images. Episode i of seed s depends only on (s, i, pool classes), never on
the method or on K: classes are drawn first, then each class's train pool is permuted once and the
first K taken, so a 10-shot support set is contained in the 20-shot one of the same episode.
Indices are class-major (all shots of class 0, then class 1, ...), labels are 0..N-1 in that order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tasks.errors import DataError
from tasks.imageset import TEST_POOL, TRAIN_POOL, ImageSet


@dataclass(frozen=True)
class Episode:
    """Indices into an ImageSet; `support_labels`/`query_labels` are the remapped 0..N-1 labels."""

    index: int
    classes: tuple[int, ...]
    support: torch.Tensor
    query: torch.Tensor
    k_shot: int
    query_labels: torch.Tensor

    @property
    def n_way(self) -> int:
        return len(self.classes)

    @property
    def support_labels(self) -> torch.Tensor:
        return torch.arange(self.n_way).repeat_interleave(self.k_shot)


def _rng(*keys: int) -> np.random.Generator:
    # two's complement on 64 bits: non-negative seeds are unchanged, and -s is not an alias of s
    return np.random.default_rng(np.random.SeedSequence([int(k) % (1 << 64) for k in keys]))


def _class_pools(data: ImageSet, class_ids: list[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """{class: (train indices, test indices)} in stored order, as `data.indices` gives them, but with
    one stable sort over the selected images instead of two full-length masks per class."""
    wanted = torch.tensor(sorted(set(int(c) for c in class_ids)), dtype=torch.long)
    idx = torch.nonzero(torch.isin(data.labels, wanted), as_tuple=False).flatten()
    key = data.labels[idx] * 256 + data.pool[idx].long()
    key, order = torch.sort(key, stable=True)
    idx = idx[order]
    out = {}
    for c in wanted.tolist():
        bounds = torch.searchsorted(key, torch.tensor([c * 256 + TRAIN_POOL, c * 256 + TRAIN_POOL + 1,
                                                       c * 256 + TEST_POOL, c * 256 + TEST_POOL + 1])).tolist()
        out[c] = (idx[bounds[0]:bounds[1]], idx[bounds[2]:bounds[3]])
    return out


def sample_episodes(data: ImageSet, class_ids: list[int], n_way: int, k_shot: int, n_query: int | None,
                    n_episodes: int, seed: int, query_pool: str = "test") -> list[Episode]:
    """`n_episodes` episodes over `class_ids`. n_query=None takes every test image of each class.

    `query_pool="train"` (base-class meta-training) takes the queries from the train pool too, disjoint
    from the shots; evaluation episodes keep the default "test"."""
    if query_pool not in ("test", "train"):
        raise ValueError(f"query_pool must be 'test' or 'train', got {query_pool!r}")
    if query_pool == "train" and n_query is None:
        raise ValueError("training episodes (query_pool='train') need a number of queries per class")
    for label, value in (("--ways", n_way), ("--shots", k_shot), ("--episodes", n_episodes)):
        if value <= 0:
            raise DataError(f"{label} must be a positive number, got {value}")
    if n_query is not None and n_query <= 0:
        raise DataError(f"queries per class must be positive (or 'all'), got {n_query}")
    if n_way > len(class_ids):
        raise DataError(f"{n_way}-way episodes need {n_way} classes but the pool has {len(class_ids)}")
    train_counts = data.counts(TRAIN_POOL)
    test_counts = data.counts(TEST_POOL)
    need = k_shot + (n_query if query_pool == "train" else 0)
    short = [data.class_names[c] for c in class_ids if int(train_counts[c]) < need]
    if short:
        have = min(int(train_counts[data.class_id(n)]) for n in short)
        if query_pool == "train":
            raise DataError(f"training episodes need {k_shot} shots + {n_query} queries per class from the train "
                            f"pool, but class {short[0]} has only {have} training images; lower the profile's "
                            f"train_shots/train_queries to at most {have} in total")
        raise DataError(f"{k_shot} shots per class asked, but class {short[0]} has only {have} training images; "
                        f"lower --shots (or the profile's shots) to at most {have}")
    if query_pool == "test" and n_query is not None:
        shortq = [data.class_names[c] for c in class_ids if int(test_counts[c]) < n_query]
        if shortq:
            have = int(test_counts[data.class_id(shortq[0])])
            raise DataError(f"{n_query} queries per class asked, but class {shortq[0]} has only {have} test images; "
                            f"lower the profile's queries to at most {have} or use 'all'")
    elif query_pool == "test":
        empty = [data.class_names[c] for c in class_ids if int(test_counts[c]) == 0]
        if empty:
            raise DataError(f"class {empty[0]} has no test images to query; check the dataset's test/val split "
                            "or leave the class out of the split")
    pools = _class_pools(data, class_ids)
    episodes = []
    for i in range(n_episodes):
        rng = _rng(seed, i, 7919)
        classes = tuple(int(c) for c in rng.choice(np.asarray(class_ids), size=n_way, replace=False))
        support, query, qlabels = [], [], []
        for pos, c in enumerate(classes):
            train_idx, test_idx = pools[c]
            crng = _rng(seed, i, c, 104729)
            perm = torch.from_numpy(crng.permutation(len(train_idx)))
            support.append(train_idx[perm[:k_shot]])
            if query_pool == "train":
                q = train_idx[perm[k_shot:k_shot + n_query]]
            elif n_query is None:
                q = test_idx
            else:
                q = test_idx[torch.from_numpy(crng.permutation(len(test_idx))[:n_query])]
            query.append(q)
            qlabels.append(torch.full((len(q),), pos, dtype=torch.long))
        ep = Episode(index=i, classes=classes, support=torch.cat(support), query=torch.cat(query), k_shot=k_shot,
                     query_labels=torch.cat(qlabels))
        episodes.append(ep)
    return episodes
