"""Shared machinery of the episodic meta-learners (MAML family, ProtoNet, MatchingNet).

Why one module: the three families must draw their meta-training episodes, augment them, seed their
initialisation and key their cached weights in the same way, so their numbers differ only by the
algorithm. Meta-training episodes come from `tasks.episodes.sample_episodes` over the base classes
(shots and queries both from each class's train pool, disjoint, as the reference ProtoNet and MAML
code do; base-class test images stay held out), drawn in seeded chunks so that a
60 000-iteration paper run does not build all its index lists up front.
"""
from __future__ import annotations

import abc
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from methods.backbones import build_encoder
from methods.base import Method, SourceData
from methods.settings import BackboneSettings, EpisodicSettings, to_json
from methods.training import derived_seed, fit, seeded
from tasks.augment import eval_transform, train_transform
from tasks.episodes import sample_episodes

#: Bump when a change to the meta-training code makes cached weights stale.
#: 2: keyed by the settings dataclasses. 3: meta-training queries come from the base classes' train
#: pool (were: their test pool).
ARTIFACT_VERSION = 3
_CHUNK = 64  # episodes sampled per call to sample_episodes


def build_backbone(image_size: int, s: BackboneSettings) -> nn.Module:
    """The individual model's conv trunk at the profile's width (capacity matched to the individual model)."""
    return build_encoder(s.backbone, image_size, s.width)


@dataclass
class TaskTensors:
    """One episode as float tensors on the device: class-major support/query, labels 0..N-1."""

    xs: torch.Tensor
    ys: torch.Tensor
    xq: torch.Tensor
    yq: torch.Tensor


def meta_train_tasks(source: SourceData, n_way: int, k_shot: int, n_query: int, n_tasks: int, seed: int,
                     device: torch.device, augment: bool = True, crop_padding: int = 0) -> Iterator[TaskTensors]:
    """`n_tasks` seeded base-class episodes as tensors, augmented with the suite's shared train transform."""
    data, base = source.data, source.base_ids
    gen = torch.Generator().manual_seed(derived_seed(seed, "augment"))
    done = 0
    chunk = 0
    while done < n_tasks:
        size = min(_CHUNK, n_tasks - done)
        for ep in sample_episodes(data, base, n_way, k_shot, n_query, size, derived_seed(seed, "chunk", chunk),
                                  query_pool="train"):
            xs_u8 = data.images[ep.support].to(device)
            xq_u8 = data.images[ep.query].to(device)
            if augment:
                xs, xq = train_transform(xs_u8, gen, crop_padding), train_transform(xq_u8, gen, crop_padding)
            else:
                xs, xq = eval_transform(xs_u8), eval_transform(xq_u8)
            yield TaskTensors(xs, ep.support_labels.to(device), xq, ep.query_labels.to(device))
        done += size
        chunk += 1


def artifact_config(kind: str, source: SourceData, settings: Any, test_only: tuple[str, ...] = ()) -> dict[str, Any]:
    """The cache key of meta-trained weights: the data and every field of the settings except the
    `test_only` ones (read only at test time, e.g. MAML's test-time inner steps), so that changing
    those re-uses the meta-trained weights instead of training them again."""
    fields = {k: v for k, v in to_json(settings).items() if k not in test_only}
    return {"kind": kind, "version": ARTIFACT_VERSION, "source": source.fingerprint(), "settings": fields}


def state_to_cpu(module: nn.Module) -> dict[str, torch.Tensor]:
    """A state_dict that `torch.load(weights_only=True)` can read back on any device."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def halving_scheduler(opt: torch.optim.Optimizer, every: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Snell et al.'s schedule: halve the learning rate every `every` meta-iterations (0 = never)."""
    return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, int(every)) if every else 10**12, gamma=0.5)


@torch.no_grad()
def recalibrate_bn(encoder: nn.Module, tasks: Iterator[TaskTensors]) -> None:
    """Replace BN running statistics by their exact average over `tasks` at the final weights.

    Why: with momentum 0.1 the running statistics lag the weights by ~10 iterations, and after the few
    hundred meta-iterations of a CPU profile they are far enough off to collapse eval-mode embeddings.
    A cumulative average (momentum=None) over a few base-class episodes costs seconds and changes
    nothing a long run would not converge to."""
    layers = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
              and m.track_running_stats]
    if not layers:
        return
    saved = [m.momentum for m in layers]
    was = encoder.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    encoder.train()
    try:
        for t in tasks:
            encoder(torch.cat([t.xs, t.xq]))
    finally:
        for m, mom in zip(layers, saved, strict=True):
            m.momentum = mom
        encoder.train(was)


def train_episodically(module: nn.Module, bn_module: nn.Module,
                       episode_loss: Callable[[TaskTensors, int], torch.Tensor], source: SourceData,
                       s: EpisodicSettings, seed: int, device: torch.device) -> list[float]:
    """The metric learners' shared meta-training: Adam over `meta_iterations` seeded base-class
    episodes (lr halved every `lr_halve_every`), then exact BN recalibration of `bn_module` over
    `bn_recalibration_episodes` further episodes. Returns the per-episode training loss."""
    way, shots, queries = s.train_way, s.train_shots, s.train_queries
    log = fit(lambda task: episode_loss(task, way),
              lambda _: meta_train_tasks(source, way, shots, queries, s.meta_iterations, seed, device),
              lambda: torch.optim.Adam(module.parameters(), lr=s.lr),
              scheduler=lambda opt: halving_scheduler(opt, s.lr_halve_every), module=module, keep_losses=True,
              progress="meta-train", total=s.meta_iterations)
    recalibrate_bn(bn_module, meta_train_tasks(source, way, shots, queries, s.bn_recalibration_episodes,
                                               seed + 1, device))
    return log.losses


class MetricLearner(Method):
    """`prepare` shared by the metric learners: build the network under a seeded initialisation,
    meta-train it once with `train_episodically` (cached by the settings' fields), load it in eval mode.

    A subclass sets `family`, builds its network in `build`, names the encoder whose BatchNorm is
    recalibrated (`encoder`), and gives the loss of one training episode (`episode_loss`)."""

    family = ""

    @classmethod
    def artifact_group(cls, family: str, settings: EpisodicSettings) -> Hashable:
        """One group per meta-training budget: the floor (`random-ncm`, no meta-training) builds in
        seconds and must not count, or wait, as ProtoNet's 15-minute build."""
        return family, settings.meta_iterations

    @abc.abstractmethod
    def build(self, image_size: int, settings: EpisodicSettings) -> nn.Module:
        """The whole meta-trained network."""

    @property
    @abc.abstractmethod
    def encoder(self) -> nn.Module:
        """The embedding trunk of `self.net`."""

    @abc.abstractmethod
    def episode_loss(self, task: TaskTensors, way: int) -> torch.Tensor:
        """Query loss of one training episode."""

    def prepare(self, source: SourceData, settings: EpisodicSettings, cache: Any) -> None:
        self.s = settings
        self.image_size = source.data.image_size
        seed = derived_seed(source.seed, self.family)
        with seeded(seed):
            self.net = self.build(self.image_size, settings).to(self.device)
        state = cache.get_or_build(self.family, artifact_config(self.family, source, settings),
                                   lambda: self._meta_train(source, seed))
        self.net.load_state_dict(state["net"])
        self.net.to(self.device).eval()
        self.train_log = state.get("log", [])

    def _meta_train(self, source: SourceData, seed: int) -> dict[str, Any]:
        log = train_episodically(self.net, self.encoder, self.episode_loss, source, self.s, seed, self.device)
        return {"net": state_to_cpu(self.net), "log": log}
