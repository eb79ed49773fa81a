"""Prototypical Networks (Snell et al., NeurIPS 2017) on the individual model's conv trunk.

Choices where references disagree (spec/baselines.md §4.3):
- Distance: **squared** Euclidean, as the paper and LibFewShot (easyfsl's plain `cdist` is not used).
- Training episodes: `train_way`-way, `train_shots`-shot, `train_queries` queries per class from the
  profile; the paper trains with more ways than it tests (20/30-way) and matches the shot to the test
  shot. One artifact serves every test shot, so `train_shots` is a single profile value.
- Optimiser: Adam (`lr`), halved every `lr_halve_every` meta-iterations (the paper halves every 2000
  episodes); no weight decay. BatchNorm: batch statistics while meta-training, running statistics at
  test (the standard non-transductive evaluation), re-estimated exactly over
  `bn_recalibration_episodes` base episodes after meta-training (`episodic.recalibrate_bn`).
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from methods.backbones import count_params
from methods.base import EpisodeData, EpisodeResult, Method, SourceData, method_profile
from methods.episodic import (
    TaskTensors,
    artifact_config,
    build_backbone,
    class_means,
    derived_seed,
    embed_eval,
    seeded,
    state_to_cpu,
    train_episodically,
)
from methods.registry import register
from methods.training import accuracy


def squared_distances(zq: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """‖zq_i − c_k‖² for every query/prototype pair, [Q, N] (expanded form; clamped at 0 against rounding)."""
    d = (zq * zq).sum(1, keepdim=True) - 2 * zq @ protos.T + (protos * protos).sum(1)[None]
    return d.clamp_min(0)


def prototype_logits(zs: torch.Tensor, ys: torch.Tensor, zq: torch.Tensor, n_way: int) -> torch.Tensor:
    """ProtoNet logits: −squared Euclidean distance to each class mean of the support embeddings."""
    return -squared_distances(zq, class_means(zs, ys, n_way))


@register("protonet", "Prototypical Networks: class-mean prototypes, -squared Euclidean logits (episodic meta-training)")
class ProtoNet(Method):
    family = "protonet"

    def prepare(self, source: SourceData, profile: Mapping[str, Any], cache: Any) -> None:
        cfg = method_profile(profile, self.family)
        self.image_size = source.data.image_size
        seed = derived_seed(source.seed, self.family)
        with seeded(seed):
            self.encoder = build_backbone(self.image_size, cfg).to(self.device)
        key = artifact_config(self.family, source, cfg)
        state = cache.get_or_build(self.family, key, lambda: self._meta_train(source, cfg, seed))
        self.encoder.load_state_dict(state["encoder"])
        self.encoder.to(self.device).eval()
        self.train_log = state.get("log", [])

    def episode_loss(self, task: TaskTensors, way: int) -> torch.Tensor:
        """Query cross-entropy of one training episode (support and query share one BN batch)."""
        z = self.encoder(torch.cat([task.xs, task.xq]))
        n_s = task.xs.shape[0]
        return F.cross_entropy(prototype_logits(z[:n_s], task.ys, z[n_s:], way), task.yq)

    def _meta_train(self, source: SourceData, cfg: Mapping[str, Any], seed: int) -> dict[str, Any]:
        log = train_episodically(self.encoder, self.encoder, self.episode_loss, source, cfg, seed, self.device)
        return {"encoder": state_to_cpu(self.encoder), "log": log}

    def run_episode(self, episode: EpisodeData, profile: Mapping[str, Any]) -> EpisodeResult:
        t0 = time.perf_counter()
        zs = embed_eval(self.encoder, episode.support_x, self.device)
        zq = embed_eval(self.encoder, episode.query_x, self.device)
        logits = prototype_logits(zs, episode.support_y.to(self.device), zq, episode.n_way)
        return EpisodeResult(accuracy=accuracy(logits, episode.query_y), wall_s=time.perf_counter() - t0,
                             params=count_params(self.encoder))

