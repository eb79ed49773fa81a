"""What the scale trend sets the learngene gap against: the collective model's training compute and how
well it learnt its tasks, read from its cached continual run (nothing is trained here).

Why a module of its own: the compute is a property of the ancestor's run (its Net2Wider schedule grows
the network task by task, so every task costs more than the last), not of an episode; the scale
experiment (bench/experiments/scale.py) records it once per cell beside the accuracies.

FLOPs are counted by `methods.flops` (PyTorch's FlopCounterMode on the meta device) on one forward and
backward pass of the network at each task's widths, times the image passes of that task (epochs x its
train images). Evaluation passes and the optimiser step are left out.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from methods import flops
from methods.backbones import COLLECTIVE_POOL_AFTER, COLLECTIVE_WIDTHS, FC_WIDTH, CollectiveNet, scaled
from methods.learngene.collective import widening_schedule
from methods.learngene.openworld import continual_metrics
from methods.settings import CollectiveSettings


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
    """FLOPs of one image's forward and backward pass through a collective network of these widths."""
    return _train_flops(tuple(int(w) for w in widths), int(image_size), int(n_outputs), int(fc_width),
                        tuple(int(p) for p in pool_after))


@functools.lru_cache(maxsize=4096)
def _train_flops(widths: tuple[int, ...], image_size: int, n_outputs: int, fc_width: int,
                 pool_after: tuple[int, ...]) -> int:
    return flops.train_flops_per_image(lambda: CollectiveNet(n_outputs, image_size, widths=list(widths), width=1.0,
                                                             fc_width=fc_width, pool_after=pool_after), image_size)


def planned_widths_per_task(c: CollectiveSettings) -> list[list[int]]:
    """`widths_per_task` of the run these settings would train (the paper's base widths x width, grown by
    the settings' Net2Wider schedule); its last entry is the run's final widths."""
    start = [scaled(w, c.width) for w in COLLECTIVE_WIDTHS]
    sched = {str(k): v for k, v in widening_schedule(c.schedule, c.widen_until, c.width, c.tasks).items()}
    return widths_per_task(start, sched, c.tasks)


def planned_training_flops(c: CollectiveSettings, image_size: int) -> float:
    """`training_flops` of the run these settings would train, before training it (the cost model's
    ratio between two collective runs): every task's 5 x `images_per_class` images x `epochs` at the
    widths the Net2Wider schedule gives it (a task-local head of `head_classes`, else 100 outputs)."""
    per_task = planned_widths_per_task(c)
    images = c.classes_per_task * (c.images_per_class or 500)
    fc = scaled(FC_WIDTH, c.width)
    return float(sum(c.epochs * images * train_flops_per_image(w, image_size, c.head_classes or 100, fc)
                     for w in per_task))


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


def planned_joint_flops(c: CollectiveSettings, image_size: int, n_classes: int = 64) -> float:
    """Training FLOPs of the jointly trained control (`controls.joint_artifact`): the continual run's
    image passes, all at its final widths, with one output per base class."""
    from methods.learngene.controls import final_widths

    images = c.tasks * c.classes_per_task * (c.images_per_class or 500)
    return float(c.epochs * images * train_flops_per_image(final_widths(c), image_size, n_classes,
                                                           scaled(FC_WIDTH, c.width)))
