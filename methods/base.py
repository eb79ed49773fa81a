"""The `Method` interface every method implements, and the data it receives and returns."""
from __future__ import annotations

import abc
import time
from collections.abc import Hashable
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
    record_curve: bool = True
    """Evaluate the query set after every epoch (the learning curves of Figures 4 and 6). False: only
    once at the end, which is all a table needs; the final accuracy is the same either way."""


@dataclass
class EpisodeResult:
    """Final accuracy in [0, 1]; `curve` is per-epoch query accuracy for methods that train on the support."""

    accuracy: float
    curve: list[float] | None = None
    wall_s: float = 0.0
    params: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Method(abc.ABC):
    """A few-shot learner: trained once on base classes, then adapted to each episode.

    A method is registered by name with the frozen dataclass of its settings
    (`methods.registry.register`). The bench builds the settings once from the profile and passes them
    to `prepare`; `prepare` trains on `source`'s base classes (or loads the result from `cache`, keyed by
    the settings' fields), and `run_episode` adapts to one episode's support set and scores its queries.

    Args:
        device: where tensors and models live ("cpu", "cuda", a `torch.device`).

    Example::

        import methods

        m = methods.get("protonet", device="cpu")
        m.prepare(source, methods.settings_for("protonet", profile), cache)
        result = m.run_episode(episode)        # EpisodeResult(accuracy=..., curve=..., params=...)
    """

    name: str = ""
    #: True when run_episode trains on the support set and fills EpisodeResult.curve.
    records_curve: bool = False
    #: False for analysis variants that `--method all` leaves out (they run only when named).
    in_all: bool = True

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)

    @classmethod
    def artifact_group(cls, family: str, settings: Any) -> Hashable:
        """Which trained state `prepare` builds or loads, coarsely: cells of one group wait for one
        build. Executors start one cell per group before a second, so a worker does not sit on the
        artifact lock while another builds. Default: one group per method family."""
        return family

    @abc.abstractmethod
    def prepare(self, source: SourceData, settings: Any, cache: Any) -> None:
        """(Meta-)train on base classes once; load from `cache` when the same settings ran before."""

    @abc.abstractmethod
    def run_episode(self, episode: EpisodeData) -> EpisodeResult:
        """Adapt on the support set, evaluate on the query set; never mutate the prepared state."""

    def run_episodes(self, episodes: list[EpisodeData]) -> list[EpisodeResult]:
        """`run_episode` for each episode, in order; a method may override it to adapt several at once
        (scratch stacks episodes on CUDA, methods/stacked.py). Each result's `wall_s` is the wall time
        of its episode (of a stack: the stack's wall time divided by its size)."""
        out = []
        for e in episodes:
            t0 = time.perf_counter()
            res = self.run_episode(e)
            res.wall_s = time.perf_counter() - t0
            out.append(res)
        return out
