"""What the scale trend sets the learngene gap against: the collective model's training compute and how
well it learnt its tasks, read from its cached continual run (nothing is trained here).

Why a module of its own: the compute is a property of the ancestor's run (its Net2Wider schedule grows
the network task by task, so every task costs more than the last), not of an episode; the scale
experiment (bench/experiments/scale.py) records it once per cell beside the accuracies.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` (PyTorch's own per-operator counts:
2 per multiply-accumulate of convolutions and matrix products; BatchNorm, ReLU and pooling are not
counted) on one forward and backward pass of the network at each task's widths, times the image
passes of that task (epochs x its train images). Evaluation passes and the optimiser step are left out.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from methods.backbones import COLLECTIVE_POOL_AFTER, CollectiveNet
from methods.learngene.openworld import continual_metrics


def widths_per_task(initial: Sequence[int], schedule: Mapping[str, Sequence[Sequence[int]]],
                    n_tasks: int) -> list[list[int]]:
    """The conv widths each task trained at: `initial` (task 0) grown by the widenings scheduled before
    each task (`schedule`: str(task) -> [(conv, channels added)], as a collective artifact stores it)."""
    widths, out = list(initial), []
    for t in range(n_tasks):
        for conv, add in schedule.get(str(t), ()):
            widths[int(conv)] += int(add)
        out.append(list(widths))
    return out


def train_flops_per_image(widths: Sequence[int], image_size: int, n_outputs: int, fc_width: int,
                          pool_after: Sequence[int] = COLLECTIVE_POOL_AFTER) -> int:
    """FLOPs of one image's forward and backward pass through a collective network of these widths.
    Counted on the meta device (shapes only: no arithmetic, no memory) with the global RNG forked, so
    counting never moves the random stream a cell's training reads afterwards."""
    counter = FlopCounterMode(display=False)
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        net = CollectiveNet(n_outputs, image_size, widths=list(widths), width=1.0, fc_width=fc_width,
                            pool_after=tuple(pool_after)).eval()
        with counter:
            net(torch.zeros(1, 3, image_size, image_size)).sum().backward()
    return int(counter.get_total_flops())


def training_flops(art: Mapping[str, Any], train_images: Sequence[int], epochs: int, through_task: int,
                   initial_widths: Sequence[int]) -> float:
    """FLOPs of the continual training up to and including task `through_task`: each task's image passes
    (`epochs` x `train_images[t]`) at the widths it trained at (`initial_widths` grown by the artifact's
    schedule)."""
    final = art["final"]
    per_task = widths_per_task(initial_widths, art["schedule"], through_task + 1)
    return float(sum(epochs * n * train_flops_per_image(w, final["image_size"], final["n_outputs"], final["fc_width"],
                                                         final["pool_after"])
                     for n, w in zip(train_images, per_task, strict=False)))


def ancestor_facts(art: Mapping[str, Any], train_images: Sequence[int], epochs: int, through_task: int,
                   initial_widths: Sequence[int]) -> dict[str, float]:
    """The continual ancestor's numbers after task `through_task`: its training FLOPs, its mean accuracy
    on each task right after learning it (R[t][t]), and its mean accuracy on every task so far (the last
    row of R: what forgetting left)."""
    R = [row[:through_task + 1] for row in art["R"][:through_task + 1]]
    return {"ancestor_train_flops": training_flops(art, train_images, epochs, through_task, initial_widths),
            "ancestor_task_acc": float(sum(R[t][t] for t in range(len(R))) / len(R)),
            "ancestor_final_acc": continual_metrics(R)["avg_acc"]}
