"""Control ancestors for issue 22's question "is it the ancestor?": the collective network trained
jointly instead of continually, not trained at all, and the fine-tuning baseline's pre-trained
individual network, each as a stored network entry that `stages.AncestorState.of_entry` reads.

Why these controls: learngene's ancestor is a 13-block network trained on 5-class tasks one after
another. Training the very same architecture (the continual run's final widths) jointly on all base
classes with one head, for the same number of image passes and with `[collective]`'s optimiser,
separates "continual" from "this network"; a random one at those widths separates "trained weights"
from "the weights' scale and the architecture". Each entry is built once and cached under a key of
every setting that changes it.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods.backbones import COLLECTIVE_POOL_AFTER, CollectiveNet
from methods.base import SourceData
from methods.pretrain import base_training_set
from methods.settings import CollectiveSettings
from methods.training import accuracy, derived_seed, epoch_batches, fit, predict, rng, seeded
from tasks.augment import train_transform
from tasks.imageset import TEST_POOL, TRAIN_POOL

CONTROLS_VERSION = 1

#: `CollectiveSettings` fields that change the jointly trained network (its widths, image passes and
#: optimiser); the continual run's other knobs (rho, checkpoints, heads) do not.
JOINT_KEY_FIELDS = ("width", "tasks", "epochs", "batch_size", "lr", "momentum", "weight_decay", "crop_padding",
                    "images_per_class", "classes_per_task", "widen_until", "schedule", "amp", "continual_pool")


def final_widths(c: CollectiveSettings) -> list[int]:
    """The continual collective network's widths after its last task: the base widths (x width) plus
    every Net2Wider step of its schedule (tests check it against the trained run)."""
    from methods.learngene.collective_facts import planned_widths_per_task

    return planned_widths_per_task(c)[-1]


def control_net(source: SourceData, c: CollectiveSettings) -> CollectiveNet:
    """A fresh 13-block collective network at the continual run's final widths, one output per base class."""
    return CollectiveNet(len(source.base_ids), source.data.image_size, widths=final_widths(c), width=1.0,
                         pool_after=COLLECTIVE_POOL_AFTER)


def entry_of(net: CollectiveNet) -> dict[str, Any]:
    """A network as `collective.ContinualLearner.state()` stores one (CPU tensors)."""
    return {"state": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
            "widths": list(net.widths), "pool_after": list(net.pool_after),
            "n_outputs": int(net.classifier[-1].out_features), "fc_width": int(net.classifier[0].out_features),
            "image_size": int(net.image_size), "softmax_output": bool(net.softmax_output)}


def trunk_entry(modules: Sequence[nn.Module], image_size: int) -> dict[str, Any]:
    """A conv trunk given as its modules in forward order (conv blocks = Sequential(conv, BN, ReLU),
    pools = MaxPool2d) as an entry with `blocks.{i}.` keys: how the fine-tuning baseline's
    pre-trained individual network becomes an ancestor."""
    state: dict[str, torch.Tensor] = {}
    widths: list[int] = []
    pools: list[int] = []
    for m in modules:
        if isinstance(m, nn.Sequential):
            state.update({f"blocks.{len(widths)}.{k}": v.detach().cpu().clone() for k, v in m.state_dict().items()})
            widths.append(int(m[0].out_channels))
        elif isinstance(m, nn.MaxPool2d):
            pools.append(len(widths) - 1)
        else:
            raise TypeError(f"unexpected {type(m).__name__} in a conv trunk")
    return {"state": state, "widths": widths, "pool_after": pools, "image_size": int(image_size)}


def _images(source: SourceData, idx: torch.Tensor) -> torch.Tensor:
    """The uint8 images the joint training reads (one place, so a test can spy on the indices)."""
    return source.data.images[idx]


