"""The supervised training loop shared by `scratch`, `learngene` and fine-tuning methods, so they
differ only where the paper says they do (initialisation and the EWC term).

One optimizer per task (the official code re-created it every epoch for the individual model;
`reset_optimizer_each_epoch=True` reproduces that). Query accuracy after every epoch is the curve.

Mini-batches (`last_batch`): the paper's recipe (batch 32, no drop-last, "keep") ends every epoch of a
100-image support set on a 4-image batch, whose BatchNorm statistics are noise; on tiny-imagenet that
cost scratch and learngene ~7 points at 20 shots, so they scored below their own 10-shot accuracy.
"balanced" (the default of the shipped profiles) splits each epoch's permutation into the same
number of batches as "keep" but of near-equal size (100 -> 4 x 25, 50 -> 2 x 25): the same number of
SGD steps, no tiny batch. "drop" drops the short batch (fewer steps); kept for comparison.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tasks.augment import eval_transform, train_transform


@torch.no_grad()
def predict(model: nn.Module, images_u8: torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Logits for uint8 images, in eval mode, batched."""
    was = model.training
    model.eval()
    outs = [model(eval_transform(chunk.to(device))) for chunk in images_u8.split(batch_size)]
    model.train(was)
    return torch.cat(outs)


LAST_BATCH_POLICIES = ("keep", "balanced", "drop")


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, last_batch: str = "keep") -> list[torch.Tensor]:
    """One epoch's mini-batches of indices 0..n-1 in a fresh random order (see `last_batch` above)."""
    if last_batch not in LAST_BATCH_POLICIES:
        raise ValueError(f"last_batch must be one of {', '.join(LAST_BATCH_POLICIES)}, got {last_batch!r}")
    order = torch.randperm(n, generator=generator)
    if last_batch == "balanced":
        return list(torch.tensor_split(order, -(-n // batch_size)))
    batches = list(order.split(batch_size))
    if last_batch == "drop" and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1).cpu() == labels.cpu()).float().mean())


def train_supervised(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float,
                     momentum: float = 0.9, weight_decay: float = 5e-4, batch_size: int = 32,
                     generator: torch.Generator, device: torch.device,
                     eval_x: torch.Tensor | None = None, eval_y: torch.Tensor | None = None,
                     extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
                     reset_optimizer_each_epoch: bool = False, crop_padding: int = 0,
                     amp_dtype: torch.dtype | None = None,
                     params: list[nn.Parameter] | None = None, last_batch: str = "keep") -> list[float]:
    """SGD on (x, y) for `epochs`; returns query accuracy after each epoch (empty without eval data)."""
    model.to(device)
    y = y.to(device)
    params = params if params is not None else [p for p in model.parameters() if p.requires_grad]

    def new_opt() -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    opt = new_opt()
    curve: list[float] = []
    n = x_u8.shape[0]
    for _epoch in range(epochs):
        if reset_optimizer_each_epoch and _epoch > 0:
            opt = new_opt()
        model.train()
        for idx in epoch_batches(n, batch_size, generator, last_batch):
            xb = train_transform(x_u8[idx].to(device), generator, crop_padding)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = F.cross_entropy(model(xb), y[idx.to(device)])
            if extra_loss is not None:
                loss = loss + extra_loss(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if eval_x is not None and eval_y is not None:
            curve.append(accuracy(predict(model, eval_x, device), eval_y))
    return curve
