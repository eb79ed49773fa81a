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
from methods.stacked import StackedEpisodes, train_stacked
from methods.training import derived_seed, rng, train_supervised


@register("scratch", "Learning from scratch: the individual 7-conv network, random init, SGD on the support set",
          settings=IndividualSettings)
class Scratch(StackedEpisodes, Method):
    """Stacked episodes (methods/stacked.py) on CUDA: results equal `run_episode`'s up to float rounding."""

    records_curve = True

    def prepare(self, source: SourceData, settings: IndividualSettings, cache: Any) -> None:
        self.image_size = source.data.image_size
        self.s = settings

    def run_episode(self, episode: EpisodeData) -> EpisodeResult:
        s = self.s
        t0 = time.perf_counter()
        # Batch order and augmentation (g) and initialisation are functions of (cell seed, episode),
        # the same streams learngene uses, so the two are paired episode by episode.
        g = rng(episode.seed, "episode", episode.index)
        torch.manual_seed(derived_seed(episode.seed, "episode-init", episode.index))
        model = IndividualNet(episode.n_way, self.image_size, width=s.width).to(self.device)
        curve = train_supervised(
            model, episode.support_x, episode.support_y, epochs=s.epochs, lr=s.lr, momentum=s.momentum,
            weight_decay=s.weight_decay, batch_size=s.batch_size, generator=g, device=self.device,
            eval_x=episode.query_x, eval_y=episode.query_y, crop_padding=s.crop_padding, last_batch=s.last_batch,
            curve=episode.record_curve)
        return EpisodeResult(accuracy=curve[-1], curve=curve if episode.record_curve else None, wall_s=time.perf_counter() - t0,
                             params=count_params(model))

    def _run_stack(self, episodes: list[EpisodeData]) -> list[EpisodeResult]:
        s = self.s
        t0 = time.perf_counter()
        nets = []
        for ep in episodes:  # each episode's initialisation exactly as run_episode draws it
            torch.manual_seed(derived_seed(ep.seed, "episode-init", ep.index))
            nets.append(IndividualNet(ep.n_way, self.image_size, width=s.width))
        params = count_params(nets[0])
        curves, _ = train_stacked(
            nets, [ep.support_x for ep in episodes], [ep.support_y for ep in episodes], epochs=s.epochs, lr=s.lr,
            momentum=s.momentum, weight_decay=s.weight_decay, batch_size=s.batch_size,
            generators=[rng(ep.seed, "episode", ep.index) for ep in episodes], device=self.device,
            eval_xs=[ep.query_x for ep in episodes], eval_ys=[ep.query_y for ep in episodes],
            crop_padding=s.crop_padding, last_batch=s.last_batch, curve=episodes[0].record_curve)
        wall = (time.perf_counter() - t0) / len(episodes)  # the stack's wall time, shared equally
        return [EpisodeResult(accuracy=c[-1], curve=c if ep.record_curve else None, wall_s=wall, params=params)
                for ep, c in zip(episodes, curves, strict=True)]
