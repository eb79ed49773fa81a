"""Novel-class episodes for end-to-end method tests, with the shuffled-label control."""
from __future__ import annotations

import torch

from methods.base import EpisodeData, SourceData
from tasks.episodes import sample_episodes


def novel_episodes(src: SourceData, shots: int, n: int, shuffle: bool = False) -> list[EpisodeData]:
    """`n` 5-way episodes with 20 queries per class; `shuffle` permutes the support labels so that they
    carry no information about the images (a working method must then stay near chance)."""
    out = []
    for e in sample_episodes(src.data, src.novel_ids, 5, shots, 20, n, seed=11):
        ys = e.support_labels
        if shuffle:
            ys = ys[torch.randperm(len(ys), generator=torch.Generator().manual_seed(e.index))]
        out.append(EpisodeData(src.data.images[e.support], ys, src.data.images[e.query], e.query_labels,
                               5, shots, seed=0, index=e.index))
    return out