def train_joint(net: CollectiveNet, source: SourceData, c: CollectiveSettings, passes: int,
                device: torch.device) -> dict[str, Any]:
    """SGD (`[collective]` lr, momentum, weight decay, batch size, crop padding) with one head over every
    base class, on base-class train images only, for `passes` images: whole epochs over the base set,
    then the first images of one more shuffled epoch (fractional epochs). Returns its log."""
    idx, y = base_training_set(source, 0, source.seed)
    n, bs = len(idx), c.batch_size
    full, rest = divmod(int(passes), n)
    g = rng(source.seed, "joint", "batches")
    net.to(device)
    y = y.to(device)

    def batches(epoch: int) -> list[torch.Tensor]:
        if epoch < full:
            return epoch_batches(n, bs, g, "keep")
        return list(torch.randperm(n, generator=g)[:rest].split(bs))

    def loss_of(b: torch.Tensor) -> torch.Tensor:
        xb = train_transform(_images(source, idx[b]).to(device), g, c.crop_padding)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=c.amp == "bf16"):
            return F.cross_entropy(net(xb), y[b.to(device)])

    steps = full * -(-n // bs) + -(-rest // bs)
    fit(loss_of, batches, lambda: torch.optim.SGD(net.parameters(), lr=c.lr, momentum=c.momentum,
                                                  weight_decay=c.weight_decay),
        epochs=full + (1 if rest else 0), module=net, progress="joint collective", total=steps)
    test = torch.cat([source.data.indices(k, TEST_POOL) for k in source.base_ids])
    labels = torch.cat([torch.full((len(source.data.indices(k, TEST_POOL)),), i)
                        for i, k in enumerate(source.base_ids)])
    held_out = accuracy(predict(net, source.data.images[test], device), labels) if len(test) else float("nan")
    return {"passes": int(passes), "epochs": passes / n, "steps": steps, "base_images": n,
            "base_test_accuracy": held_out}


def joint_artifact(source: SourceData, c: CollectiveSettings, cache: Any, device: torch.device | str,
                   passes: int) -> dict[str, Any]:
    """The jointly trained control, built once per data and `JOINT_KEY_FIELDS` (and `passes`, the
    continual run's image passes) and cached: {"final": entry, "log": ...}."""
    key = {"version": CONTROLS_VERSION, "source": source.fingerprint(), "passes": int(passes),
           "collective": {k: getattr(c, k) for k in JOINT_KEY_FIELDS}}

    def build() -> dict[str, Any]:
        t0 = time.perf_counter()
        with seeded(derived_seed(source.seed, "joint", "init")):  # the initialisation and dropout's draws
            net = control_net(source, c)
            log = train_joint(net, source, c, passes, torch.device(device))
        return {"final": entry_of(net), "log": log, "train_s": time.perf_counter() - t0}

    return cache.get_or_build("learngene-joint", key, build)


#: Base-class episodes (5-way, 10 shots + 15 queries each) whose images set the recalibrated random
#: ancestor's BN statistics (as `collective-ncm-random`'s trunk).
BN_EPISODES = 20


def random_bn_artifact(source: SourceData, c: CollectiveSettings, cache: Any) -> dict[str, Any]:
    """The random control with its BatchNorm running statistics estimated on base-class images (the
    cumulative average over `BN_EPISODES` episodes; no weight changes): built once and cached."""
    from methods.episodic import meta_train_tasks, recalibrate_bn
    from methods.learngene.collective import model_from_state

    widths = final_widths(c)
    key = {"version": CONTROLS_VERSION, "source": source.fingerprint(), "widths": widths, "bn_episodes": BN_EPISODES}

    def build() -> dict[str, Any]:
        net = model_from_state(random_artifact(source, c, cache)["final"])

        class Features(nn.Module):  # recalibrate_bn calls its module on images
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.net.features(x)

        have = min(len(source.data.indices(c, TRAIN_POOL)) for c in source.base_ids)
        shots = min(10, have // 2)  # 10 + 15 per class where the base classes have them (a small test set has fewer)
        recalibrate_bn(Features(), meta_train_tasks(source, 5, shots, min(15, have - shots), BN_EPISODES,
                                                    derived_seed(source.seed, "random-ancestor-bn"), torch.device("cpu")))
        return {"final": entry_of(net.eval())}

    return cache.get_or_build("learngene-random-bn", key, build)


def random_artifact(source: SourceData, c: CollectiveSettings, cache: Any) -> dict[str, Any]:
    """The random control: `control_net` seeded from the source seed, untrained (fresh BN statistics)."""
    widths = final_widths(c)
    key = {"version": CONTROLS_VERSION, "source": source.fingerprint(), "widths": widths}

    def build() -> dict[str, Any]:
        with seeded(derived_seed(source.seed, "random-ancestor")):
            return {"final": entry_of(control_net(source, c))}

    return cache.get_or_build("learngene-random", key, build)
