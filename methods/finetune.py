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

Pre-training recipe (profile `pretrain_*` keys): CloserLook uses Adam 1e-3, batch 16, 400 epochs
(`pretrain_optimizer = "adam"`, the paper profile); CPU profiles use SGD with a cosine schedule,
which converges in far fewer epochs. Augmentation is the suite's shared flip (+ optional crop).
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods.backbones import build_encoder, count_params
from methods.base import EpisodeData, EpisodeResult, Method, SourceData, method_profile
from methods.registry import register
from methods.scratch import episode_generator
from methods.training import predict
from tasks.augment import train_transform
from tasks.imageset import TRAIN_POOL

#: Bump when the pre-training code changes in a way that invalidates cached backbones.
PRETRAIN_VERSION = 1

PRETRAIN_KEYS = ("pretrain_epochs", "pretrain_lr", "pretrain_batch", "pretrain_images_per_class",
                 "pretrain_optimizer", "pretrain_momentum", "pretrain_weight_decay", "pretrain_schedule",
                 "pretrain_step", "pretrain_gamma", "crop_padding")

#: CloserLook's values, used only for keys a profile leaves out (every shipped profile sets them all).
DEFAULTS: dict[str, Any] = {
    "pretrain_epochs": 400, "pretrain_lr": 1e-3, "pretrain_batch": 16, "pretrain_images_per_class": 0,
    "pretrain_optimizer": "adam", "pretrain_momentum": 0.9, "pretrain_weight_decay": 0.0,
    "pretrain_schedule": "constant", "pretrain_step": 30, "pretrain_gamma": 0.2, "crop_padding": 0,
    "head_epochs": 100, "head_lr": 0.01, "head_batch": 4, "head_momentum": 0.9, "head_dampening": 0.9,
    "head_weight_decay": 1e-3, "cosine_scale": 10.0, "cosine_weight_norm": False, "backbone": "individual",
}


