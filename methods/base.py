"""The `Method` interface every method implements, and the data it receives and returns."""
from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from tasks.imageset import ImageSet
from tasks.splits import ClassSplit


@dataclass
class SourceData:
    """What `prepare` may learn from: the whole ImageSet, the class division, the seed.

    Methods train only on `base_ids` classes (and, where a protocol says so, `open_ids`);
    novel classes are never touched before `run_episode`.
    """

    data: ImageSet
    split: ClassSplit
    seed: int
    dataset: str = ""

    @property
    def base_ids(self) -> list[int]:
        return self.split.ids(self.data, "base")

    @property
    def open_ids(self) -> list[int]:
        return self.split.ids(self.data, "open_world")

    @property
    def novel_ids(self) -> list[int]:
        return self.split.ids(self.data, "novel")

    def fingerprint(self) -> dict:
        """What identifies the training data of an artifact (for cache keys)."""
        return {"dataset": self.dataset or self.data.name, "source": self.data.extra.get("checksum", self.data.source),
                "image_size": self.data.image_size, "n_images": int(self.data.images.shape[0]),
                "split": self.split.to_json(), "seed": self.seed}


@dataclass
class EpisodeData:
    """One few-shot task: uint8 images (class-major) with labels 0..N-1."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    n_way: int
    k_shot: int
    seed: int
    index: int = 0


@dataclass
class EpisodeResult:
    """Final accuracy in [0, 1]; `curve` is per-epoch query accuracy for methods that train on the support."""

    accuracy: float
    curve: list[float] | None = None
    wall_s: float = 0.0
    params: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Method(abc.ABC):
    """A few-shot learner. `prepare` trains on base classes once (cached); `run_episode` adapts and predicts."""

    name: str = ""
    #: True when run_episode trains on the support set and fills EpisodeResult.curve.
    records_curve: bool = False

    def __init__(self, device: torch.device | str = "cpu", **options: Any):
        self.device = torch.device(device)
        self.options = options

    @abc.abstractmethod
    def prepare(self, source: SourceData, profile: Mapping[str, Any], cache: Any) -> None:
        """(Meta-)train on base classes once; load from `cache` when the same config ran before."""

    @abc.abstractmethod
    def run_episode(self, episode: EpisodeData, profile: Mapping[str, Any]) -> EpisodeResult:
        """Adapt on the support set, evaluate on the query set; never mutate the prepared state."""


def method_profile(profile: Mapping[str, Any], family: str) -> dict[str, Any]:
    """The knobs of one method: `[individual]` (shared training recipe) overlaid by `[methods.<family>]`."""
    merged = dict(profile.get("individual", {}))
    merged.update(profile.get("methods", {}).get(family, {}))
    return merged
