"""The one optimisation loop every gradient-trained part of the suite runs through, and the small
helpers around it (seeded generators, shuffled mini-batches, eval-mode prediction, class means).

Why one loop: methods must differ only where their papers say they do (initialisation, loss,
optimiser), and speed work (mixed precision, stacked episodes, a progress bar) lands once. Callers
supply what is specific to them as plain functions: the loss of one batch, the batches of one epoch,
an optimiser factory, an optional scheduler and an end-of-epoch callback (the learning curves).
The supervised recipe of scratch, learngene and the collective model (`train_supervised`) is the
common case written out once on top of it. MAML's bi-level loop stays on learn2learn (`methods.maml`).

Mini-batches (`last_batch`): the paper's recipe (batch 32, no drop-last, "keep") ends every epoch of a
100-image support set on a 4-image batch, whose BatchNorm statistics are noise; on tiny-imagenet's
validation classes that cost scratch 6 points at 20 shots, so it scored below its own 10-shot accuracy
(docs/evidence/last_batch.md). "balanced" (the shipped profiles' default) splits each epoch's permutation
into the same number of batches as "keep" but of near-equal size (100 -> 4 x 25, 50 -> 2 x 25): the
same number of SGD steps, no tiny batch. "drop" drops the short batch (fewer steps; costs 11 points
at 10 shots there); kept for comparison.
"""
from __future__ import annotations

import contextlib
import dataclasses
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from methods.settings import ComputeSettings
from tasks.augment import eval_transform, train_transform

Optimizer = torch.optim.Optimizer


# --------------------------------------------------------------------------- compute policy

#: The process's compute switches (`[compute]`), set once per worker by the runner; every loop below
#: reads them, so the speed switches land in every method at once.
_COMPUTE = ComputeSettings()


def set_compute(settings: ComputeSettings) -> None:
    """Use `settings` in every `fit` and `predict` of this process from now on."""
    global _COMPUTE
    _COMPUTE = settings


def compute() -> ComputeSettings:
    """The compute switches in force (part of every artifact's cache key when not the default)."""
    return _COMPUTE


def compute_context(module: nn.Module | None) -> contextlib.AbstractContextManager:
    """For a loop of its own (MAML's): put `module` in the policy's memory format and return the
    autocast context its forward passes run under."""
    _memory_format(module)
    return _autocast(_device_of(module))


def _autocast(device: torch.device | str) -> contextlib.AbstractContextManager:
    dev = torch.device(device).type
    return torch.autocast(dev, dtype=torch.bfloat16) if _COMPUTE.amp == "bf16" else contextlib.nullcontext()


def _device_of(module: nn.Module | None) -> torch.device:
    p = next(module.parameters(), None) if module is not None else None
    return p.device if p is not None else torch.device("cpu")


def _memory_format(module: nn.Module | None) -> None:
    if module is not None and _COMPUTE.channels_last:
        module.to(memory_format=torch.channels_last)


# --------------------------------------------------------------------------- randomness


def derived_seed(seed: int, *salt: str | int) -> int:
    """A stable 31-bit seed from a seed and labels (crc32, not `hash`, which varies per process)."""
    key = ":".join(str(s) for s in (seed, *salt)).encode()
    return zlib.crc32(key) & 0x7FFFFFFF


def rng(seed: int, *salt: str | int) -> torch.Generator:
    """A CPU generator for one purpose, e.g. `rng(cell_seed, "scratch", episode)`: the same (seed, salt)
    always gives the same draws, different salts give independent streams."""
    return torch.Generator().manual_seed(derived_seed(seed, *salt))


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed the global RNG (weight initialisation) without leaking the state to the caller."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


# --------------------------------------------------------------------------- evaluation helpers


