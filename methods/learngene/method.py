"""The learngene method (Wang, Geng et al., AAAI 2022): an individual model = a fresh random front and
head + the learngene inherited from the collective model, trained on the support set with the EWC
retain loss on the inherited blocks.

The variants below differ only in `LearngeneSettings` fields (which ancestor and checkpoint, which
position, EWC weight, the released code's behaviour); the ancestors they inherit from are built and
cached by the builders of `methods.learngene.stages.ANCESTORS`.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from methods.backbones import count_params
from methods.base import EpisodeData, EpisodeResult, Method, SourceData
from methods.learngene.ewc import EWCPenalty, fisher_diagonal
from methods.learngene.inherit import build_individual, extract_learngene, gene_param_names
from methods.learngene.stages import (
    ANCESTORS,
    ancestor_build_ratio,
    ancestor_run,
    collective_key,
    collective_passes,
)
from methods.registry import register
from methods.settings import MIN_IMAGE_SIZE, LearngeneSettings
from methods.stacked import StackedEpisodes, StackedIndividualNet, episode_result, stack_named
from methods.training import Recipe, rng, train_supervised

_S = {"family": "learngene", "settings": LearngeneSettings}


@register("learngene", "Learngene: inherit the collective model's top-3 blocks, train with the EWC retain loss", **_S)
@register("learngene-ewc0", "Learngene with λ=0 (no retain loss; what the released code effectively ran)",
          **_S, ewc_lambda=0.0)
@register("learngene-ewc1000", "Learngene with λ=1000", **_S, ewc_lambda=1000.0)
@register("learngene-ewc5000", "Learngene with λ=5000", **_S, ewc_lambda=5000.0)
@register("learngene-openworld", "Learngene from the collective model after learning recognised open-world classes",
          **_S, ancestor="open-world")
@register("learngene-front", "Learngene from the front 3 blocks of the uniform collective network (Fig. 6b)",
          **_S, ancestor="continual-uniform", inherit_position="front")
@register("learngene-middle", "Learngene from the middle 3 blocks of the uniform collective network (Fig. 6b)",
          **_S, ancestor="continual-uniform", inherit_position="middle")
@register("learngene-top-uniform", "Learngene from the top 3 blocks of the uniform collective network (Fig. 6b)",
          **_S, ancestor="continual-uniform", inherit_position="top")
@register("learngene-official", "The released code's behaviour: double softmax, EWC off, weights leak across tasks, "
          "4-image last batch", **_S, faithful_softmax=True, ewc_lambda=0.0, reuse_across_tasks=True, last_batch="keep")
class Learngene(StackedEpisodes, Method):
    """Learngene: a fresh individual model per episode = new random front + inherited learngene + new head.

    On CUDA, episodes train stacked (methods/stacked.py), the EWC penalty included (a sum of
    elementwise terms, so each episode's gradient stays its own); not with `reuse_across_tasks`,
    whose episodes depend on each other."""

    records_curve = True
    episode_epochs_field = "epochs"
    # Facts (methods.base.MethodFacts): every variant inherits from the collective network (>= 32 px);
    # `learngene` is the paper's method, the rest are Table 3 rows or one figure's analysis variants.
    needs_ancestor = True
    min_image_size = MIN_IMAGE_SIZE["collective"]
    experiments = frozenset({"table3"})
    budget_knob = ("collective", "epochs")
    variant_facts: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "learngene": {"experiments": {"table3", "fig4", "fig6:checkpoint"}, "roles": {"headline"},
                      "report_order": 110},
        "learngene-ewc0": {"roles": {"opponent"}, "report_order": 100},
        "learngene-ewc5000": {"report_order": 120},
        "learngene-official": {"in_all": False},  # the released code's behaviour: a check, `make checks`
        "learngene-ewc1000": {"experiments": set()},  # the quick profile's λ: `learngene` itself
        "learngene-openworld": {"experiments": {"table2"}, "runs_with": {"learngene"}, "paper_name": "learngene"},
        # Figure 6b's positions, in the legend's order (report_order); the last, top, is the paper's choice
        "learngene-front": {"experiments": {"fig6:position"}, "runs_with": {"learngene"}, "label": "front (conv 1-3)",
                            "report_order": 200},
        "learngene-middle": {"experiments": {"fig6:position"}, "runs_with": {"learngene"},
                             "label": "middle (conv 6-8)", "report_order": 210},
        "learngene-top-uniform": {"experiments": {"fig6:position"}, "runs_with": {"learngene"},
                                  "label": "top (conv 11-13)", "report_order": 220},
    }

    @classmethod
    def ancestor_passes(cls, profile: Mapping[str, Any]) -> float:
        return collective_passes(profile)

    @classmethod
    def cost_ratio(cls, settings: LearngeneSettings, reference: LearngeneSettings,
                   image_size: int) -> tuple[float, float | None]:
        """Episodes as any support-set trainer (the individual's width); the build is the ancestor's: its
        planned training FLOPs over the reference's (the scale trend's collective runs, the study's
        jointly trained and random ancestors: `stages.ancestor_build_ratio`)."""
        episodes, _ = super().cost_ratio(settings, reference, image_size)
        return episodes, ancestor_build_ratio(settings, reference, image_size)

    @classmethod
    def artifact_group(cls, family: str, settings: LearngeneSettings) -> tuple:
        """The collective run a variant inherits from (its ancestor's run: the uniform network and the
        double-softmax one are other runs, and so are other collective settings; EWC, checkpoints and the
        open-world stage reuse one)."""
        return (family, ancestor_run(settings.ancestor), settings.faithful_softmax, settings.head,
                collective_key(settings.collective))

    def prepare(self, source: SourceData, settings: LearngeneSettings, cache: Any) -> None:
        """Take the learngene from the settings' ancestor (built and cached on first use)."""
        self.s = settings
        self.image_size = source.data.image_size
        ancestor = ANCESTORS[settings.ancestor](source, settings, cache, self.device)
        self.gene = extract_learngene(ancestor, settings.inherit_blocks, settings.inherit_position)
        self.gene_source = ancestor.provenance
        self.ancestor_facts = ancestor.facts  # on demand: the scale experiment stores them once per cell
        self._carry: torch.nn.Module | None = None

    def new_model(self, episode: EpisodeData) -> torch.nn.Module:
        if episode.index == 0:
            # A run's sequence of target tasks starts at episode 0: the official leak carries weights
            # from task to task *within* that sequence, never from another cell run in this process.
            self._carry = None
        if self.s.reuse_across_tasks and self._carry is not None:
            return self._carry  # the released code's leak: start from the previous task's weights
        return self.individual_model(episode.n_way)

    def episode_state(self, model: torch.nn.Module, episode: EpisodeData) -> dict | None:
        """The Fisher diagonal of the inherited, trained parameters (None: no EWC, k = 0 or a frozen gene)."""
        s, names = self.s, gene_param_names(model)
        return fisher_diagonal(model, episode.support_x, episode.support_y, names, n_samples=s.fisher_samples,
                               estimator=s.fisher_estimator, generator=rng(episode.seed, "fisher", episode.index)) \
            if s.ewc_lambda > 0 and names else None

    def run_episode(self, episode: EpisodeData) -> EpisodeResult:
        s = self.s
        t0 = time.perf_counter()
        g = rng(episode.seed, "episode", episode.index)  # the streams scratch uses (paired)
        model, fisher = self.start_episode(episode)
        penalty = EWCPenalty(model, fisher, s.ewc_lambda) if fisher is not None else None
        curve = train_supervised(model, episode.support_x, episode.support_y, Recipe.of(s), generator=g,
                                 device=self.device, eval_x=episode.query_x, eval_y=episode.query_y,
                                 extra_loss=penalty, curve=episode.record_curve, params=self.optimizer_params(model))
        self._carry = model if s.reuse_across_tasks else None
        final = float(penalty(model).detach()) if penalty is not None else None
        return self._result(episode, curve, time.perf_counter() - t0, model, final)

    def _result(self, episode: EpisodeData, curve: list[float], wall_s: float, model: torch.nn.Module,
                penalty_final: float | None) -> EpisodeResult:
        """One episode's record (either path): the learngene's blocks, widths and source, the EWC penalty."""
        extra = {"ewc_lambda": self.s.ewc_lambda, "gene_blocks": [i + 1 for i in self.gene["indices"]],
                 "gene_widths": list(self.gene["widths"]), "gene_source": self.gene_source,
                 "gene_params": sum(p.numel() for p in model.gene.parameters()),
                 **({"ewc_penalty_final": penalty_final} if penalty_final is not None else {})}
        return episode_result(episode, curve, wall_s, count_params(model), extra)

    def individual_model(self, n_way: int) -> torch.nn.Module:
        """A fresh individual model around the learngene (torch's seed set by the caller)."""
        return build_individual(self.gene, n_way, self.image_size, self.s.width, frozen=self.s.frozen_gene,
                                match_resolution=self.s.match_resolution)

    def optimizer_params(self, model: torch.nn.Module) -> list | None:
        """What SGD optimises (None = every parameter at the recipe's lr); recipe checks override it."""
        return None

    def uses_stacking(self) -> bool:  # a stack trains every block (no frozen gene) and anchors an EWC penalty
        return super().uses_stacking() and not (self.s.reuse_across_tasks or self.s.frozen_gene or not self.gene["blocks"])

    def _run_stack(self, episodes: list[EpisodeData]) -> list[EpisodeResult]:
        s = self.s
        t0 = time.perf_counter()
        nets, fishers = zip(*[self.start_episode(ep) for ep in episodes], strict=True)  # as run_episode draws them
        penalty: list[EWCPenalty] = []

        def on_stack(model: StackedIndividualNet) -> None:
            if s.ewc_lambda > 0:  # one penalty over the stacked parameters = the sum of the episodes' penalties
                penalty.append(EWCPenalty(model, stack_named(list(fishers)), s.ewc_lambda))

        curves, model = self.train_stack(list(nets), episodes, Recipe.of(s), on_stack=on_stack,
                                         extra_loss=(lambda m: penalty[0](m)) if s.ewc_lambda > 0 else None)
        wall = (time.perf_counter() - t0) / len(episodes)  # the stack's wall time, shared equally
        finals = penalty[0].per_episode(model, len(episodes)) if penalty else [None] * len(episodes)
        return [self._result(ep, c, wall, net, f) for ep, c, net, f in zip(episodes, curves, nets, finals, strict=True)]
