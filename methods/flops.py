"""FLOPs of one image's forward and backward pass through a network, counted without running it.

Why: the scale trend sets its gap against the collective model's training compute, and the cost model
scales a recorded time to a cell at another width by the same count. `torch.utils.flop_counter`
counts per operator (2 per multiply-accumulate of convolutions and matrix products; BatchNorm, ReLU and
pooling are not counted). The network is built on the meta device (shapes only: no arithmetic, no
memory) with the global RNG forked, so counting never moves the random stream a cell reads afterwards.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def train_flops_per_image(build: Callable[[], nn.Module], image_size: int) -> int:
    """FLOPs of one image's forward and backward pass through the network `build()` makes (eval mode;
    the input image gets no gradient)."""
    counter = FlopCounterMode(display=False)
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        net = build().eval()
        with counter:
            net(torch.zeros(1, 3, image_size, image_size)).sum().backward()
    return int(counter.get_total_flops())


@functools.lru_cache(maxsize=256)
def individual_train_flops(width: float, image_size: int, n_way: int = 5) -> int:
    """`train_flops_per_image` of the individual network (scratch's, and learngene's template) at `width`."""
    from methods.backbones import IndividualNet

    return train_flops_per_image(lambda: IndividualNet(n_way, image_size, width), image_size)
