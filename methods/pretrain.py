"""Supervised pre-training on the base classes: the backbone that fine-tuning (Baseline, Baseline++)
and DeepEMD start from, built once per settings and cached.

Why its own module: two method families share the very same artifact when their `pretrain_*`
settings agree, so neither owns it. The classifier used while pre-training is the head type of the
episode head (linear, or Baseline++'s cosine head), as in CloserLook, so Baseline and Baseline++
pre-train different backbones. Recipes: CloserLook uses Adam 1e-3, batch 16, 400 epochs
(`pretrain_optimizer = "adam"`, the paper profile); CPU profiles use SGD with a cosine schedule,
which converges in far fewer epochs; DeepEMD's official recipe steps the rate every
`pretrain_step` epochs. Augmentation is the suite's shared flip (+ optional crop).
"""
from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods.backbones import build_encoder
from methods.base import SourceData
from methods.settings import PretrainSettings
from methods.training import derived_seed, fit, rng, shuffled_batches
from tasks.augment import train_transform
from tasks.imageset import TRAIN_POOL

#: Bump when the pre-training code changes in a way that invalidates cached backbones.
PRETRAIN_VERSION = 3


class CosineHead(nn.Module):
    """logits = scale * cos(x, w_k) (Baseline++'s distLinear without WeightNorm unless asked).

    Normalising x makes the head ignore the feature norm; normalising w makes the classes compete on
    direction only. With `weight_norm=True` the weight is g_k * v_k/|v_k| (CloserLook), so the
    logits become scale * g_k * cos.
    """

    def __init__(self, in_dim: int, n_classes: int, scale: float = 10.0, weight_norm: bool = False):
        super().__init__()
        self.scale = float(scale)
        self.weight_norm = weight_norm
        self.linear = nn.Linear(in_dim, n_classes, bias=False)
        if weight_norm:
            self.linear = nn.utils.parametrizations.weight_norm(self.linear, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x, dim=1, eps=1e-5)
        if self.weight_norm:
            return self.scale * self.linear(x)
        return self.scale * F.linear(x, F.normalize(self.linear.weight, dim=1, eps=1e-5))


def linear_head(in_dim: int, n_classes: int, generator: torch.Generator | None = None) -> nn.Linear:
    """CloserLook's linear head: Kaiming-uniform weight from `generator`, bias 0."""
    head = nn.Linear(in_dim, n_classes)
    with torch.no_grad():
        nn.init.kaiming_uniform_(head.weight, a=math.sqrt(5), generator=generator)
        head.bias.zero_()
    return head


def make_head(in_dim: int, n_classes: int, cosine: bool, scale: float = 10.0, weight_norm: bool = False,
              generator: torch.Generator | None = None) -> nn.Module:
    """A fresh classifier head (linear, or cosine with `scale` and optional WeightNorm)."""
    if not cosine:
        return linear_head(in_dim, n_classes, generator)
    head = CosineHead(in_dim, n_classes, scale, weight_norm)
    lin = head.linear
    weight = lin.parametrizations.weight.original1 if weight_norm else lin.weight
    with torch.no_grad():
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
        if weight_norm:  # g_k = |v_k| at init, as weight_norm does
            lin.parametrizations.weight.original0.copy_(weight.norm(dim=1, keepdim=True))
    return head


