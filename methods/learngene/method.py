"""The learngene method (Wang, Geng et al., AAAI 2022): an individual model = a fresh random front and
head + the learngene inherited from the collective model, trained on the support set with the EWC
retain loss on the inherited blocks.

The variants below differ only in `LearngeneSettings` fields (which collective network and
checkpoint, which position, EWC weight, the released code's behaviour); the cached collective and
open-world stages they inherit from are built in `methods.learngene.stages`.
"""
from __future__ import annotations

import time
from typing import Any

import torch

from methods.backbones import count_params
from methods.base import EpisodeData, EpisodeResult, Method, SourceData
from methods.learngene.ewc import EWCPenalty, fisher_diagonal
from methods.learngene.inherit import build_individual, extract_learngene, gene_param_names
from methods.learngene.stages import checkpoint_entry, collective_artifact, open_world_artifact
from methods.registry import register
from methods.settings import LearngeneSettings
from methods.stacked import StackedEpisodes, StackedIndividualNet, stack_named, train_stacked
from methods.training import derived_seed, rng, train_supervised

_S = {"family": "learngene", "settings": LearngeneSettings}


@register("learngene", "Learngene: inherit the collective model's top-3 blocks, train with the EWC retain loss", **_S)
@register("learngene-ewc0", "Learngene with λ=0 (no retain loss; what the released code effectively ran)",
          **_S, ewc_lambda=0.0)
@register("learngene-ewc1000", "Learngene with λ=1000", **_S, ewc_lambda=1000.0)
@register("learngene-ewc5000", "Learngene with λ=5000", **_S, ewc_lambda=5000.0)
@register("learngene-openworld", "Learngene from the collective model after learning recognised open-world classes",
          **_S, open_world=True)
@register("learngene-front", "Learngene from the front 3 blocks of the uniform collective network (Fig. 6b)",
          **_S, uniform=True, inherit_position="front")
@register("learngene-middle", "Learngene from the middle 3 blocks of the uniform collective network (Fig. 6b)",
          **_S, uniform=True, inherit_position="middle")
@register("learngene-top-uniform", "Learngene from the top 3 blocks of the uniform collective network (Fig. 6b)",
          **_S, uniform=True, inherit_position="top")
@register("learngene-official", "The released code's behaviour: double softmax, EWC off, weights leak across tasks, "
          "4-image last batch", **_S, faithful_softmax=True, ewc_lambda=0.0, reuse_across_tasks=True, last_batch="keep")
