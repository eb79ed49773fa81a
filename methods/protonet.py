"""Prototypical Networks (Snell et al., NeurIPS 2017) on the individual model's conv trunk.

Choices where references disagree (the paper, LibFewShot and easyfsl):
- Distance: **squared** Euclidean, as the paper and LibFewShot (easyfsl's plain `cdist` is not used).
- Training episodes: `train_way`-way, `train_shots`-shot, `train_queries` queries per class from the
  profile; the paper trains with more ways than it tests (20/30-way) and matches the shot to the test
  shot. One artifact serves every test shot, so `train_shots` is a single profile value.
- `random-ncm` is ProtoNet with 0 meta-iterations: nearest class mean on randomly initialised
  features (BN running statistics still re-estimated on base episodes). It is the floor every
  trained method must beat; a method below it has learnt nothing transferable (or has a bug).
- Optimiser: Adam (`lr`), halved every `lr_halve_every` meta-iterations (the paper halves every 2000
  episodes); no weight decay. BatchNorm: batch statistics while meta-training, running statistics at
  test (the standard non-transductive evaluation), re-estimated exactly over
  `bn_recalibration_episodes` base episodes after meta-training (`episodic.recalibrate_bn`).
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from methods.backbones import count_params
from methods.base import EpisodeData, EpisodeResult
from methods.episodic import MetricLearner, TaskTensors, build_backbone
from methods.registry import register
from methods.settings import ProtoNetSettings
from methods.training import accuracy, class_means, predict


def squared_distances(zq: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """‖zq_i − c_k‖² for every query/prototype pair, [Q, N] (expanded form; clamped at 0 against rounding)."""
    d = (zq * zq).sum(1, keepdim=True) - 2 * zq @ protos.T + (protos * protos).sum(1)[None]
    return d.clamp_min(0)


def prototype_logits(zs: torch.Tensor, ys: torch.Tensor, zq: torch.Tensor, n_way: int) -> torch.Tensor:
    """ProtoNet logits: −squared Euclidean distance to each class mean of the support embeddings."""
    return -squared_distances(zq, class_means(zs, ys, n_way))


def nearest_mean_episode(encoder: torch.nn.Module, episode: EpisodeData, device: torch.device) -> EpisodeResult:
    """Embed support and queries with `encoder` (eval mode) and score the queries against the class means:
    ProtoNet's test episode, and the feature probes' (methods/learngene/probe.py)."""
    t0 = time.perf_counter()
    zs = predict(encoder, episode.support_x, device)
    zq = predict(encoder, episode.query_x, device)
    logits = prototype_logits(zs, episode.support_y.to(device), zq, episode.n_way)
    return EpisodeResult(accuracy=accuracy(logits, episode.query_y), wall_s=time.perf_counter() - t0,
                         params=count_params(encoder))


@register("protonet", "Prototypical Networks: class-mean prototypes, -squared Euclidean logits (episodic meta-training)",
          settings=ProtoNetSettings)
@register("random-ncm", "The floor: nearest class mean on an untrained (random) trunk, BN statistics from base episodes",
          family="protonet", settings=ProtoNetSettings, meta_iterations=0)
class ProtoNet(MetricLearner):
    family = "protonet"
    # Facts (methods.base.MethodFacts): `random-ncm` is the floor every method should beat.
    budget_knob = ("methods", "protonet", "meta_iterations")
    variant_facts = {"protonet": {"roles": {"opponent"}, "report_order": 30},
                     "random-ncm": {"roles": {"floor"}, "report_order": 0}}

    def build(self, image_size: int, settings: ProtoNetSettings) -> torch.nn.Module:
        return build_backbone(image_size, settings)

    @property
    def encoder(self) -> torch.nn.Module:
        return self.net

    def episode_loss(self, task: TaskTensors, way: int) -> torch.Tensor:
        """Query cross-entropy of one training episode (support and query share one BN batch)."""
        z = self.encoder(torch.cat([task.xs, task.xq]))
        n_s = task.xs.shape[0]
        return F.cross_entropy(prototype_logits(z[:n_s], task.ys, z[n_s:], way), task.yq)

    def run_episode(self, episode: EpisodeData) -> EpisodeResult:
        return nearest_mean_episode(self.encoder, episode, self.device)
