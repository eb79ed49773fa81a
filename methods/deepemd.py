"""DeepEMD-FCN (Zhang et al., CVPR 2020) on the individual model's trunk.

Each image is a set of nodes: the positions of the dense feature map after the inheritable blocks
(`feature_map`). **No upsampling**: unlike Conv-4 (2x2 at 32 px), the individual trunk keeps a 4x4
map at 32 and 64 px (5x5 at 84 px), i.e. 16 nodes, enough for EMD to mean something, and keeping
the input size keeps every baseline on the same images and capacity as learngene.

Per (query, prototype) pair, following the official `Network.py`:
- node weights by cross-reference: s_i = ReLU(<u_i, mean_j v_j>) + 1e-3, both directions, on the
  raw (non-negative) features; each side is normalised to total mass N (the number of nodes);
- features are centred per location (channel mean subtracted), cost_ij = 1 - cos(u_i, v_j);
- the exact optimal flow x* (network simplex, POT) is a constant; logits = T/N * sum x*_ij cos_ij,
  so gradients reach the features through the similarity map only (the official OpenCV path).

Solvers: `pot` calls `ot.emd` once per pair from torch tensors (what the official code does with
OpenCV); `batched` converts every pair of a step to float64 once, normalises the masses in one
vectorised pass and calls POT's C network simplex (`emd_c`) directly in a tight loop, 3x cheaper
per pair and exact (tests check it against `ot.emd` and `scipy.optimize.linprog`).

k-shot uses the Structured FC (SFC): prototypes are learnable [N, C, h, w] maps initialised to the
class-mean maps and fine-tuned on the support set with EMD logits (100 epochs, batch 4, SGD momentum
0.9, dampening 0.9, no weight decay). The official defaults disagree on its lr (0.1 in
`train_meta.py`, 100 in `eval.py`). cos is scale-invariant, so the step on a prototype is about
lr x T/N / |v|, and our trunk's node norms (~1 at width 0.125) are far below ResNet-12's 640-d
nodes; we use lr 0.1 (`sfc_lr`, every shipped profile). On synthetic 5-way 10-shot episodes lr 10
and 100 made query accuracy oscillate epoch to epoch, 0.1 was stable; with a well pre-trained trunk
SFC was neutral against class-mean prototypes, with an under-trained one it lost accuracy at every
lr (it fits the support set). `sfc_epochs = 0` gives class-mean prototypes. 1-shot uses the support
maps directly.

Training on base classes, as the paper: supervised pre-training with a linear head over all base
classes (`methods.pretrain`: the very artifact `finetune` builds when the `pretrain_*` settings agree;
DeepEMD reads `[methods.finetune]`'s pretrain_* keys, then `[methods.deepemd]`), then optional episodic meta-training
(`meta_iterations` > 0) of N-way 1-shot episodes with the EMD logits (official: SGD 5e-4 nesterov,
wd 5e-4, halved every 500 episodes). As in the authors' code, the k-shot model is the 1-shot model.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import ot
import torch
import torch.nn.functional as F
from torch import nn

from methods.backbones import count_params
from methods.base import EpisodeData, EpisodeResult, Method, SourceData
from methods.episodic import TaskTensors, meta_train_tasks
from methods.pretrain import pretrain_key, pretrained_backbone
from methods.registry import register
from methods.settings import DeepEMDSettings, to_json
from methods.training import accuracy, class_means, derived_seed, fit, predict, rng, shuffled_batches

try:  # POT's C network simplex without the Python wrapper's per-call checks
    from ot.lp.emd_wrap import emd_c as _emd_c
except ImportError:  # pragma: no cover - only on a POT that moved it
    _emd_c = None

META_FIELDS = ("meta_iterations", "meta_way", "meta_shots", "meta_queries", "meta_lr", "meta_weight_decay",
               "meta_step", "meta_gamma", "temperature", "solver")
SOLVERS = ("batched", "pot")
_OPTIMAL = 1  # network simplex result code


def normalise_masses(w1: np.ndarray, w2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each side to total mass n (its node count, as DeepEMD), then b rescaled so sum(b) == sum(a)
    exactly in float64 (POT's equal-mass requirement)."""
    n = w1.shape[-1]
    a = w1 * (n / w1.sum(-1, keepdims=True))
    b = w2 * (n / w2.sum(-1, keepdims=True))
    b = b * (a.sum(-1, keepdims=True) / b.sum(-1, keepdims=True))
    return np.ascontiguousarray(a), np.ascontiguousarray(b)


