"""The collective model (Wang et al., AAAI 2022): an expandable 13-conv network trained on 5-class
tasks one after another, grown by Net2Wider on the official code's schedule, with the judgement
criterion ρ recorded for every layer and task, checkpoints kept, and the accuracy matrix R[t, i].

Net2Deeper (`deepen`) is the expandable network's other operator in the paper's description; the
official code's schedule never deepens, so no training here calls it (the network stays 13 convs
deep). It is kept, tested for exactness, for a schedule that would.

Net2Wider is function-preserving with BatchNorm: every new channel copies its source's conv filter,
bias and BN parameters and statistics, and the next layer's incoming weights are divided by the
replica count (tests/test_learngene_collective.py checks it). Each task trains through the suite's
one loop (`methods.training.train_supervised`) with a fresh SGD optimiser, as the official code.

Why ρ is computed from tensor hooks on the conv weights: the hook sees exactly ∂L/∂W of the
batch-mean loss (weight decay is added later by the optimizer, as in the official code), and the
count stays on the device (no per-step CPU copies).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from methods.backbones import COLLECTIVE_POOL_AFTER, CollectiveNet, scaled
from methods.settings import CollectiveSettings
from methods.training import Recipe, derived_seed, predict, rng, train_supervised
from tasks.continual import ContinualTask
from tasks.imageset import ImageSet

PAPER_ADD_CONV = (2, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12)
PAPER_ADD_WIDTH = (64, 64, 64, 64, 64, 64, 64, 64, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128)
RHO_MODES = ("signed", "abs")


# --------------------------------------------------------------------------- Net2Net operators


def _conv_of(block: nn.Sequential) -> nn.Conv2d:
    return block[0]


def _bn_of(block: nn.Sequential) -> nn.BatchNorm2d:
    return block[1]


@torch.no_grad()
def widen(net: CollectiveNet, layer: int, extra: int, generator: torch.Generator) -> None:
    """Net2Wider on conv block `layer`: add `extra` output channels, each a copy of a random existing one.

    Function-preserving in eval mode: a copied channel has identical conv filter, bias and BN
    parameters/statistics, so it outputs the same activation as its source; the next layer sees the
    activation `count` times and each incoming weight is divided by `count`. The new modules take the
    network's current train/eval mode (a fresh module is in train mode, and a train-mode BN in an eval
    network would normalise with batch statistics and overwrite its running ones).
    """
    if extra <= 0:
        return
    block = net.blocks[layer]
    conv, bn = _conv_of(block), _bn_of(block)
    old = conv.out_channels
    picks = torch.randint(0, old, (extra,), generator=generator)
    mapping = torch.cat([torch.arange(old), picks])
    counts = torch.bincount(mapping, minlength=old).to(conv.weight.dtype)
    dev = conv.weight.device
    m = mapping.to(dev)
    scale = counts.to(dev)[m]  # replica count of every new channel's source

    new_conv = nn.Conv2d(conv.in_channels, old + extra, conv.kernel_size, conv.stride, conv.padding,
                         bias=conv.bias is not None).to(dev, conv.weight.dtype)
    new_conv.weight.copy_(conv.weight[m])
    if conv.bias is not None:
        new_conv.bias.copy_(conv.bias[m])
    new_bn = nn.BatchNorm2d(old + extra, eps=bn.eps, momentum=bn.momentum).to(dev, bn.weight.dtype)
    new_bn.weight.copy_(bn.weight[m])
    new_bn.bias.copy_(bn.bias[m])
    new_bn.running_mean.copy_(bn.running_mean[m])
    new_bn.running_var.copy_(bn.running_var[m])
    new_bn.num_batches_tracked.copy_(bn.num_batches_tracked)
    block[0], block[1] = new_conv.train(net.training), new_bn.train(net.training)

    if layer + 1 < len(net.blocks):
        nxt_block = net.blocks[layer + 1]
        nxt = _conv_of(nxt_block)
        new_next = nn.Conv2d(old + extra, nxt.out_channels, nxt.kernel_size, nxt.stride, nxt.padding,
                             bias=nxt.bias is not None).to(dev, nxt.weight.dtype)
        new_next.weight.copy_(nxt.weight[:, m] / scale[None, :, None, None])
        if nxt.bias is not None:
            new_next.bias.copy_(nxt.bias)
        nxt_block[0] = new_next.train(net.training)
    else:  # last conv -> flatten (channel-major, spatial s*s per channel) -> first linear
        fc = net.classifier[0]
        s2 = net.spatial * net.spatial
        w = fc.weight.view(fc.out_features, old, s2)[:, m, :] / scale[None, :, None]
        new_fc = nn.Linear((old + extra) * s2, fc.out_features, bias=fc.bias is not None).to(dev, fc.weight.dtype)
        new_fc.weight.copy_(w.reshape(fc.out_features, -1))
        if fc.bias is not None:
            new_fc.bias.copy_(fc.bias)
        net.classifier[0] = new_fc.train(net.training)
    net.widths[layer] = old + extra


@torch.no_grad()
def deepen(net: CollectiveNet, after: int) -> None:
    """Net2Deeper: insert an identity conv(3x3)+BN+ReLU block right after block `after` (no schedule
    calls it yet: see the module docstring).

    Exact in eval mode because the input is a post-ReLU (non-negative) map: the centred identity
    kernel copies it, BN with mean 0, var 1-eps, γ 1, β 0 is the identity, and ReLU is idempotent.
    A pool that followed block `after` now follows the new block (max-pool commutes with identity).
    The new block takes the network's current train/eval mode, as in `widen`.
    """
    c = net.widths[after]
    dev = _conv_of(net.blocks[after]).weight.device
    conv = nn.Conv2d(c, c, 3, padding=1, bias=True).to(dev)
    conv.weight.zero_()
    conv.weight[torch.arange(c), torch.arange(c), 1, 1] = 1.0
    conv.bias.zero_()
    bn = nn.BatchNorm2d(c).to(dev)
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)
    net.blocks.insert(after + 1, nn.Sequential(conv, bn, nn.ReLU(inplace=True)).train(net.training))
    net.widths.insert(after + 1, c)
    net.pool_after = tuple(p if p < after else p + 1 for p in net.pool_after)


def widening_schedule(kind: str | Sequence[Sequence[int]], widen_until: int, width: float,
                      n_tasks: int) -> dict[int, list[tuple[int, int]]]:
    """task -> [(conv index, channels to add)] applied before that task.

    - "paper": the 20 add_conv/add_width steps of the official code, widths scaled by `width`. With widen_until = 20 step s
      runs before task s+1 exactly as in the official code; with fewer tasks the steps are spread
      evenly over tasks 1..widen_until (several per task), so a short CPU run still ends with the
      paper's final architecture (×width) and the learngene has the paper's shape.
    - "none" / "uniform": no widening (Figure 6b's uniform network).
    - a list of [task, conv, add] triples (add before `width` scaling is NOT applied: exact channels).
    """
    out: dict[int, list[tuple[int, int]]] = {}
    if isinstance(kind, str):
        if kind in ("none", "uniform"):
            return out
        if kind != "paper":
            raise ValueError(f"unknown widening schedule '{kind}'; use paper, none or a list of [task, conv, add]")
        last = min(int(widen_until), n_tasks - 1)
        if last < 1:
            return out
        steps = len(PAPER_ADD_CONV)
        for s in range(steps):
            task = 1 + (s * last) // steps
            out.setdefault(task, []).append((PAPER_ADD_CONV[s], scaled(PAPER_ADD_WIDTH[s], width)))
        return out
    for task, conv, add in kind:
        out.setdefault(int(task), []).append((int(conv), int(add)))
    return out


# --------------------------------------------------------------------------- continual training


class _RhoRecorder:
    """Counts, per conv layer and epoch, the fraction of weight-gradient entries above σ (both modes)."""

    def __init__(self, net: CollectiveNet, sigma: float, epochs: int, steps_per_epoch: int):
        self.sigma = sigma
        self.steps_per_epoch = steps_per_epoch
        n = len(net.blocks)
        dev = _conv_of(net.blocks[0]).weight.device
        self.sums = {m: torch.zeros(n, epochs, device=dev) for m in RHO_MODES}
        self.steps = [0] * n
        self.handles = [_conv_of(b).weight.register_hook(self._hook(i)) for i, b in enumerate(net.blocks)]

    def _hook(self, layer: int):
        def fn(grad: torch.Tensor) -> None:
            e = min(self.steps[layer] // self.steps_per_epoch, self.sums["signed"].shape[1] - 1)
            g = grad.detach()
            self.sums["signed"][layer, e] += (g > self.sigma).float().mean()
            self.sums["abs"][layer, e] += (g.abs() > self.sigma).float().mean()
            self.steps[layer] += 1
        return fn

    def close(self) -> dict[str, list[list[float]]]:
        """Per-mode [layer][epoch] means over the batches of each epoch."""
        for h in self.handles:
            h.remove()
        return {m: (s / self.steps_per_epoch).tolist() for m, s in self.sums.items()}


def task_outputs(task: ContinualTask, head: str, class_index: Mapping[int, int] | None) -> torch.Tensor:
    """The head outputs that task's labels live on: 0..4 (task-local head) or its classes' global ids."""
    if head == "task_local":
        return torch.arange(len(task.classes))
    assert class_index is not None
    return torch.tensor([class_index[c] for c in task.classes])


def train_targets(task: ContinualTask, head: str, class_index: Mapping[int, int] | None) -> torch.Tensor:
    return task_outputs(task, head, class_index)[task.train_labels]


class ContinualLearner:
    """One collective network learning tasks in sequence; records ρ rows and the accuracy matrix.

    `head="task_local"` (default, as the official code): labels 0..4 in every task on a shared head.
    `head="class_incremental"`: every class has its own output (`class_index`), so old classes keep
    their meaning and forgetting is measured against a stable head. R[t][i] is the accuracy on task
    i's held-out test images after training task t, argmax over task i's outputs (task-aware).
    """

    def __init__(self, net: CollectiveNet, data: ImageSet, cfg: CollectiveSettings, *, device: torch.device,
                 seed: int, head: str = "task_local", class_index: Mapping[int, int] | None = None):
        if head not in ("task_local", "class_incremental"):
            raise ValueError(f"unknown collective head '{head}'; use task_local or class_incremental")
        self.net, self.data, self.cfg, self.device = net.to(device), data, cfg, device
        self.head, self.class_index = head, class_index
        self.generator = rng(seed, "collective", "batches")
        self.widen_generator = rng(seed, "collective", "widen")
        self.tasks: list[ContinualTask] = []
        self.R: list[list[float]] = []
        self.rho: list[dict[str, Any]] = []
        self.train_acc: list[float] = []

    def learn(self, task: ContinualTask, widen_ops: Iterable[tuple[int, int]] = ()) -> None:
        """Widen as scheduled, train one task with a fresh SGD optimizer, record ρ and R[t, :]."""
        for conv, add in widen_ops:
            widen(self.net, conv, add, self.widen_generator)
        cfg = self.cfg
        t = len(self.tasks)
        x = self.data.images[task.train_idx].to(self.device)
        y = train_targets(task, self.head, self.class_index)
        steps = max(1, math.ceil(len(x) / cfg.batch_size))
        rec = _RhoRecorder(self.net, cfg.sigma, cfg.epochs, steps)
        recipe = Recipe.of(cfg, amp_dtype=torch.bfloat16 if cfg.amp == "bf16" else None)  # last batch kept
        try:
            train_supervised(self.net, x, y, recipe, generator=self.generator, device=self.device,
                             progress=f"collective task {t}")
        finally:
            per_epoch = rec.close()
        for mode, layers in per_epoch.items():
            for layer, vals in enumerate(layers):
                self.rho.append({"task": t, "layer": layer + 1, "mode": mode, "sigma": cfg.sigma,
                                 "rho": float(sum(vals) / len(vals)), "per_epoch": [float(v) for v in vals]})
        self.tasks.append(task)
        self.R.append(self.evaluate())

    @torch.no_grad()
    def evaluate(self) -> list[float]:
        """Accuracy on every task learnt so far (held-out test images, task-aware argmax)."""
        idx = torch.cat([tk.test_idx for tk in self.tasks])
        if len(idx) == 0:
            return [float("nan")] * len(self.tasks)
        out = predict(self.net, self.data.images[idx], self.device).float().cpu()
        accs, pos = [], 0
        for tk in self.tasks:
            n = len(tk.test_idx)
            cols = task_outputs(tk, self.head, self.class_index)
            pred = out[pos:pos + n][:, cols].argmax(1)
            accs.append(float((pred == tk.test_labels).float().mean()) if n else float("nan"))
            pos += n
        return accs

    def state(self) -> dict[str, Any]:
        """A weights_only-loadable snapshot of the current network."""
        return {"state": {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()},
                "widths": list(self.net.widths), "pool_after": list(self.net.pool_after),
                "n_outputs": int(self.net.classifier[-1].out_features), "fc_width": int(self.net.classifier[0].out_features),
                "image_size": int(self.net.image_size), "softmax_output": bool(self.net.softmax_output)}


def architecture_of(entry: Mapping[str, Any]) -> CollectiveNet:
    """A freshly initialised CollectiveNet with the widths/depth of a `ContinualLearner.state()`."""
    return CollectiveNet(entry["n_outputs"], entry["image_size"], widths=list(entry["widths"]), width=1.0,
                         fc_width=entry["fc_width"], softmax_output=entry["softmax_output"],
                         pool_after=tuple(entry["pool_after"]))


def model_from_state(entry: Mapping[str, Any]) -> CollectiveNet:
    """Rebuild a CollectiveNet (any widths/depth) from `ContinualLearner.state()`."""
    net = architecture_of(entry)
    net.load_state_dict(entry["state"])
    return net


def initial_widths(cfg: CollectiveSettings, uniform_width: int | None) -> list[int]:
    """The task-0 widths (unscaled): the paper's base network, or 13 × `uniform_width` (Figure 6b)."""
    from methods.backbones import COLLECTIVE_WIDTHS

    return [int(uniform_width)] * 13 if uniform_width else list(COLLECTIVE_WIDTHS)


def train_collective(data: ImageSet, tasks: Sequence[ContinualTask], cfg: CollectiveSettings, *,
                     device: torch.device, seed: int, n_outputs: int, uniform_width: int | None = None,
                     faithful_softmax: bool = False, head: str = "task_local",
                     class_index: Mapping[int, int] | None = None, keep: Iterable[int] = ()) -> dict[str, Any]:
    """Continual training over `tasks` (one task after another, as the paper); returns the artifact dict.

    Keys: final (state), checkpoints {str(task): state} after the tasks in `keep`, tasks (JSON),
    rho (tidy rows), R (lower-triangular accuracy matrix), schedule (task -> widenings), head.
    """
    width = cfg.width
    torch.manual_seed(derived_seed(seed, "collective", "init"))
    net = CollectiveNet(n_outputs, data.image_size, widths=initial_widths(cfg, uniform_width), width=width,
                        softmax_output=faithful_softmax, pool_after=COLLECTIVE_POOL_AFTER)
    schedule = widening_schedule("none" if uniform_width else cfg.schedule, cfg.widen_until, width, len(tasks))
    learner = ContinualLearner(net, data, cfg, device=device, seed=seed, head=head, class_index=class_index)
    keep = set(int(k) for k in keep)
    checkpoints: dict[str, Any] = {}
    for t, task in enumerate(tasks):
        learner.learn(task, schedule.get(t, ()))
        if t in keep:
            checkpoints[str(t)] = learner.state()
    return {"final": learner.state(), "checkpoints": checkpoints, "tasks": [tk.to_json(data) for tk in tasks],
            "task_classes": [list(tk.classes) for tk in tasks], "rho": learner.rho, "R": learner.R,
            "schedule": {str(k): [list(op) for op in v] for k, v in schedule.items()}, "head": head}