def base_training_set(source: SourceData, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and 0..B-1 labels of base-class train-pool images, at most `per_class` each (0 = all).

    The cap takes a seeded random subset of each class, so a folder sorted by some property is not
    truncated in that order."""
    g = rng(seed, "base-subset")
    idx, lab = [], []
    for pos, c in enumerate(source.base_ids):
        ids = source.data.indices(c, TRAIN_POOL)
        if per_class and per_class < len(ids):
            ids = ids[torch.randperm(len(ids), generator=g)[:per_class]].sort().values
        idx.append(ids)
        lab.append(torch.full((len(ids),), pos, dtype=torch.long))
    return torch.cat(idx), torch.cat(lab)


def _optimizer(params: list[nn.Parameter], s: PretrainSettings) -> torch.optim.Optimizer:
    if s.pretrain_optimizer == "adam":
        return torch.optim.Adam(params, lr=s.pretrain_lr, weight_decay=s.pretrain_weight_decay)
    return torch.optim.SGD(params, lr=s.pretrain_lr, momentum=s.pretrain_momentum,
                           weight_decay=s.pretrain_weight_decay, nesterov=s.pretrain_momentum > 0)


def _scheduler(s: PretrainSettings, steps_per_epoch: int):
    if s.pretrain_schedule == "cosine":
        return lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=max(1, s.pretrain_epochs * steps_per_epoch))
    if s.pretrain_schedule == "step":  # DeepEMD: step every `pretrain_step` epochs by `pretrain_gamma`
        return lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=s.pretrain_step * steps_per_epoch,
                                                           gamma=s.pretrain_gamma)
    return None


def pretrain(encoder: nn.Module, head: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, s: PretrainSettings,
             generator: torch.Generator, device: torch.device, progress: str | None = None) -> dict[str, list[float]]:
    """Supervised pre-training of encoder+head; returns per-epoch loss, accuracy and seconds."""
    model = nn.Sequential(encoder, head).to(device)
    y = y.to(device)
    n, bs = x_u8.shape[0], s.pretrain_batch
    sums = {"loss": 0.0, "correct": 0, "t0": time.perf_counter()}
    log: dict[str, list[float]] = {"loss": [], "acc": [], "seconds": []}

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        out = model(train_transform(x_u8[idx].to(device), generator, s.crop_padding))
        yb = y[idx.to(device)]
        loss = F.cross_entropy(out, yb)
        sums["loss"] += float(loss.detach()) * len(idx)
        sums["correct"] += int((out.argmax(1) == yb).sum())
        return loss

    def after_epoch() -> None:
        log["loss"].append(sums["loss"] / n)
        log["acc"].append(sums["correct"] / n)
        log["seconds"].append(time.perf_counter() - sums["t0"])
        sums.update(loss=0.0, correct=0, t0=time.perf_counter())

    steps = math.ceil(n / bs)
    fit(loss_of, shuffled_batches(n, bs, generator), lambda: _optimizer(list(model.parameters()), s),
        epochs=s.pretrain_epochs, scheduler=_scheduler(s, steps), module=model, after_epoch=after_epoch,
        progress=progress, total=s.pretrain_epochs * steps)
    return log


def pretrain_key(source: SourceData, s: PretrainSettings, cosine: bool, scale: float = 10.0,
                 weight_norm: bool = False) -> dict[str, Any]:
    """Everything that determines a pre-trained backbone (its cache key): only the pre-training fields,
    so fine-tuning and DeepEMD share one artifact when they agree."""
    return {"source": source.fingerprint(), "image_size": source.data.image_size,
            "classifier": "cosine" if cosine else "linear",
            **({"cosine_scale": scale, "cosine_weight_norm": weight_norm} if cosine else {}),
            **{k: getattr(s, k) for k in PretrainSettings.PRETRAIN_FIELDS}, "version": PRETRAIN_VERSION}


def pretrained_backbone(source: SourceData, s: PretrainSettings, cache: Any, device: torch.device, *,
                        cosine: bool = False, scale: float = 10.0,
                        weight_norm: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """The base-class pre-trained encoder, built once per key and cached. Returns (frozen encoder in
    eval mode, artifact with its log)."""
    image_size = source.data.image_size
    key = pretrain_key(source, s, cosine, scale, weight_norm)

    def build() -> dict[str, Any]:
        g = rng(source.seed, "pretrain", key["classifier"])
        torch.manual_seed(derived_seed(source.seed, "pretrain-init", key["classifier"]))
        encoder = build_encoder(s.backbone, image_size, s.width)
        idx, y = base_training_set(source, s.pretrain_images_per_class, source.seed)
        head = make_head(encoder.out_dim, len(source.base_ids), cosine, scale, weight_norm, g)
        log = pretrain(encoder, head, source.data.images[idx], y, s, g, device,
                       progress=f"pre-train ({key['classifier']} head)")
        return {"encoder": {k: v.cpu() for k, v in encoder.state_dict().items()}, "log": log,
                "n_images": int(len(idx))}

    art = cache.get_or_build("pretrain-" + key["classifier"], key, build)
    encoder = build_encoder(s.backbone, image_size, s.width)
    encoder.load_state_dict(art["encoder"])
    encoder.to(device).eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder, art
