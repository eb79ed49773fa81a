"""Shared machinery of the episodic meta-learners (MAML family, ProtoNet, MatchingNet).

Why one module: the three families must draw their meta-training episodes, augment them, seed their
initialisation and key their cached weights in the same way, so their numbers differ only by the
algorithm. Meta-training episodes come from `tasks.episodes.sample_episodes` over the base classes
(shots and queries both from each class's train pool, disjoint, as the reference ProtoNet and MAML
code do; base-class test images stay held out), drawn in seeded chunks so that a
60 000-iteration paper run does not build all its index lists up front.
"""
from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from methods.backbones import build_encoder
from methods.base import SourceData
from tasks.augment import eval_transform, train_transform
from tasks.episodes import sample_episodes

#: Bump when a change to the meta-training code makes cached weights stale.
#: 2: meta-training queries come from the base classes' train pool (were: their test pool).
ARTIFACT_VERSION = 2
_CHUNK = 64  # episodes sampled per call to sample_episodes


def derived_seed(seed: int, *salt: str | int) -> int:
    """A stable 31-bit seed from the source seed and a label (crc32, not `hash`, which varies per process)."""
    key = ":".join(str(s) for s in (seed, *salt)).encode()
    return zlib.crc32(key) & 0x7FFFFFFF


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed the global RNG for weight initialisation without leaking the state to the caller."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def build_backbone(image_size: int, cfg: Mapping[str, Any]) -> nn.Module:
    """The individual model's conv trunk at the profile's width (capacity matched to the individual model)."""
    return build_encoder(str(cfg.get("backbone", "individual")), image_size, float(cfg["width"]))


@dataclass
class TaskTensors:
    """One episode as float tensors on the device: class-major support/query, labels 0..N-1."""

    xs: torch.Tensor
    ys: torch.Tensor
    xq: torch.Tensor
    yq: torch.Tensor


def meta_train_tasks(source: SourceData, n_way: int, k_shot: int, n_query: int, n_tasks: int, seed: int,
                     device: torch.device, augment: bool = True) -> Iterator[TaskTensors]:
    """`n_tasks` seeded base-class episodes as tensors, augmented with the suite's shared train transform."""
    data, base = source.data, source.base_ids
    gen = torch.Generator().manual_seed(derived_seed(seed, "augment"))
    done = 0
    chunk = 0
    while done < n_tasks:
        size = min(_CHUNK, n_tasks - done)
        for ep in sample_episodes(data, base, n_way, k_shot, n_query, size, derived_seed(seed, "chunk", chunk),
                                  query_pool="train"):
            xs_u8 = data.images[ep.support].to(device)
            xq_u8 = data.images[ep.query].to(device)
            if augment:
                xs, xq = train_transform(xs_u8, gen), train_transform(xq_u8, gen)
            else:
                xs, xq = eval_transform(xs_u8), eval_transform(xq_u8)
            yield TaskTensors(xs, ep.support_labels.to(device), xq, ep.query_labels.to(device))
        done += size
        chunk += 1


def artifact_config(kind: str, source: SourceData, cfg: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The cache key of meta-trained weights: the data, the profile section and the variant."""
    return {"kind": kind, "version": ARTIFACT_VERSION, "source": source.fingerprint(),
            "cfg": dict(sorted(cfg.items())), **extra}


def state_to_cpu(module: nn.Module) -> dict[str, torch.Tensor]:
    """A state_dict that `torch.load(weights_only=True)` can read back on any device."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def halving_scheduler(opt: torch.optim.Optimizer, every: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Snell et al.'s schedule: halve the learning rate every `every` meta-iterations (0 = never)."""
    return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, int(every)) if every else 10**12, gamma=0.5)


def class_means(z: torch.Tensor, y: torch.Tensor, n_way: int) -> torch.Tensor:
    """Per-class mean embeddings [n_way, D]; works for any label order (index_add, not a reshape)."""
    sums = torch.zeros(n_way, z.shape[1], dtype=z.dtype, device=z.device).index_add(0, y, z)
    counts = torch.bincount(y, minlength=n_way).clamp_min(1).to(z.dtype)
    return sums / counts[:, None]


@torch.no_grad()
def embed_eval(encoder: nn.Module, images_u8: torch.Tensor, device: torch.device, batch: int = 256) -> torch.Tensor:
    """Embeddings of uint8 images in eval mode (running BN statistics), without touching the module's mode."""
    was = encoder.training
    encoder.eval()
    try:
        return torch.cat([encoder(eval_transform(c.to(device))) for c in images_u8.split(batch)])
    finally:
        encoder.train(was)


@torch.no_grad()
def recalibrate_bn(encoder: nn.Module, tasks: Iterator[TaskTensors]) -> None:
    """Replace BN running statistics by their exact average over `tasks` at the final weights.

    Why: with momentum 0.1 the running statistics lag the weights by ~10 iterations, and after the few
    hundred meta-iterations of a CPU profile they are far enough off to collapse eval-mode embeddings.
    A cumulative average (momentum=None) over a few base-class episodes costs seconds and changes
    nothing a long run would not converge to."""
    layers = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
              and m.track_running_stats]
    if not layers:
        return
    saved = [m.momentum for m in layers]
    was = encoder.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    encoder.train()
    try:
        for t in tasks:
            encoder(torch.cat([t.xs, t.xq]))
    finally:
        for m, mom in zip(layers, saved, strict=True):
            m.momentum = mom
        encoder.train(was)


def train_episodically(module: nn.Module, bn_module: nn.Module,
                       episode_loss: Callable[[TaskTensors, int], torch.Tensor], source: SourceData,
                       cfg: Mapping[str, Any], seed: int, device: torch.device) -> list[float]:
    """The metric learners' shared meta-training: Adam over `meta_iterations` seeded base-class
    episodes (lr halved every `lr_halve_every`), then exact BN recalibration of `bn_module` over
    `bn_recalibration_episodes` further episodes. Returns the per-episode training loss."""
    module.train()
    opt = torch.optim.Adam(module.parameters(), lr=float(cfg["lr"]))
    sched = halving_scheduler(opt, int(cfg.get("lr_halve_every", 0)))
    way, shots, queries = int(cfg["train_way"]), int(cfg["train_shots"]), int(cfg["train_queries"])
    log: list[float] = []
    for task in meta_train_tasks(source, way, shots, queries, int(cfg["meta_iterations"]), seed, device):
        loss = episode_loss(task, way)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        log.append(float(loss.detach()))
    recalibrate_bn(bn_module, meta_train_tasks(source, way, shots, queries,
                                               int(cfg["bn_recalibration_episodes"]), seed + 1, device))
    return log
