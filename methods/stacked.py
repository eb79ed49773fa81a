"""Stacked episode training: E support-set episodes trained at once as one network.

Why: on a GPU one small individual network's SGD step is launch-bound (docs/evidence/gpu_episodes.md:
4.2 ms for one episode's step, 5.3 ms for 16 stacked episodes' step, 12.6x per episode). On the CPU
stacking is slower (grouped convolutions ran at 0.8x of a loop at width 0.25 on a 2-core AVX-512
CPU), so `Scratch` and `Learngene` use it only on CUDA.

How it stays exact: E `IndividualNet`s become one network whose convolutions have `groups=E` (group
e sees only episode e's channels), whose BatchNorm has E*C channels (per-episode batch statistics
and running statistics), whose max pools act per channel, and whose fully-connected layers are E
separate matrices applied by a batched matmul. The loss is the SUM over episodes of each episode's
mean cross-entropy, so group e's gradient is exactly episode e's own; SGD (momentum, weight decay)
is elementwise. Each episode keeps its own generator, consumed in the one-at-a-time order (batch
order at the epoch start, then flips/crops per step), so the stacked run reproduces
`methods.training.train_supervised` episode by episode up to float rounding (grouped vs plain
convolution and bmm vs addmm sum in different orders).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods.backbones import IndividualNet
from methods.base import EpisodeData, EpisodeResult
from methods.training import Recipe, accuracy, derived_seed, epoch_batches, fit, predict, rng
from tasks.augment import train_transform_stacked


class StackedLinear(nn.Module):
    """E independent linear layers on [E, B, in] -> [E, B, out] (one batched matmul)."""

    def __init__(self, layers: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]).clone())  # [E, out, in]
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers]).clone())  # [E, out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


def _stack_module(mods: list[nn.Module]) -> nn.Module:
    """One module doing what `mods` (E copies of one conv-trunk architecture) do on E channel groups."""
    first, e = mods[0], len(mods)
    if isinstance(first, nn.Sequential):
        return nn.Sequential(*[_stack_module([m[i] for m in mods]) for i in range(len(first))])
    if isinstance(first, nn.Conv2d):
        if first.groups != 1 or first.bias is None:
            raise ValueError("only plain convolutions with bias can be stacked")
        conv = nn.Conv2d(e * first.in_channels, e * first.out_channels, first.kernel_size, first.stride,
                         first.padding, first.dilation, groups=e, bias=True,
                         padding_mode=first.padding_mode).to(first.weight.device, first.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(torch.cat([m.weight for m in mods]))
            conv.bias.copy_(torch.cat([m.bias for m in mods]))
        return conv
    if isinstance(first, nn.BatchNorm2d):
        bn = nn.BatchNorm2d(e * first.num_features, first.eps, first.momentum, first.affine,
                            first.track_running_stats).to(first.weight.device, first.weight.dtype)
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn, name).copy_(torch.cat([getattr(m, name) for m in mods]))
            bn.num_batches_tracked.copy_(first.num_batches_tracked)
        return bn
    if isinstance(first, nn.ReLU | nn.MaxPool2d):
        return first  # stateless and per channel
    raise TypeError(f"cannot stack {type(first).__name__}")


def _unstack_into(stacked: nn.Module, target: nn.Module, e: int, n: int) -> None:
    """Copy group `e` of `n` of `stacked` (built by `_stack_module`) back into `target`."""
    if isinstance(stacked, nn.Sequential):
        for s, t in zip(stacked, target, strict=True):
            _unstack_into(s, t, e, n)
        return
    with torch.no_grad():
        for name, tensor in list(target.named_parameters(recurse=False)) + list(target.named_buffers(recurse=False)):
            src = getattr(stacked, name)
            tensor.copy_(src if name == "num_batches_tracked" else src.chunk(n)[e])


class StackedIndividualNet(nn.Module):
    """E `IndividualNet`s of one architecture as one network: input [B,E,3,H,W], logits [B,E,N]."""

    def __init__(self, nets: list[IndividualNet]):
        super().__init__()
        self.e = len(nets)
        self.trunk = _stack_module([nn.Sequential(n.front, n.gene, n.pool) for n in nets])
        self.linears = nn.ModuleList(StackedLinear([n.classifier[i] for n in nets])
                                     for i, m in enumerate(nets[0].classifier) if isinstance(m, nn.Linear))
        if [type(m) for m in nets[0].classifier] != [nn.Linear, nn.ReLU] * (len(self.linears) - 1) + [nn.Linear]:
            raise TypeError("the classifier must be Linear(-ReLU-Linear)*")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        x = x.to(self.linears[0].weight.dtype)  # float64 stacks (the exactness tests) take float32 batches
        z = self.trunk(x.flatten(1, 2))  # [B, E*C, h, w]: channel block e is episode e's feature map
        z = z.reshape(b, self.e, -1).transpose(0, 1)  # [E, B, C*h*w], each row flattened as IndividualNet does
        for i, lin in enumerate(self.linears):
            z = lin(z)
            if i < len(self.linears) - 1:
                z = F.relu(z)
        return z.transpose(0, 1)  # [B, E, N]

    def export(self, e: int, target: IndividualNet) -> IndividualNet:
        """Write episode `e`'s weights and BatchNorm statistics into `target` (tests compare them)."""
        _unstack_into(self.trunk, nn.Sequential(target.front, target.gene, target.pool), e, self.e)
        for lin, t in zip(self.linears, [m for m in target.classifier if isinstance(m, nn.Linear)], strict=True):
            with torch.no_grad():
                t.weight.copy_(lin.weight[e])
                t.bias.copy_(lin.bias[e])
        return target