@torch.no_grad()
def predict(model: nn.Module, images_u8: torch.Tensor, device: torch.device, batch_size: int = 256,
            forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """`forward` (default: the model) of uint8 images in eval mode, batched; the model's mode is restored.

    Serves logits, embeddings and DeepEMD's dense maps (`forward=encoder.feature_map`)."""
    fn = forward or model
    was = model.training
    model.eval()
    _memory_format(model)
    try:
        with _autocast(device):
            return torch.cat([fn(eval_transform(chunk.to(device))).float() for chunk in images_u8.split(batch_size)])
    finally:
        model.train(was)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose argmax is the label."""
    return float((logits.argmax(1).cpu() == labels.cpu()).float().mean())


def class_means(x: torch.Tensor, y: torch.Tensor, n_way: int) -> torch.Tensor:
    """Per-class means of `x` [B, ...] -> [n_way, ...]; any label order (index_add, not a reshape)."""
    y = y.to(x.device)
    sums = torch.zeros((n_way, *x.shape[1:]), dtype=x.dtype, device=x.device).index_add(0, y, x)
    counts = torch.bincount(y, minlength=n_way).clamp_min(1).to(x.dtype)
    return sums / counts.view(-1, *([1] * (x.dim() - 1)))


# --------------------------------------------------------------------------- the loop


LAST_BATCH_POLICIES = ("keep", "balanced", "drop")


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, last_batch: str = "keep") -> list[torch.Tensor]:
    """One epoch's index chunks of a fresh permutation of range(n) (see `last_batch` above)."""
    if last_batch not in LAST_BATCH_POLICIES:
        raise ValueError(f"last_batch must be one of {', '.join(LAST_BATCH_POLICIES)}, got {last_batch!r}")
    order = torch.randperm(n, generator=generator)
    if last_batch == "balanced":
        return list(torch.tensor_split(order, -(-n // batch_size)))
    batches = list(order.split(batch_size))
    if last_batch == "drop" and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator,
                     last_batch: str = "keep") -> Callable[[int], list[torch.Tensor]]:
    """Epoch -> `epoch_batches` of a fresh permutation of range(n) ("keep": the last chunk may be short)."""
    def epoch(_: int) -> list[torch.Tensor]:
        return epoch_batches(n, batch_size, generator, last_batch)
    return epoch


@dataclass
class FitLog:
    """What `fit` returns: per-step losses (when kept) and the end-of-epoch callback's values."""

    losses: list[float] = field(default_factory=list)
    epochs: list[Any] = field(default_factory=list)


def fit(loss_of: Callable[[Any], torch.Tensor], batches: Callable[[int], Iterable[Any]],
        optimizer: Callable[[], Optimizer], *, epochs: int = 1,
        scheduler: Callable[[Optimizer], Any] | None = None, module: nn.Module | None = None,
        after_epoch: Callable[[], Any] | None = None, every_epoch: bool = True,
        fresh_optimizer_each_epoch: bool = False,
        keep_losses: bool = False, progress: str | None = None, total: int | None = None) -> FitLog:
    """Minimise `loss_of(batch)` over `batches(epoch)` for `epochs` epochs.

    Args:
        loss_of: the scalar loss of one batch (forward pass included).
        batches: the batches of one epoch (index chunks from `shuffled_batches`, or episodes).
        optimizer: builds the optimiser (called once, or every epoch with `fresh_optimizer_each_epoch`).
        scheduler: builds a scheduler stepped after every optimiser step.
        module: put in train mode at the start of every epoch (evaluation callbacks switch it back).
        after_epoch: called after every epoch; its values are `FitLog.epochs` (e.g. query accuracy).
        every_epoch: False calls `after_epoch` after the last epoch only (a table needs the final
            accuracy, a figure the curve; evaluation touches no random stream, so the number is the same).
        keep_losses: record every step's loss (a device sync per step; only for logs of base training).
        progress: a label shows a progress bar (base training: pre-training, meta-training, collective
            tasks); per-episode training passes None. `total`: its number of steps, when known.

    Example::

        model = nn.Linear(8, 3)
        x, y = torch.randn(40, 8), torch.randint(0, 3, (40,))
        log = fit(lambda idx: F.cross_entropy(model(x[idx]), y[idx]), shuffled_batches(40, 8, rng(0, "demo")),
                  lambda: torch.optim.SGD(model.parameters(), lr=0.1), epochs=5)
    """
    _memory_format(module)
    opt = optimizer()
    sched = scheduler(opt) if scheduler is not None else None
    log = FitLog()
    bar = tqdm(total=total, desc=progress, unit="step", leave=False, position=1, dynamic_ncols=True,
               disable=None if progress else True)
    try:
        for epoch in range(epochs):
            if fresh_optimizer_each_epoch and epoch > 0:
                opt = optimizer()
            if module is not None:
                module.train()
            for batch in batches(epoch):
                with _autocast(_device_of(module)):
                    loss = loss_of(batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                if keep_losses:
                    log.losses.append(float(loss.detach()))
                bar.update()
            if after_epoch is not None and (every_epoch or epoch == epochs - 1):
                log.epochs.append(after_epoch())
    finally:
        bar.close()
    return log


@dataclass(frozen=True)
class Recipe:
    """A supervised training recipe (`train_supervised`, `train_stacked`): SGD with cross-entropy on
    augmented images. One object instead of nine keyword arguments, so a caller passes its settings'
    recipe whole (`Recipe.of(settings)`) and a new knob is added in one place."""

    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 32
    crop_padding: int = 0
    last_batch: str = "keep"
    """Each epoch's short last batch: keep, balanced or drop (see the module docstring)."""
    reset_optimizer_each_epoch: bool = False
    """A fresh SGD optimiser every epoch (the official code's individual model)."""
    amp_dtype: torch.dtype | None = None
    """Autocast dtype of the forward passes (None = fp32)."""

    @classmethod
    def of(cls, settings: Any, **changes: Any) -> Recipe:
        """The recipe fields `settings` has (e.g. `IndividualSettings`, `CollectiveSettings`), then `changes`."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{k: getattr(settings, k) for k in names if hasattr(settings, k)}, **changes)


def train_supervised(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, recipe: Recipe, *,
                     generator: torch.Generator, device: torch.device,
                     eval_x: torch.Tensor | None = None, eval_y: torch.Tensor | None = None,
                     extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
                     params: list[nn.Parameter] | None = None, progress: str | None = None,
                     curve: bool = True) -> list[float]:
    """SGD with cross-entropy on augmented uint8 images (scratch, learngene, the collective model);
    returns query accuracy after each epoch (empty without eval data; only after the last one with
    `curve=False`: evaluation does not touch the training's random streams, so the final number is
    the same).

    One optimiser per call (the official code re-created it every epoch for the individual model;
    `recipe.reset_optimizer_each_epoch` reproduces that)."""
    r = recipe
    model.to(device)
    y = y.to(device)
    params = params if params is not None else [p for p in model.parameters() if p.requires_grad]

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        xb = train_transform(x_u8[idx].to(device), generator, r.crop_padding)
        with torch.autocast(device.type, dtype=r.amp_dtype, enabled=r.amp_dtype is not None):
            loss = F.cross_entropy(model(xb), y[idx.to(device)])
        return loss + extra_loss(model) if extra_loss is not None else loss

    evaluate = (lambda: accuracy(predict(model, eval_x, device), eval_y)) \
        if eval_x is not None and eval_y is not None else None
    n = x_u8.shape[0]
    log = fit(loss_of, shuffled_batches(n, r.batch_size, generator, r.last_batch),
              lambda: torch.optim.SGD(params, lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay),
              epochs=r.epochs, module=model, after_epoch=evaluate, every_epoch=curve,
              fresh_optimizer_each_epoch=r.reset_optimizer_each_epoch, progress=progress,
              total=r.epochs * -(-n // r.batch_size))
    return log.epochs
