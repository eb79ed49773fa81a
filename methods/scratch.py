"""Learning from scratch: the individual architecture, randomly initialised for every episode.

The paper's reference point for learngene: identical optimiser (SGD lr 0.005, momentum 0.9, weight
decay 5e-4), batch 32, epochs and augmentation; only the initialisation differs (as in the paper's experimental setup).
"""
from __future__ import annotations

import time
from typing import Any

import torch

from methods.backbones import IndividualNet, count_params
from methods.base import EpisodeData, EpisodeResult, Method, SourceData
from methods.registry import register
from methods.settings import IndividualSettings
from methods.stacked import StackedEpisodes, episode_result
from methods.training import Recipe, rng, train_supervised


@register("scratch", "Learning from scratch: the individual 7-conv network, random init, SGD on the support set",
          settings=IndividualSettings)
class Scratch(StackedEpisodes, Method):
    """Stacked episodes (methods/stacked.py) on CUDA: results equal `run_episode`'s up to float rounding."""

    records_curve = True
    episode_epochs_field = "epochs"
    # Facts (methods.base.MethodFacts): learngene's control (same individual network, nothing inherited).
    experiments = frozenset({"table2", "table3", "fig4"})
    roles = frozenset({"opponent", "control"})
    report_order = 90
    budget_knob = ("individual", "epochs")

    def prepare(self, source: SourceData, settings: IndividualSettings, cache: Any) -> None:
        self.image_size = source.data.image_size
        self.s = settings

    def new_model(self, episode: EpisodeData) -> torch.nn.Module:
        return IndividualNet(episode.n_way, self.image_size, width=self.s.width)

    def run_episode(self, episode: EpisodeData) -> EpisodeResult:
        t0 = time.perf_counter()
        # Batch order and augmentation (g) and initialisation are functions of (cell seed, episode),
        # the same streams learngene uses, so the two are paired episode by episode.
        g = rng(episode.seed, "episode", episode.index)
        model, _ = self.start_episode(episode)
        curve = train_supervised(model, episode.support_x, episode.support_y, Recipe.of(self.s), generator=g,
                                 device=self.device, eval_x=episode.query_x, eval_y=episode.query_y,
                                 curve=episode.record_curve)
        return episode_result(episode, curve, time.perf_counter() - t0, count_params(model))

    def _run_stack(self, episodes: list[EpisodeData]) -> list[EpisodeResult]:
        t0 = time.perf_counter()
        nets = [self.start_episode(ep)[0] for ep in episodes]  # each initialised exactly as run_episode's
        curves, _ = self.train_stack(nets, episodes, Recipe.of(self.s))
        wall = (time.perf_counter() - t0) / len(episodes)  # the stack's wall time, shared equally
        return [episode_result(ep, c, wall, count_params(net)) for ep, c, net in zip(episodes, curves, nets, strict=True)]