def train_stacked(nets: list[IndividualNet], xs_u8: list[torch.Tensor], ys: list[torch.Tensor], recipe: Recipe, *,
                  generators: list[torch.Generator], device: torch.device,
                  eval_xs: list[torch.Tensor], eval_ys: list[torch.Tensor], curve: bool = True,
                  extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
                  on_stack: Callable[[StackedIndividualNet], None] | None = None,
                  ) -> tuple[list[list[float]], StackedIndividualNet]:
    """`train_supervised` of E episodes at once (one network per episode in `nets`, already initialised):
    per-episode query accuracy after each epoch (only after the last with `curve=False`), and the
    trained stacked network. All episodes must have the same support and query sizes.

    `extra_loss(stacked)` must be the sum of the episodes' own extra losses (learngene's EWC penalty:
    elementwise over stacked parameters, so it is); `on_stack(stacked)` runs once the stacked network
    exists, before training (to build such a loss against its parameters). The recipe's
    `reset_optimizer_each_epoch` and `amp_dtype` are not supported here (no caller stacks with them)."""
    if recipe.reset_optimizer_each_epoch or recipe.amp_dtype is not None:
        raise ValueError("stacked episodes support neither reset_optimizer_each_epoch nor amp_dtype")
    r = recipe
    e = len(nets)
    if not (len({x.shape for x in xs_u8}) == len({x.shape for x in eval_xs}) == 1 and len(generators) == e):
        raise ValueError("stacked episodes need equal support and query shapes and one generator each")
    model = StackedIndividualNet([n.to(device) for n in nets])
    if on_stack is not None:
        on_stack(model)
    x = torch.stack(xs_u8, 1).to(device)  # [n, E, 3, H, W] uint8, moved once
    y = torch.stack(ys, 1).to(device)  # [n, E]
    qx, qy = torch.stack(eval_xs, 1), [t.cpu() for t in eval_ys]
    n = x.shape[0]
    cols = torch.arange(e, device=device)

    def batches(_: int) -> list[torch.Tensor]:
        # Each episode's batch order is drawn from its own generator at the epoch start, as
        # `shuffled_batches` does; equal n gives equal batch sizes, so step i stacks [B, E] indices.
        per = [epoch_batches(n, r.batch_size, g, r.last_batch) for g in generators]
        return [torch.stack(step, 1) for step in zip(*per, strict=True)]

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        idx = idx.to(device)
        xb = train_transform_stacked(x[idx, cols], generators, r.crop_padding)
        logits = model(xb)  # [B, E, N]
        # Sum over episodes of each episode's mean: group e's gradient is episode e's own.
        loss = F.cross_entropy(logits.flatten(0, 1), y[idx, cols].flatten(), reduction="sum") / idx.shape[0]
        return loss + extra_loss(model) if extra_loss is not None else loss

    def evaluate() -> list[float]:
        logits = predict(model, qx, device).cpu()  # eval mode; uint8 [Q,E,3,H,W] normalised per channel
        return [accuracy(logits[:, i], qy[i]) for i in range(e)]

    log = fit(loss_of, batches, lambda: torch.optim.SGD(model.parameters(), lr=r.lr, momentum=r.momentum,
                                                         weight_decay=r.weight_decay),
              epochs=r.epochs, module=model, after_epoch=evaluate, every_epoch=curve)
    return [list(c) for c in zip(*log.epochs, strict=True)] if log.epochs else [[] for _ in range(e)], model