def emd_flows(cost: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, solver: str = "batched",
              stats: dict[str, float] | None = None) -> torch.Tensor:
    """Exact optimal flows of P independent transport problems: cost [P,n,m], weights [P,n], [P,m]
    (positive). Masses are normalised as `normalise_masses`. Returns float32 flows [P,n,m]."""
    t0 = time.perf_counter()
    P, n, m = cost.shape
    if solver == "pot":  # the reference path: one ot.emd per pair, converting each pair separately
        flows = []
        for i in range(P):
            a, b = normalise_masses(w1[i].detach().cpu().double().numpy()[None],
                                    w2[i].detach().cpu().double().numpy()[None])
            M = cost[i].detach().cpu().double().numpy()
            flows.append(torch.from_numpy(ot.emd(a[0], b[0], M)))
        out = torch.stack(flows) if flows else torch.zeros(0, n, m, dtype=torch.float64)
    elif solver == "batched":
        M = np.ascontiguousarray(cost.detach().cpu().double().numpy())
        a, b = normalise_masses(w1.detach().cpu().double().numpy(), w2.detach().cpu().double().numpy())
        G = np.empty((P, n, m))
        if _emd_c is None:  # pragma: no cover
            for i in range(P):
                G[i] = ot.emd(a[i], b[i], M[i])
        else:
            for i in range(P):
                g, _c, _u, _v, code = _emd_c(a[i], b[i], M[i], 100_000, 1, None, None)
                if code != _OPTIMAL:
                    raise RuntimeError(f"EMD solver did not reach the optimum (result code {code})")
                G[i] = g
        out = torch.from_numpy(G)
    else:
        raise ValueError(f"unknown EMD solver {solver!r}; use one of {SOLVERS}")
    if stats is not None:
        stats["solver_s"] = stats.get("solver_s", 0.0) + time.perf_counter() - t0
        stats["n_emd"] = stats.get("n_emd", 0) + P
    return out.to(device=cost.device, dtype=torch.float32)


def node_weights(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-reference weights of x's nodes against each y: x [A,C,n], y [B,C,m] -> [A,B,n]."""
    return F.relu(torch.einsum("acn,bc->abn", x, y.mean(-1))) + 1e-3


def centre_normalise(x: torch.Tensor) -> torch.Tensor:
    """DeepEMD's norm='center' (subtract each location's channel mean), then unit length per node."""
    return F.normalize(x - x.mean(1, keepdim=True), dim=1)


def emd_logits(query: torch.Tensor, proto: torch.Tensor, temperature: float = 12.5, solver: str = "batched",
               stats: dict[str, float] | None = None, return_flow: bool = False):
    """Logits [q, p] = T/N * sum_ij flow_ij cos_ij between query maps [q,C,h,w] and prototype maps
    [p,C,h,w] (or already flattened [.., C, N]). The flow is a constant (no gradient)."""
    q, p = query.flatten(2), proto.flatten(2)
    n, m = q.shape[-1], p.shape[-1]
    w1 = node_weights(q, p)  # [q,p,n]
    w2 = node_weights(p, q).transpose(0, 1)  # [q,p,m]
    sim = torch.einsum("qcn,pcm->qpnm", centre_normalise(q), centre_normalise(p))
    flow = emd_flows((1 - sim).reshape(-1, n, m), w1.reshape(-1, n), w2.reshape(-1, m), solver, stats)
    flow = flow.view_as(sim)
    logits = (temperature / n) * (flow * sim).sum((-1, -2))
    return (logits, flow) if return_flow else logits


def sfc_finetune(support: torch.Tensor, labels: torch.Tensor, n_way: int, s: DeepEMDSettings,
                 generator: torch.Generator, query: torch.Tensor | None = None,
                 query_y: torch.Tensor | None = None,
                 stats: dict[str, float] | None = None) -> tuple[torch.Tensor, list[float]]:
    """The Structured FC: learnable prototype maps, initialised to class means, fitted to the support
    set with EMD logits. Returns (prototypes, query accuracy after each epoch when query is given)."""
    sfc = nn.Parameter(class_means(support, labels, n_way).detach().clone())
    labels = labels.to(support.device)

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        idx = idx.to(support.device)
        return F.cross_entropy(emd_logits(support[idx], sfc, s.temperature, s.solver, stats), labels[idx])

    def evaluate() -> float:
        with torch.no_grad():
            return accuracy(emd_logits(query, sfc, s.temperature, s.solver, stats), query_y)

    log = fit(loss_of, shuffled_batches(support.shape[0], s.sfc_batch, generator),
              lambda: torch.optim.SGD([sfc], lr=s.sfc_lr, momentum=s.sfc_momentum, dampening=s.sfc_dampening,
                                      weight_decay=0.0),
              epochs=s.sfc_epochs,
              after_epoch=evaluate if query is not None and query_y is not None and s.sfc_curve else None)
    return sfc.detach(), log.epochs


def meta_train(encoder: nn.Module, source: SourceData, s: DeepEMDSettings, seed: int,
               device: torch.device) -> dict[str, list[float]]:
    """Episodic N-way `meta_shots`-shot training on base classes with EMD logits (DeepEMD stage 2), on
    the base-class episodes every meta-learner of the suite draws (`episodic.meta_train_tasks`)."""
    for p in encoder.parameters():
        p.requires_grad_(True)
    accs: list[float] = []
    n_support = s.meta_way * s.meta_shots

    def loss_of(task: TaskTensors) -> torch.Tensor:
        maps = encoder.feature_map(torch.cat([task.xs, task.xq]))
        logits = emd_logits(maps[n_support:], class_means(maps[:n_support], task.ys, s.meta_way), s.temperature,
                            s.solver)
        accs.append(accuracy(logits, task.yq))
        return F.cross_entropy(logits, task.yq)

    encoder.to(device)
    tasks = meta_train_tasks(source, s.meta_way, s.meta_shots, s.meta_queries, s.meta_iterations, seed, device,
                             crop_padding=s.crop_padding)
    log = fit(loss_of, lambda _: tasks,
              lambda: torch.optim.SGD(list(encoder.parameters()), lr=s.meta_lr, momentum=0.9, nesterov=True,
                                      weight_decay=s.meta_weight_decay),
              scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=s.meta_step, gamma=s.meta_gamma),
              module=encoder, keep_losses=True, progress="DeepEMD meta-train", total=s.meta_iterations)
    encoder.eval()
    return {"loss": log.losses, "acc": accs}


