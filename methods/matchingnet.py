"""Matching Networks (Vinyals et al., NeurIPS 2016) on the individual model's conv trunk.

ŷ = Σ_i a(x̂, x_i) y_i with a = softmax over the support of τ·cos(f(x̂), g(x_i)); trained with the query
NLL of that label mixture. Choices where references disagree (the paper, CloserLook, LibFewShot):
- Temperature τ (`temperature` in the profile): the paper's softmax over raw cosines (τ = 1) gives
  nearly uniform attention over 50-100 support images and a flat loss; CloserLook sharpens with
  relu(cos)·100. We keep signed cosines and a fixed τ from the profile (10 by default), which keeps
  the attention a proper softmax over all support points.
- Full-context embeddings (`fce`, off by default as in the cheaper non-FCE variant): g is a
  bidirectional LSTM over the (class-major) support embeddings, g(x_i) = z_i + h→_i + h←_i, and f is an
  attention LSTM that reads the support set for `fce_steps` steps (the paper's K; CloserLook uses one
  step per support image, which is 100 steps at 20 shots).
- Adam (`lr`), halved every `lr_halve_every` meta-iterations; BatchNorm with running statistics at
  test, re-estimated over `bn_recalibration_episodes` base episodes after meta-training.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from methods.backbones import count_params
from methods.base import EpisodeData, EpisodeResult
from methods.episodic import MetricLearner, TaskTensors, build_backbone
from methods.registry import register
from methods.settings import MatchingNetSettings
from methods.training import accuracy, predict

EPS = 1e-8


def attention(fq: torch.Tensor, gs: torch.Tensor, temperature: float) -> torch.Tensor:
    """a(x̂, x_i): softmax over the support of τ·cosine similarity, [Q, S]; rows are non-negative and sum to 1."""
    return torch.softmax(temperature * F.normalize(fq, dim=1) @ F.normalize(gs, dim=1).T, dim=1)


def matching_probs(fq: torch.Tensor, gs: torch.Tensor, ys: torch.Tensor, n_way: int,
                   temperature: float) -> torch.Tensor:
    """Class probabilities Σ_i a(x̂, x_i)·onehot(y_i), [Q, n_way]."""
    return attention(fq, gs, temperature) @ F.one_hot(ys, n_way).to(fq.dtype)


class FullContextEmbedding(nn.Module):
    """Vinyals's FCE: a bi-LSTM over the support (g) and an attention LSTM reading it for K steps (f)."""

    def __init__(self, dim: int, steps: int):
        super().__init__()
        self.support_lstm = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)
        self.query_cell = nn.LSTMCell(2 * dim, dim)
        self.steps = steps

    def support(self, z: torch.Tensor) -> torch.Tensor:
        out, _ = self.support_lstm(z[None])  # [1, S, 2D]
        fwd, bwd = out[0].chunk(2, dim=1)
        return z + fwd + bwd

    def query(self, z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        h, c = z, torch.zeros_like(z)
        for _ in range(self.steps):
            read = torch.softmax(h @ g.T, dim=1) @ g
            h, c = self.query_cell(torch.cat([z, read], dim=1), (h, c))
            h = h + z
        return h


class MatchingNetwork(nn.Module):
    """Encoder plus optional FCE; `probs(xs, ys, xq)` is the whole episodic forward."""

    def __init__(self, encoder: nn.Module, temperature: float, fce: bool, fce_steps: int):
        super().__init__()
        self.encoder = encoder
        self.fce = FullContextEmbedding(encoder.out_dim, fce_steps) if fce else None
        self.temperature = temperature

    def contextualise(self, zs: torch.Tensor, zq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fce is None:
            return zs, zq
        gs = self.fce.support(zs)
        return gs, self.fce.query(zq, gs)

    def probs_from_embeddings(self, zs: torch.Tensor, ys: torch.Tensor, zq: torch.Tensor, n_way: int) -> torch.Tensor:
        gs, fq = self.contextualise(zs, zq)
        return matching_probs(fq, gs, ys, n_way, self.temperature)


@register("matchingnet", "Matching Networks: softmax attention over cosine similarity to the support set (FCE optional)",
          settings=MatchingNetSettings)
class MatchingNet(MetricLearner):
    family = "matchingnet"
    # Facts (methods.base.MethodFacts)
    roles = frozenset({"opponent"})
    report_order = 50
    budget_knob = ("methods", "matchingnet", "meta_iterations")

    def build(self, image_size: int, settings: MatchingNetSettings) -> nn.Module:
        return MatchingNetwork(build_backbone(image_size, settings), settings.temperature, settings.fce,
                               settings.fce_steps)

    @property
    def encoder(self) -> nn.Module:
        return self.net.encoder

    def episode_loss(self, task: TaskTensors, way: int) -> torch.Tensor:
        """Query NLL of the attention-weighted label mixture for one training episode."""
        z = self.encoder(torch.cat([task.xs, task.xq]))
        n_s = task.xs.shape[0]
        p = self.net.probs_from_embeddings(z[:n_s], task.ys, z[n_s:], way)
        return F.nll_loss(torch.log(p + EPS), task.yq)

    def run_episode(self, episode: EpisodeData) -> EpisodeResult:
        t0 = time.perf_counter()
        zs = predict(self.encoder, episode.support_x, self.device)
        zq = predict(self.encoder, episode.query_x, self.device)
        with torch.no_grad():
            p = self.net.probs_from_embeddings(zs, episode.support_y.to(self.device), zq, episode.n_way)
        return EpisodeResult(accuracy=accuracy(p, episode.query_y), wall_s=time.perf_counter() - t0,
                             params=count_params(self.net))
