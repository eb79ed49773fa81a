"""Cosine nearest-class-mean on a frozen, randomly initialised conv trunk (SimpleShot's CL2N features).

Why this method: it is the floor a learnt representation has to beat. The trunk is never trained;
`prepare` only measures the mean feature of base-class images to centre the features, so novel
classes stay untouched until `run_episode`. Knobs: `[methods.cosine-frozen] channels = 64` (a method
registered without a settings dataclass receives its merged profile sections as a plain dict).
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods import EpisodeData, EpisodeResult, Method, SourceData
from tasks.augment import eval_transform
from tasks.imageset import TRAIN_POOL


class CosineClassifier(Method):
    """Cosine classifier on a frozen random conv trunk, features centred on base classes (a floor)."""

    name = "cosine-frozen"

    def prepare(self, source: SourceData, settings: Mapping[str, Any], cache: Any) -> None:
        channels = int(settings.get("channels", 64))
        g = torch.Generator().manual_seed(source.seed)
        blocks, c_in = [], 3
        for _ in range(4):  # conv-ReLU-pool, no BatchNorm: nothing here needs training
            conv = nn.Conv2d(c_in, channels, 3, padding=1)
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu", generator=g)
            nn.init.zeros_(conv.bias)
            blocks += [conv, nn.ReLU(), nn.MaxPool2d(2)]
            c_in = channels
        self.trunk = nn.Sequential(*blocks, nn.Flatten()).to(self.device).eval()
        data = source.data
        base = torch.isin(data.labels, torch.tensor(source.base_ids)) & (data.pool == TRAIN_POOL)
        idx = torch.nonzero(base).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)[:1000]]  # base-class train images only
        self.centre = self.embed(data.images[idx]).mean(0)

    @torch.no_grad()
    def embed(self, images_u8: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.trunk(eval_transform(b.to(self.device))) for b in images_u8.split(256)])

    def run_episode(self, episode: EpisodeData) -> EpisodeResult:
        t0 = time.perf_counter()
        zs = F.normalize(self.embed(episode.support_x) - self.centre, dim=1)
        zq = F.normalize(self.embed(episode.query_x) - self.centre, dim=1)
        ys = episode.support_y.to(self.device)
        protos = torch.zeros(episode.n_way, zs.shape[1], device=self.device).index_add_(0, ys, zs)
        pred = (zq @ F.normalize(protos, dim=1).T).argmax(1).cpu()
        return EpisodeResult(accuracy=float((pred == episode.query_y).float().mean()),
                             wall_s=time.perf_counter() - t0,
                             params=sum(p.numel() for p in self.trunk.parameters()))