def stacked_name(name: str) -> str:
    """An `IndividualNet` trunk parameter's name in `StackedIndividualNet` ("gene.0.0.weight" ->
    "trunk.1.0.0.weight"); its tensor there is the episodes' tensors concatenated along dim 0."""
    part, _, rest = name.partition(".")
    return f"trunk.{('front', 'gene', 'pool').index(part)}.{rest}"


def stack_named(per_episode: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per-episode tensors keyed by trunk parameter name (e.g. Fisher diagonals) in the stacked layout."""
    return {stacked_name(k): torch.cat([d[k] for d in per_episode]) for k in per_episode[0]}


class StackedEpisodes:
    """Mixin for a `Method` whose episodes can train stacked: `run_episodes` groups equal-shaped
    episodes (way, support and query sizes, curve or not) into stacks of at most `stack_size`,
    trains each with `_run_stack`, and returns results in the input order; elsewhere it falls back
    to one episode at a time."""

    #: None = stack on CUDA only (on the CPU grouped convolutions are slower); True forces it (the tests
    #: compare it with the one-at-a-time path on the CPU); False never.
    stack_episodes: bool | None = None
    #: The most episodes in one stack.
    stack_size: int = 16
    device: torch.device

    def uses_stacking(self) -> bool:
        return self.device.type == "cuda" if self.stack_episodes is None else self.stack_episodes

    def new_model(self, episode: EpisodeData) -> nn.Module:
        """The episode's fresh model (torch's global seed already set by `start_episode`)."""
        raise NotImplementedError

    def episode_state(self, model: nn.Module, episode: EpisodeData) -> Any:
        """What an episode draws right after its initialisation (learngene: the Fisher diagonal); None here."""
        return None

    def start_episode(self, episode: EpisodeData) -> tuple[nn.Module, Any]:
        """The episode's initialised model on the device and its `episode_state`, drawn the same way by
        `run_episode` and `_run_stack` (torch seeded from the cell seed and episode index, as scratch
        and learngene share it, so the two are paired episode by episode)."""
        torch.manual_seed(derived_seed(episode.seed, "episode-init", episode.index))
        model = self.new_model(episode).to(self.device)
        return model, self.episode_state(model, episode)

    def train_stack(self, nets: list[IndividualNet], episodes: list[EpisodeData], recipe: Recipe,
                    **kw: Any) -> tuple[list[list[float]], StackedIndividualNet]:
        """`train_stacked` on these episodes' support and query sets, each with the batch/augmentation
        generator `run_episode` gives it (`kw`: extra_loss, on_stack)."""
        return train_stacked(nets, [ep.support_x for ep in episodes], [ep.support_y for ep in episodes], recipe,
                             generators=[rng(ep.seed, "episode", ep.index) for ep in episodes], device=self.device,
                             eval_xs=[ep.query_x for ep in episodes], eval_ys=[ep.query_y for ep in episodes],
                             curve=episodes[0].record_curve, **kw)

    def _run_stack(self, episodes: list[EpisodeData]) -> list[EpisodeResult]:
        raise NotImplementedError

    def run_episodes(self, episodes: list[EpisodeData]) -> list[EpisodeResult]:
        if not self.uses_stacking():
            return super().run_episodes(episodes)  # type: ignore[misc]
        groups: dict[tuple, list[int]] = {}
        for i, e in enumerate(episodes):
            key = (e.n_way, tuple(e.support_x.shape), tuple(e.query_x.shape), e.record_curve)
            groups.setdefault(key, []).append(i)
        out: list[EpisodeResult | None] = [None] * len(episodes)
        for members in groups.values():
            for start in range(0, len(members), self.stack_size):
                chunk = members[start:start + self.stack_size]
                for i, res in zip(chunk, self._run_stack([episodes[i] for i in chunk]), strict=True):
                    out[i] = res
        return out  # type: ignore[return-value]


def episode_result(episode: EpisodeData, curve: list[float], wall_s: float, params: int,
                   extra: dict[str, Any] | None = None) -> EpisodeResult:
    """The result record of a support-set trainer's episode (either path): the last epoch's accuracy,
    the curve when the episode asked for one."""
    return EpisodeResult(accuracy=curve[-1], curve=curve if episode.record_curve else None, wall_s=wall_s,
                         params=params, extra=extra if extra is not None else {})
