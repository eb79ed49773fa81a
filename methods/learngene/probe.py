"""Probes of the collective model's features: does what learngene inherits separate novel classes?

Learngene can only help if the collective network it inherits from learnt features that transfer. These
two analysis methods answer that directly on the Table 3 episodes, with no training on the support
set: embed support and queries with the collective network's conv trunk (all 13 blocks, so the
features come *out of* the inherited top blocks), and classify each query by the nearest class mean.

- `collective-ncm`: the trunk at the learngene checkpoint, exactly as learngene inherits it (BN running
  statistics included).
- `collective-ncm-random`: the same architecture (the checkpoint's widths, widenings included),
  randomly initialised, BN running statistics re-estimated on base-class episodes. The gap between
  the two is what continual training put into the features.

They are rows of Figure 3's analysis, not of Table 3: they are probes, not few-shot learners.

The trained trunk is whatever ancestor the settings name (`LearngeneSettings.ancestor`, built by
`stages.ANCESTORS`), its blocks and pools as the ancestor ran them (`AncestorTrunk`), so issue 22's
controls are probed by the same code (`methods/learngene/study.py` registers one probe per ancestor).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from methods.backbones import CollectiveNet, conv_block
from methods.base import EpisodeData, EpisodeResult, Method, SourceData
from methods.episodic import meta_train_tasks, recalibrate_bn
from methods.learngene.collective import architecture_of
from methods.learngene.stages import (
    ANCESTORS,
    AncestorState,
    ancestor_build_ratio,
    ancestor_run,
    checkpoint_entry,
    collective_artifact,
    collective_key,
    collective_passes,
)
from methods.protonet import nearest_mean_episode
from methods.registry import register
from methods.settings import MIN_IMAGE_SIZE, LearngeneSettings
from methods.training import derived_seed, seeded

#: Base-class episodes (5-way, 10 shots + 15 queries each) that set the random trunk's BN statistics.
BN_EPISODES = 20


class AncestorTrunk(nn.Module):
    """An ancestor's conv blocks with its pools, flattened after the last: the features that come out of
    the blocks a learngene inherits (for a collective network, exactly `CollectiveNet.features`)."""

    def __init__(self, ancestor: AncestorState):
        super().__init__()
        if ancestor.pool_after is None:
            raise ValueError(f"the ancestor ({ancestor.provenance}) does not record where it pools; it cannot be probed")
        self.blocks = nn.ModuleList()
        for i, w in enumerate(ancestor.widths):
            block = {k[len(f"blocks.{i}."):]: v for k, v in ancestor.state.items() if k.startswith(f"blocks.{i}.")}
            self.blocks.append(conv_block(int(block["0.weight"].shape[1]), int(w)))
            self.blocks[-1].load_state_dict(block)
        self.pool_after = tuple(ancestor.pool_after)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x)
            for _ in range(self.pool_after.count(i)):
                x = self.pool(x)
        return x.flatten(1)


class Trunk(nn.Module):
    """The collective network's conv trunk as an embedding (flattened, after the last pool)."""

    def __init__(self, net: CollectiveNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


@register("collective-ncm", "Probe: nearest class mean on the collective network's features at the learngene "
          "checkpoint (no support-set training)", family="learngene", settings=LearngeneSettings)
class CollectiveNCM(Method):
    """Nearest class mean on the collective trunk at the learngene checkpoint (see module docstring)."""

    family = "learngene"
    random_init = False
    # Facts (methods.base.MethodFacts): Figure 3's analysis rows, run whenever learngene is.
    needs_ancestor = True
    min_image_size = MIN_IMAGE_SIZE["collective"]
    experiments = frozenset({"fig3"})
    runs_with = frozenset({"learngene"})
    compared_with = "collective-ncm-random"
    budget_knob = ("collective", "epochs")

    @classmethod
    def ancestor_passes(cls, profile: Mapping[str, Any]) -> float:
        return collective_passes(profile)

    @classmethod
    def cost_ratio(cls, settings: LearngeneSettings, reference: LearngeneSettings,
                   image_size: int) -> tuple[float, float | None]:
        """Its build is its ancestor's, as learngene's (`stages.ancestor_build_ratio`); its episodes
        train nothing."""
        return 1.0, ancestor_build_ratio(settings, reference, image_size)

    @classmethod
    def artifact_group(cls, family: str, settings: LearngeneSettings) -> tuple:
        """The collective run it reads, grouped as `Learngene.artifact_group` groups it: the pool then
        does not hand a probe cell out while that run is being built (its worker would wait on the
        lock), and the cost model counts the build once."""
        return (family, ancestor_run(settings.ancestor), settings.faithful_softmax, settings.head,
                collective_key(settings.collective))

    def prepare(self, source: SourceData, settings: LearngeneSettings, cache: Any) -> None:
        c = settings.collective
        if self.random_init:
            entry = checkpoint_entry(collective_artifact(source, c, cache, self.device), c, c.learngene_task)
            with seeded(derived_seed(source.seed, "collective-ncm-random")):
                self.trunk = Trunk(architecture_of(entry)).to(self.device)
            recalibrate_bn(self.trunk, meta_train_tasks(source, 5, 10, 15, BN_EPISODES,
                                                        derived_seed(source.seed, "collective-ncm-bn"), self.device))
        else:  # the settings' ancestor exactly as learngene inherits it (BN running statistics included)
            self.trunk = AncestorTrunk(ANCESTORS[settings.ancestor](source, settings, cache, self.device)).to(self.device)
        self.trunk.eval()

    def run_episode(self, episode: EpisodeData) -> EpisodeResult:
        return nearest_mean_episode(self.trunk, episode, self.device)


@register("collective-ncm-random", "Probe: nearest class mean on the collective architecture, randomly initialised "
          "(the reference for collective-ncm)", family="learngene", settings=LearngeneSettings)
class RandomCollectiveNCM(CollectiveNCM):
    """The same trunk, randomly initialised: what the features are worth without continual training."""

    random_init = True
    compared_with = ""
