"""`ImageSet`: a whole dataset decoded once into one uint8 tensor.

Why one tensor: every method then gathers batches by index (no per-image PIL work), which is what
makes the data path fast on a 2-core CPU, and the same tensor can live on the GPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

TRAIN_POOL = 0
TEST_POOL = 1


@dataclass
class ImageSet:
    """Decoded images with labels, class names and each image's pool (train or test).

    images: uint8 [N, 3, H, W]; labels: int64 [N] indexing `class_names`; pool: uint8 [N] with
    TRAIN_POOL (shots and continual training come from here) or TEST_POOL (queries come from here).
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    pool: torch.Tensor
    synthetic: bool = False
    source: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N,3,H,W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (n,) or self.pool.shape != (n,):
            raise ValueError("labels and pool must have one entry per image")
        self.labels = self.labels.long()
        self.pool = self.pool.to(torch.uint8)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def indices(self, class_id: int, pool: int) -> torch.Tensor:
        """Indices of one class's images in one pool, in stored (deterministic) order."""
        mask = (self.labels == class_id) & (self.pool == pool)
        return torch.nonzero(mask, as_tuple=False).flatten()

    def counts(self, pool: int) -> torch.Tensor:
        """Images per class in one pool, as an int64 tensor of length num_classes."""
        sel = self.labels[self.pool == pool]
        return torch.bincount(sel, minlength=self.num_classes)

    def class_id(self, name: str) -> int:
        try:
            return self.class_names.index(name)
        except ValueError as exc:
            raise KeyError(name) from exc
