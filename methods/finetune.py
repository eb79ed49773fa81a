"""Baseline and Baseline++ (Chen et al., ICLR 2019, "A Closer Look at Few-shot Classification").

Both pre-train the individual model's conv trunk (at the profile's `[individual].width`, so capacity
matches learngene) with a classifier over all base classes, then, per episode, freeze the trunk,
extract support and query features once, and train a *new* head on the support features.

- `finetune` (Baseline): linear head `nn.Linear(feat, N)`.
- `finetune++` (Baseline++): cosine head, logits = scale * cos(x, w_k). **WeightNorm is dropped by
  default**: CloserLook's `distLinear` wraps the weight in `WeightNorm(dim=0)`, whose learnable
  per-class gain g_k multiplies the cosine, so its "scale 2" acts like ~27 (CloserLook issues #4/#8)
  and the logits are no longer scale x cosine. We use a fixed `cosine_scale` (10) so the head is a
  true cosine classifier that ignores both feature and weight norms; `cosine_weight_norm = true`
  restores CloserLook's parametrisation (logits = scale * g_k * cos).
  The pre-training classifier is the same head type as the episode head, as in CloserLook, so the
  two methods pre-train *different* backbones (two cached artifacts).

Episode fine-tuning follows CloserLook's `baselinefinetune.py`: SGD lr 0.01, momentum 0.9, dampening
0.9, weight decay 1e-3, 100 epochs over the support set in mini-batches of 4, a fresh permutation
each epoch, no augmentation (features are pre-extracted). All of it is read from the profile. The
features are frozen, so query accuracy after every epoch (`curve`) costs one small matmul.

Pre-training (`pretrain_*` settings) lives in `methods.pretrain`, shared with DeepEMD.
"""
from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods.backbones import count_params
from methods.base import EpisodeData, EpisodeResult, Method, SourceData
from methods.pretrain import make_head, pretrained_backbone
from methods.registry import register
from methods.settings import FineTuneSettings
from methods.training import accuracy, fit, predict, rng, shuffled_batches


def train_head(head: nn.Module, feats: torch.Tensor, labels: torch.Tensor, *, epochs: int, lr: float,
               momentum: float, dampening: float, weight_decay: float, batch_size: int,
               generator: torch.Generator, eval_feats: torch.Tensor | None = None,
               eval_labels: torch.Tensor | None = None, curve: bool = True) -> list[float]:
    """CloserLook's per-episode head training on frozen features; returns query accuracy per epoch
    (with `curve=False`: after the last epoch only)."""
    labels = labels.to(feats.device)

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        idx = idx.to(feats.device)
        return F.cross_entropy(head(feats[idx]), labels[idx])

    def evaluate() -> float:
        with torch.no_grad():
            return accuracy(head(eval_feats), eval_labels)

    log = fit(loss_of, shuffled_batches(feats.shape[0], batch_size, generator),
              lambda: torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay),
              epochs=epochs, module=head,
              after_epoch=evaluate if eval_feats is not None and eval_labels is not None else None,
              every_epoch=curve)
    return log.epochs


@register("finetune", "Baseline (CloserLook): pre-train on base classes, new linear head on frozen features",
          family="finetune", settings=FineTuneSettings, cosine=False)
@register("finetune++", "Baseline++ (CloserLook): as Baseline with a cosine (scale x cos) classifier",
          family="finetune", settings=FineTuneSettings, cosine=True)
class FineTune(Method):
    records_curve = True
    episode_epochs_field = "head_epochs"
    # Facts (methods.base.MethodFacts)
    roles = frozenset({"opponent"})
    budget_knob = ("methods", "finetune", "pretrain_epochs")
    variant_facts = {"finetune": {"report_order": 60}, "finetune++": {"report_order": 70}}

    def prepare(self, source: SourceData, settings: FineTuneSettings, cache: Any) -> None:
        self.s = settings
        self.encoder, art = pretrained_backbone(source, settings, cache, self.device, cosine=settings.cosine,
                                                scale=settings.cosine_scale, weight_norm=settings.cosine_weight_norm)
        self.pretrain_log = art["log"]

    def run_episode(self, episode: EpisodeData) -> EpisodeResult:
        s = self.s
        t0 = time.perf_counter()
        g = rng(episode.seed, "head", episode.index, "cosine" if s.cosine else "linear")
        fs = predict(self.encoder, episode.support_x, self.device)
        fq = predict(self.encoder, episode.query_x, self.device)
        t_feat = time.perf_counter() - t0
        head = make_head(fs.shape[1], episode.n_way, s.cosine, s.cosine_scale, s.cosine_weight_norm, g).to(self.device)
        curve = train_head(head, fs, episode.support_y, epochs=s.head_epochs, lr=s.head_lr,
                           momentum=s.head_momentum, dampening=s.head_dampening,
                           weight_decay=s.head_weight_decay, batch_size=s.head_batch,
                           generator=g, eval_feats=fq, eval_labels=episode.query_y, curve=episode.record_curve)
        if not curve:  # head_epochs = 0: the untrained head's accuracy
            with torch.no_grad():
                curve = [accuracy(head(fq), episode.query_y)]
        return EpisodeResult(accuracy=curve[-1], curve=curve if episode.record_curve else None, wall_s=time.perf_counter() - t0,
                             params=count_params(self.encoder) + count_params(head),
                             extra={"features_s": t_feat})
