"""Issue 22's study variants: why learngene loses here. Learngene inherited from other ancestors (the
same network trained jointly, the fine-tuning baseline's pre-trained network, a random one), full
fine-tuning of that pre-trained network, and a probe of each ancestor's own features.

`learngene-continual` is `learngene` itself (the same settings) as a study row, so its matrix cells
record the resolutions too and stay apart from Table 3's. The inheritance matrix (k = 0..7
inherited blocks, position, frozen or EWC-trained, matched resolution) is the cell options `inherit_blocks`, `inherit_position`, `frozen_gene` and
`match_resolution` on these variants (or on `learngene`): no registration per cell. Every variant
here is a study row (role `study`), never part of `--method all` (`in_all = False`) or of
`--method checks`, and of no experiment of the paper's (`experiments`: only `why`, whose rows its
profile section names), so neither run grows.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

import torch

from methods.base import EpisodeData, EpisodeResult
from methods.learngene.inherit import gene_resolutions
from methods.learngene.method import _S, Learngene
from methods.learngene.probe import CollectiveNCM
from methods.learngene.stages import ancestor_run, collective_key
from methods.registry import register
from methods.settings import LearngeneSettings

#: The ancestors whose artifact another method family builds (cells wait on that family's build).
BUILT_BY = {"pretrained-individual": "finetune"}
#: The variants whose ancestor is the fine-tuning baseline's pre-training: its epochs are their budget.
PRETRAINED = {"budget_knob": ("methods", "finetune", "pretrain_epochs")}


def _group(family: str, s: LearngeneSettings) -> Hashable:
    """The artifact a variant waits for: the fine-tuning pre-training, or its ancestor's run."""
    return BUILT_BY.get(s.ancestor) or (family, ancestor_run(s.ancestor), s.faithful_softmax, s.head,
                                        collective_key(s.collective))


@register("learngene-continual", "Study: learngene (the paper's continual ancestor) as a study row, which records "
          "where its inherited blocks ran", **_S, ancestor="continual")
@register("learngene-joint", "Study: learngene from the collective network trained jointly on all base classes",
          **_S, ancestor="joint")
@register("learngene-pretrained", "Study: learngene from the top blocks of the fine-tuning baseline's pre-trained "
          "network", **_S, ancestor="pretrained-individual")
@register("learngene-random", "Study: learngene from a randomly initialised collective network", **_S,
          ancestor="random")
@register("learngene-random-bn", "Study: learngene from the random collective network with BN statistics "
          "estimated on base-class images", **_S, ancestor="random-bn")
@register("finetune-full", "Study: all 7 blocks of the fine-tuning baseline's pre-trained network trained on the "
          "support set (fresh head, no EWC)", **_S, ancestor="pretrained-individual", inherit_blocks=7,
          inherit_position="front", ewc_lambda=0.0)
class LearngeneStudy(Learngene):
    """Learngene as a study row: its result also records where each inherited block ran."""

    in_all = False
    experiments = frozenset({"why"})  # rows of bench/experiments/why.py, by its profile section
    roles = frozenset({"study"})
    report_order = None
    variant_facts: ClassVar[Mapping[str, Mapping[str, Any]]] = {"learngene-pretrained": PRETRAINED,
                                                                 "finetune-full": PRETRAINED}

    @classmethod
    def artifact_group(cls, family: str, settings: LearngeneSettings) -> Hashable:
        return _group(family, settings)

    def _result(self, episode: EpisodeData, curve: list[float], wall_s: float, model: torch.nn.Module,
                penalty_final: float | None) -> EpisodeResult:
        res = super()._result(episode, curve, wall_s, model, penalty_final)
        px = gene_resolutions(self.gene, model)
        res.extra.update({f"gene_{k}": v for k, v in px.items()}, frozen_gene=self.s.frozen_gene,
                         fresh_front_blocks=sum(isinstance(m, torch.nn.Sequential) for m in model.front))
        for k, v in px.items():  # numbers (the stored rows keep numbers only): the first and last inherited block
            if v:
                res.extra.update({f"gene_{k}_first": v[0], f"gene_{k}_last": v[-1]})
        return res


@register("ancestor-ncm-joint", "Probe: nearest class mean through the jointly trained collective network",
          family="learngene", settings=LearngeneSettings, ancestor="joint")
@register("ancestor-ncm-pretrained", "Probe: nearest class mean through the fine-tuning baseline's pre-trained "
          "network", family="learngene", settings=LearngeneSettings, ancestor="pretrained-individual")
@register("ancestor-ncm-random", "Probe: nearest class mean through the untrained random collective network "
          "(fresh BN statistics, as inherited)", family="learngene", settings=LearngeneSettings, ancestor="random")
@register("ancestor-ncm-random-bn", "Probe: nearest class mean through the untrained random collective network "
          "with BN statistics of base-class images", family="learngene", settings=LearngeneSettings,
          ancestor="random-bn")
class AncestorNCM(CollectiveNCM):
    """The ancestor's own feature quality (`collective-ncm` for another ancestor): a study row."""

    in_all = False
    experiments = frozenset({"why"})  # rows of bench/experiments/why.py, by its profile section
    roles = frozenset({"study"})
    runs_with = frozenset()
    compared_with = ""
    variant_facts: ClassVar[Mapping[str, Mapping[str, Any]]] = {"ancestor-ncm-pretrained": PRETRAINED}

    @classmethod
    def artifact_group(cls, family: str, settings: LearngeneSettings) -> Hashable:
        return _group(family, settings)
