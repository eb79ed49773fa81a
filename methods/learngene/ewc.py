"""The EWC retain loss of the individual model (Wang et al., AAAI 2022), implemented as the paper states it.

L = CE + λ · Σ_i ½ F_i (θ_i − θ*_i)², summed over the *inherited* parameters only (selected by
name, e.g. every `gene.*` parameter: conv weights/biases and BN γ/β, not running statistics).
θ* is the learngene as inherited, fixed for the whole episode (the official code anchored to the
previous epoch and, through a lookup bug, always returned 0).

Fisher estimator (diagonal, computed once at inheritance from min(`n_samples`, n) support images,
chosen by a seeded permutation, no augmentation, network in eval mode so each sample's gradient is
its own): F_i = mean_x E_y[(∂ log p(y|x) / ∂θ_i)²] with y drawn by `estimator`:
- "empirical" (default, what the official code computes): y = the true label;
- "sampled": y ~ p(·|x) from the model (one draw per sample);
- "exact": the expectation over all classes, Σ_y p(y|x)(∂ log p(y|x))².
Per-sample gradients come from `torch.func.vmap(grad(...))` in chunks, restricted to the selected
parameters, so memory stays bounded at full width.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from tasks.augment import eval_transform


def fisher_diagonal(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names: Sequence[str], *,
                    n_samples: int = 128, estimator: str = "empirical",
                    generator: torch.Generator | None = None, chunk: int = 32,
                    preprocessed: bool = False) -> dict[str, torch.Tensor]:
    """Diagonal Fisher of the named parameters (see module docstring). `x` uint8 images unless `preprocessed`."""
    if estimator not in ("empirical", "sampled", "exact"):
        raise ValueError(f"unknown Fisher estimator '{estimator}'; use empirical, sampled or exact")
    device = next(model.parameters()).device
    n = min(int(n_samples), len(x))
    order = torch.randperm(len(x), generator=generator)[:n]
    xs = x[order].to(device)
    xs = xs if preprocessed else eval_transform(xs)
    ys = y[order].to(device)
    params = dict(model.named_parameters())
    sel = {k: params[k].detach() for k in names}
    rest = {k: v.detach() for k, v in params.items() if k not in sel}
    buffers = dict(model.named_buffers())
    was = model.training
    model.eval()

    def logp(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, ({**rest, **p}, buffers), (xi.unsqueeze(0),))
        return F.log_softmax(out.float(), dim=1)[0].gather(0, yi.view(1))[0]

    g_fn = vmap(grad(logp), in_dims=(None, 0, 0))
    acc = {k: torch.zeros_like(v) for k, v in sel.items()}
    with torch.no_grad():
        probs = torch.softmax(model(xs).float(), dim=1) if estimator != "empirical" else None
    n_classes = probs.shape[1] if probs is not None else 0
    for s in range(0, n, chunk):
        xb = xs[s:s + chunk]
        if estimator == "exact":
            for c in range(n_classes):
                yc = torch.full((len(xb),), c, device=device, dtype=torch.long)
                w = probs[s:s + chunk, c]
                gs = g_fn(sel, xb, yc)
                for k in acc:
                    acc[k] += torch.einsum("b,b...->...", w, gs[k].pow(2))
            continue
        if estimator == "sampled":
            yb = torch.multinomial(probs[s:s + chunk], 1,
                                       generator=generator if device.type == "cpu" else None).squeeze(1)
        else:
            yb = ys[s:s + chunk]
        gs = g_fn(sel, xb, yb)
        for k in acc:
            acc[k] += gs[k].pow(2).sum(0)
    model.train(was)
    return {k: v / max(n, 1) for k, v in acc.items()}


class EWCPenalty:
    """λ · Σ ½ F (θ − θ*)² over the named parameters; θ* captured at construction (the inherited values)."""

    def __init__(self, model: nn.Module, fisher: Mapping[str, torch.Tensor], lam: float):
        params = dict(model.named_parameters())
        missing = [k for k in fisher if k not in params]
        if missing:
            raise KeyError(f"EWC parameters not in the model: {missing[:3]}")
        self.names = list(fisher)
        self.anchor = {k: params[k].detach().clone() for k in self.names}
        self.fisher = {k: v.detach().to(params[k].device) for k, v in fisher.items()}
        self.lam = float(lam)

    def __call__(self, model: nn.Module) -> torch.Tensor:
        params = dict(model.named_parameters())
        total = sum(((self.fisher[k] * (params[k] - self.anchor[k]).pow(2)).sum() for k in self.names),
                    start=torch.zeros((), device=next(iter(self.anchor.values())).device))
        return self.lam * 0.5 * total

    @torch.no_grad()
    def per_episode(self, model: nn.Module, n: int) -> list[float]:
        """Each of n stacked episodes' own penalty, when this penalty is over a stacked network
        (`methods.stacked`: every tensor is the episodes' tensors concatenated along dim 0)."""
        params = dict(model.named_parameters())
        total = sum((self.fisher[k] * (params[k] - self.anchor[k]).pow(2)).reshape(n, -1).sum(1)
                    for k in self.names)
        return [float(v) for v in self.lam * 0.5 * total]