class Learngene(StackedEpisodes, Method):
    """Learngene: a fresh individual model per episode = new random front + inherited learngene + new head.

    On CUDA, episodes train stacked (methods/stacked.py), the EWC penalty included (a sum of
    elementwise terms, so each episode's gradient stays its own); not with `reuse_across_tasks`,
    whose episodes depend on each other."""

    records_curve = True

    @classmethod
    def artifact_group(cls, family: str, settings: LearngeneSettings) -> tuple:
        """The collective run a variant inherits from: the uniform network and the double-softmax one
        are other runs; EWC, checkpoints and the open-world stage reuse the same collective model."""
        return family, settings.uniform, settings.faithful_softmax, settings.head

    def prepare(self, source: SourceData, settings: LearngeneSettings, cache: Any) -> None:
        """Take the learngene from the cached collective model (trained here on first use)."""
        s, c = settings, settings.collective
        self.s = s
        self.image_size = source.data.image_size
        if s.open_world:
            art = open_world_artifact(source, c, cache, self.device, faithful_softmax=s.faithful_softmax, head=s.head)
            entry, where = art["final"], "after open-world stage"
        else:
            art = collective_artifact(source, c, cache, self.device, uniform=s.uniform,
                                      faithful_softmax=s.faithful_softmax, head=s.head)
            t = c.learngene_task if s.checkpoint is None else s.checkpoint
            entry, where = checkpoint_entry(art, c, t), f"task {t}"
        self.gene = extract_learngene(entry, s.inherit_blocks, s.inherit_position)
        self.gene_source = where
        self._carry: torch.nn.Module | None = None

    def run_episode(self, episode: EpisodeData) -> EpisodeResult:
        s = self.s
        t0 = time.perf_counter()
        g = rng(episode.seed, "episode", episode.index)  # the streams scratch uses (paired)
        torch.manual_seed(derived_seed(episode.seed, "episode-init", episode.index))
        if episode.index == 0:
            # A run's sequence of target tasks starts at episode 0: the official leak carries weights
            # from task to task *within* that sequence, never from another cell run in this process.
            self._carry = None
        if s.reuse_across_tasks and self._carry is not None:
            model = self._carry  # the released code's leak: start from the previous task's weights
        else:
            model = self.individual_model(episode.n_way)
        model.to(self.device)
        penalty = None
        if s.ewc_lambda > 0:
            fisher = fisher_diagonal(model, episode.support_x, episode.support_y, gene_param_names(model),
                                     n_samples=s.fisher_samples, estimator=s.fisher_estimator,
                                     generator=rng(episode.seed, "fisher", episode.index))
            penalty = EWCPenalty(model, fisher, s.ewc_lambda)
        curve = train_supervised(
            model, episode.support_x, episode.support_y, epochs=s.epochs, lr=s.lr, momentum=s.momentum,
            weight_decay=s.weight_decay, batch_size=s.batch_size, generator=g, device=self.device,
            eval_x=episode.query_x, eval_y=episode.query_y, crop_padding=s.crop_padding, extra_loss=penalty,
            last_batch=s.last_batch, curve=episode.record_curve, params=self.optimizer_params(model))
        if s.reuse_across_tasks:
            self._carry = model
        extra = {"ewc_lambda": s.ewc_lambda, "gene_blocks": [i + 1 for i in self.gene["indices"]],
                 "gene_widths": list(self.gene["widths"]), "gene_source": self.gene_source,
                 "gene_params": sum(p.numel() for p in model.gene.parameters())}
        if penalty is not None:
            extra["ewc_penalty_final"] = float(penalty(model).detach())
        return EpisodeResult(accuracy=curve[-1], curve=curve if episode.record_curve else None, wall_s=time.perf_counter() - t0,
                             params=count_params(model), extra=extra)

    def individual_model(self, n_way: int) -> torch.nn.Module:
        """A fresh individual model around the learngene (torch's seed set by the caller)."""
        return build_individual(self.gene, n_way, self.image_size, self.s.width)

    def optimizer_params(self, model: torch.nn.Module) -> list | None:
        """What SGD optimises (None = every parameter at the recipe's lr); recipe checks override it."""
        return None

    def uses_stacking(self) -> bool:
        return super().uses_stacking() and not self.s.reuse_across_tasks

    def _run_stack(self, episodes: list[EpisodeData]) -> list[EpisodeResult]:
        s = self.s
        t0 = time.perf_counter()
        nets, fishers = [], []
        for ep in episodes:  # initialisation and Fisher exactly as run_episode draws them, in its order
            torch.manual_seed(derived_seed(ep.seed, "episode-init", ep.index))
            net = build_individual(self.gene, ep.n_way, self.image_size, s.width).to(self.device)
            if s.ewc_lambda > 0:
                fishers.append(fisher_diagonal(net, ep.support_x, ep.support_y, gene_param_names(net),
                                               n_samples=s.fisher_samples, estimator=s.fisher_estimator,
                                               generator=rng(ep.seed, "fisher", ep.index)))
            nets.append(net)
        params, gene_params = count_params(nets[0]), sum(p.numel() for p in nets[0].gene.parameters())
        penalty: list[EWCPenalty] = []

        def on_stack(model: StackedIndividualNet) -> None:
            if fishers:  # one penalty over the stacked parameters = the sum of the episodes' penalties
                penalty.append(EWCPenalty(model, stack_named(fishers), s.ewc_lambda))

        curves, model = train_stacked(
            nets, [ep.support_x for ep in episodes], [ep.support_y for ep in episodes], epochs=s.epochs, lr=s.lr,
            momentum=s.momentum, weight_decay=s.weight_decay, batch_size=s.batch_size,
            generators=[rng(ep.seed, "episode", ep.index) for ep in episodes], device=self.device,
            eval_xs=[ep.query_x for ep in episodes], eval_ys=[ep.query_y for ep in episodes],
            crop_padding=s.crop_padding, last_batch=s.last_batch, curve=episodes[0].record_curve,
            extra_loss=(lambda m: penalty[0](m)) if fishers else None, on_stack=on_stack)
        wall = (time.perf_counter() - t0) / len(episodes)  # the stack's wall time, shared equally
        extra = {"ewc_lambda": s.ewc_lambda, "gene_blocks": [i + 1 for i in self.gene["indices"]],
                 "gene_widths": list(self.gene["widths"]), "gene_source": self.gene_source,
                 "gene_params": gene_params}
        finals = _per_episode_penalty(penalty[0], model, len(episodes)) if penalty else None
        return [EpisodeResult(accuracy=c[-1], curve=c if ep.record_curve else None, wall_s=wall, params=params,
                              extra={**extra, **({"ewc_penalty_final": finals[i]} if finals else {})})
                for i, (ep, c) in enumerate(zip(episodes, curves, strict=True))]


@torch.no_grad()
def _per_episode_penalty(penalty: EWCPenalty, model: StackedIndividualNet, n: int) -> list[float]:
    """Each episode's own EWC penalty from the stacked one (its chunk of every stacked tensor)."""
    params = dict(model.named_parameters())
    total = sum((penalty.fisher[k] * (params[k] - penalty.anchor[k]).pow(2)).reshape(n, -1).sum(1)
                for k in penalty.names)
    return [float(v) for v in penalty.lam * 0.5 * total]
