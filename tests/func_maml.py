"""MAML's meta-gradient written with `torch.func` (functional_call + grad, vmap over the meta-batch).

Test and benchmark code only: tests/test_maml.py checks it equals learn2learn's meta-gradient, and
tests/benchmarks/test_bench_meta.py times both. Measured at width 0.25, meta-batch 2 (2 CPU threads and
an H100) it is 1.0-1.7x *slower* than learn2learn's clone/adapt loop, which the methods therefore use.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from methods.episodic import TaskTensors
from methods.maml import EpisodeBatchNorm2d, bn_statistics_from


@contextlib.contextmanager
def elementary_bn(module: nn.Module) -> Iterator[None]:
    """Within the block, EpisodeBatchNorm2d layers avoid F.batch_norm (needed under torch.func)."""
    layers = [m for m in module.modules() if isinstance(m, EpisodeBatchNorm2d)]
    for m in layers:
        m.elementary = True
    try:
        yield
    finally:
        for m in layers:
            m.elementary = False



def func_meta_gradient(model: nn.Module, tasks: Sequence[TaskTensors], inner_lr: float, steps: int,
                       first_order: bool, bn_mode: str) -> tuple[dict[str, torch.Tensor], float]:
    """The same meta-gradient as `l2l_meta_gradient`, functionally: grad of the vmapped mean query loss.

    All tasks must have the same shapes (they do in meta-training). Returns (gradients by parameter
    name, mean query loss)."""
    from torch.func import functional_call, grad_and_value, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def support_loss(p: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, p, (xs,)), ys)

    inner_grad = torch.func.grad(support_loss)

    def task_loss(p: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor,
                  yq: torch.Tensor) -> torch.Tensor:
        for _ in range(steps):
            g = inner_grad(p, xs, ys)
            if first_order:
                g = {k: v.detach() for k, v in g.items()}
            p = {k: p[k] - inner_lr * g[k] for k in p}
        if bn_mode == "transductive":
            return F.cross_entropy(functional_call(model, p, (xq,)), yq)
        n_s = xs.shape[0]
        with bn_statistics_from(model, n_s):
            return F.cross_entropy(functional_call(model, p, (torch.cat([xs, xq]),))[n_s:], yq)

    xs, ys, xq, yq = (torch.stack([getattr(t, f) for t in tasks]) for f in ("xs", "ys", "xq", "yq"))

    def meta_loss(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return vmap(task_loss, in_dims=(None, 0, 0, 0, 0), randomness="error")(p, xs, ys, xq, yq).mean()

    with elementary_bn(model):
        grads, loss = grad_and_value(meta_loss)(params)
    return grads, float(loss)