def resolved(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """`cfg` with CloserLook defaults for any missing key."""
    return {**DEFAULTS, **cfg}


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


def make_head(in_dim: int, n_classes: int, cosine: bool, cfg: Mapping[str, Any],
              generator: torch.Generator | None = None) -> nn.Module:
    """A fresh classifier head, initialised from `generator` (bias 0, as CloserLook)."""
    if cosine:
        head: nn.Module = CosineHead(in_dim, n_classes, cfg["cosine_scale"], cfg["cosine_weight_norm"])
        lin = head.linear
        weight = lin.parametrizations.weight.original1 if cfg["cosine_weight_norm"] else lin.weight
        with torch.no_grad():
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
            if cfg["cosine_weight_norm"]:  # g_k = |v_k| at init, as weight_norm does
                lin.parametrizations.weight.original0.copy_(weight.norm(dim=1, keepdim=True))
        return head
    head = nn.Linear(in_dim, n_classes)
    with torch.no_grad():
        nn.init.kaiming_uniform_(head.weight, a=math.sqrt(5), generator=generator)
        head.bias.zero_()
    return head


def train_head(head: nn.Module, feats: torch.Tensor, labels: torch.Tensor, *, epochs: int, lr: float,
               momentum: float, dampening: float, weight_decay: float, batch_size: int,
               generator: torch.Generator, eval_feats: torch.Tensor | None = None,
               eval_labels: torch.Tensor | None = None) -> list[float]:
    """CloserLook's per-episode head training on frozen features; returns query accuracy per epoch."""
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum, dampening=dampening,
                          weight_decay=weight_decay)
    labels = labels.to(feats.device)
    curve: list[float] = []
    n = feats.shape[0]
    for _ in range(epochs):
        head.train()
        order = torch.randperm(n, generator=generator).to(feats.device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(head(feats[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if eval_feats is not None and eval_labels is not None:
            with torch.no_grad():
                pred = head(eval_feats).argmax(1)
            curve.append(float((pred.cpu() == eval_labels.cpu()).float().mean()))
    return curve


def base_training_set(source: SourceData, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and 0..B-1 labels of base-class train-pool images, at most `per_class` each (0 = all).

    The cap takes a seeded random subset of each class, so a folder sorted by some property is not
    truncated in that order."""
    g = torch.Generator().manual_seed(10_007 * (seed + 1))
    idx, lab = [], []
    for pos, c in enumerate(source.base_ids):
        ids = source.data.indices(c, TRAIN_POOL)
        if per_class and per_class < len(ids):
            ids = ids[torch.randperm(len(ids), generator=g)[:per_class]].sort().values
        idx.append(ids)
        lab.append(torch.full((len(ids),), pos, dtype=torch.long))
    return torch.cat(idx), torch.cat(lab)


def pretrain(encoder: nn.Module, head: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, cfg: Mapping[str, Any],
             generator: torch.Generator, device: torch.device) -> dict[str, list[float]]:
    """Supervised pre-training of encoder+head on base classes; returns per-epoch loss, accuracy, seconds."""
    model = nn.Sequential(encoder, head).to(device)
    params = list(model.parameters())
    if cfg["pretrain_optimizer"] == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=cfg["pretrain_lr"],
                                                      weight_decay=cfg["pretrain_weight_decay"])
    elif cfg["pretrain_optimizer"] == "sgd":
        opt = torch.optim.SGD(params, lr=cfg["pretrain_lr"], momentum=cfg["pretrain_momentum"],
                              weight_decay=cfg["pretrain_weight_decay"], nesterov=cfg["pretrain_momentum"] > 0)
    else:
        raise ValueError(f"pretrain_optimizer must be 'adam' or 'sgd', got {cfg['pretrain_optimizer']!r}")
    epochs, bs, n = int(cfg["pretrain_epochs"]), int(cfg["pretrain_batch"]), x_u8.shape[0]
    steps = epochs * math.ceil(n / bs)
    schedule = cfg["pretrain_schedule"]
    if schedule == "cosine":
        sched: Any = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    elif schedule == "step":  # DeepEMD: step every `pretrain_step` epochs by `pretrain_gamma`
        per = math.ceil(n / bs)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=int(cfg["pretrain_step"]) * per,
                                                gamma=cfg["pretrain_gamma"])
    elif schedule == "constant":
        sched = None
    else:
        raise ValueError(f"pretrain_schedule must be constant, cosine or step, got {schedule!r}")
    log: dict[str, list[float]] = {"loss": [], "acc": [], "seconds": []}
    y = y.to(device)
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=generator)
        tot_loss, tot_correct = 0.0, 0
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            xb = train_transform(x_u8[idx].to(device), generator, int(cfg["crop_padding"]))
            out = model(xb)
            yb = y[idx.to(device)]
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            tot_loss += float(loss.detach()) * len(idx)
            tot_correct += int((out.argmax(1) == yb).sum())
        log["loss"].append(tot_loss / n)
        log["acc"].append(tot_correct / n)
        log["seconds"].append(time.perf_counter() - t0)
    return log


def pretrain_config(source: SourceData, cfg: Mapping[str, Any], cosine: bool) -> dict[str, Any]:
    """Everything that determines a pre-trained backbone (its cache key)."""
    cfg = resolved(cfg)
    return {"source": source.fingerprint(), "backbone": cfg["backbone"], "width": cfg["width"],
            "image_size": source.data.image_size, "classifier": "cosine" if cosine else "linear",
            **({"cosine_scale": cfg["cosine_scale"], "cosine_weight_norm": cfg["cosine_weight_norm"]}
               if cosine else {}),
            **{k: cfg[k] for k in PRETRAIN_KEYS}, "version": PRETRAIN_VERSION}


def pretrained_backbone(source: SourceData, cfg: Mapping[str, Any], cosine: bool, cache: Any,
                        device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The base-class pre-trained encoder, built once per config and cached (shared by finetune and
    deepemd when their pre-training keys agree). Returns (encoder in eval mode, artifact log)."""
    cfg = resolved(cfg)
    image_size = source.data.image_size
    config = pretrain_config(source, cfg, cosine)

    def build() -> dict[str, Any]:
        g = torch.Generator().manual_seed(7_368_787 * (source.seed + 1) + int(cosine))
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
        encoder = build_encoder(cfg["backbone"], image_size, cfg["width"])
        idx, y = base_training_set(source, int(cfg["pretrain_images_per_class"]), source.seed)
        head = make_head(encoder.out_dim, len(source.base_ids), cosine, cfg, g)
        log = pretrain(encoder, head, source.data.images[idx], y, cfg, g, device)
        return {"encoder": {k: v.cpu() for k, v in encoder.state_dict().items()}, "log": log,
                "n_images": int(len(idx))}

    art = cache.get_or_build("pretrain-" + config["classifier"], config, build)
    encoder = build_encoder(cfg["backbone"], image_size, cfg["width"])
    encoder.load_state_dict(art["encoder"])
    encoder.to(device).eval()
    for p in encoder.parameters():
        p.requires_grad_(False)
    return encoder, art


@register("finetune", "Baseline (CloserLook): pre-train on base classes, new linear head on frozen features",
          family="finetune", cosine=False)
@register("finetune++", "Baseline++ (CloserLook): as Baseline with a cosine (scale x cos) classifier",
          family="finetune", cosine=True)
class FineTune(Method):
    records_curve = True

    @property
    def cosine(self) -> bool:
        return bool(self.options.get("cosine", False))

    def prepare(self, source: SourceData, profile: Mapping[str, Any], cache: Any) -> None:
        cfg = resolved(method_profile(profile, "finetune"))
        self.encoder, art = pretrained_backbone(source, cfg, self.cosine, cache, self.device)
        self.pretrain_log = art["log"]

    def run_episode(self, episode: EpisodeData, profile: Mapping[str, Any]) -> EpisodeResult:
        cfg = resolved(method_profile(profile, "finetune"))
        t0 = time.perf_counter()
        g = episode_generator(episode.seed, episode.index, salt=31 if self.cosine else 29)
        fs = predict(self.encoder, episode.support_x, self.device)
        fq = predict(self.encoder, episode.query_x, self.device)
        t_feat = time.perf_counter() - t0
        head = make_head(fs.shape[1], episode.n_way, self.cosine, cfg, g).to(self.device)
        curve = train_head(head, fs, episode.support_y, epochs=int(cfg["head_epochs"]), lr=cfg["head_lr"],
                           momentum=cfg["head_momentum"], dampening=cfg["head_dampening"],
                           weight_decay=cfg["head_weight_decay"], batch_size=int(cfg["head_batch"]),
                           generator=g, eval_feats=fq, eval_labels=episode.query_y)
        if not curve:  # head_epochs = 0: the untrained head's accuracy
            with torch.no_grad():
                curve = [float((head(fq).argmax(1).cpu() == episode.query_y).float().mean())]
        return EpisodeResult(accuracy=curve[-1], curve=curve, wall_s=time.perf_counter() - t0,
                             params=count_params(self.encoder) + count_params(head),
                             extra={"features_s": t_feat})