@register("deepemd", "DeepEMD-FCN: exact EMD between 4x4 feature-map nodes, SFC fine-tuning for k-shot",
          family="deepemd", settings=DeepEMDSettings)
class DeepEMD(Method):
    records_curve = True
    requires = ("ot",)  # POT's exact EMD solver
    episode_epochs_field = "sfc_epochs"
    # Facts (methods.base.MethodFacts)
    roles = frozenset({"opponent"})
    report_order = 80
    budget_knob = ("methods", "deepemd", "meta_iterations")

    def prepare(self, source: SourceData, settings: DeepEMDSettings, cache: Any) -> None:
        self.s = s = settings
        self.encoder, art = pretrained_backbone(source, s, cache, self.device)
        self.pretrain_log = art["log"]
        self.meta_log: dict[str, list[float]] = {}
        if s.meta_iterations > 0:
            key = {"pretrain": pretrain_key(source, s, False), **{k: v for k, v in to_json(s).items()
                                                                  if k in META_FIELDS}}
            encoder = self.encoder

            def build() -> dict[str, Any]:
                log = meta_train(encoder, source, s, derived_seed(source.seed, "deepemd-meta"), self.device)
                return {"encoder": {k: v.cpu() for k, v in encoder.state_dict().items()}, "log": log}

            meta = cache.get_or_build("deepemd-meta", key, build)
            self.encoder.load_state_dict(meta["encoder"])
            self.meta_log = meta["log"]
        self.encoder.to(self.device).eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)

    def maps(self, images_u8: torch.Tensor) -> torch.Tensor:
        """Dense eval-mode feature maps [B, C, h, w] of uint8 images."""
        return predict(self.encoder, images_u8, self.device, forward=self.encoder.feature_map)

    def run_episode(self, episode: EpisodeData) -> EpisodeResult:
        s = self.s
        t0 = time.perf_counter()
        stats: dict[str, float] = {}
        g = rng(episode.seed, "sfc", episode.index)
        fs, fq = self.maps(episode.support_x), self.maps(episode.query_x)
        curve: list[float] = []
        if episode.k_shot > 1 and s.sfc_epochs > 0:
            # per-epoch query EMDs only when a curve is drawn; the final accuracy is computed below either way
            query = (fq, episode.query_y) if episode.record_curve else (None, None)
            protos, curve = sfc_finetune(fs, episode.support_y, episode.n_way, s, g, *query, stats)
        else:  # 1-shot (the support maps) or SFC disabled (class-mean maps)
            protos = class_means(fs, episode.support_y, episode.n_way)
        with torch.no_grad():
            logits = torch.cat([emd_logits(chunk, protos, s.temperature, s.solver, stats) for chunk in fq.split(256)])
        acc = accuracy(logits, episode.query_y)
        return EpisodeResult(accuracy=acc, curve=(curve or [acc]) if episode.record_curve else None, wall_s=time.perf_counter() - t0,
                             params=count_params(self.encoder) + protos.numel() * int(episode.k_shot > 1),
                             extra={"solver_s": stats.get("solver_s", 0.0), "n_emd": int(stats.get("n_emd", 0)),
                                    "nodes": int(fs.shape[-1] * fs.shape[-2])})
