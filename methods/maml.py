"""MAML (Finn et al. 2017), first-order MAML, and Proto-MAML (Triantafillou et al. 2020) on learn2learn.

All three meta-learn the individual model's conv trunk (at the profile's width) with
`l2l.algorithms.MAML`: per task `clone()`, `inner_steps_train` SGD steps of rate `inner_lr` on the
support cross-entropy (`adapt`), query cross-entropy back-propagated to the original weights, averaged
over `meta_batch` tasks, Adam (`outer_lr`, constant as in the MAML paper). At test: `inner_steps_test`
steps from the meta-learned weights, then predict the query (the paper trains with 5 steps and tests
with 10; learn2learn's example uses 1).

- `maml`: second order (gradients through the inner updates). The head is an ordinary `n_way`-output
  linear layer inside θ whose slots are arbitrary, so it only serves episodes of the profile's
  `episodes.n_way`.
- `fomaml`: the same object with `first_order=True` (the inner gradients are constants).
- `protomaml`: no learned head; each task's head is initialised from the support prototypes c_k of the
  current embedding, W_k = 2c_k, b_k = −‖c_k‖², so its first logits are ProtoNet's up to the
  class-independent ‖z‖². First-order as in Meta-Dataset ("fo-Proto-MAML"), with the prototype path kept
  differentiable: the inner loop adapts a detached copy of (W, b) and the adapted head is re-attached
  as W₀ + (W − W₀).detach() (the UvA tutorial's formulation), so the outer gradient reaches the
  embedding through the initialisation as well as through the first-order path.

BatchNorm (`bn_mode`, a registered option; spec §4.1.5, §4.4.4, §8.4). Every BN layer is replaced by
`EpisodeBatchNorm2d` without running statistics (learn2learn's clone shares buffers with the original,
so running statistics would be mutated by every episode, and MAML never used them anyway):
- "transductive" (maml, fomaml default): batch statistics of whatever batch is forwarded, so the query
  pass normalises with query statistics - the original MAML and learn2learn behaviour.
- "support" (protomaml default, Meta-Dataset's choice): the query pass is normalised with the adapted
  model's support-set moments (support and query are forwarded together and only support rows feed
  the statistics), so predictions do not depend on the other queries.

`func_meta_gradient` is the same meta-gradient written with `torch.func` (functional_call + grad,
vmap over the meta-batch); tests check it equals learn2learn's and the benchmarks time both. Measured
at width 0.25, meta-batch 2 (2 CPU threads and an H100): it is 1.0-1.7x *slower* than learn2learn's
clone/adapt loop, which is therefore the implementation the methods use.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods.backbones import count_params
from methods.base import EpisodeData, EpisodeResult, Method, SourceData, method_profile
from methods.episodic import (
    TaskTensors,
    artifact_config,
    build_backbone,
    class_means,
    derived_seed,
    meta_train_tasks,
    seeded,
    state_to_cpu,
)
from methods.registry import register
from methods.training import accuracy
from tasks.augment import eval_transform

BN_MODES = ("transductive", "support")


def _l2l():
    """learn2learn, imported on first use: its import (gym included) costs seconds, `bench list` should not pay it."""
    import learn2learn

    return learn2learn


class EpisodeBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm with batch statistics only (biased variance, as in training-mode BN); `stats_rows = n`
    takes the moments from the first n rows."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__(num_features, eps=eps, affine=True, track_running_stats=False)
        self.stats_rows: int | None = None
        self.elementary = False  # set by func_meta_gradient (see forward)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.stats_rows
        whole = rows is None or rows >= x.shape[0]
        if whole and not self.elementary:  # fused kernel: ~1.4x faster fwd+bwd on CPU
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        # Elementary ops: under torch.func, grad-of-grad through F.batch_norm(training=True) disagrees
        # with finite differences (torch 2.11-2.14; autograd's double backward, used by learn2learn,
        # agrees), so the functional MAML step normalises this way.
        ref = x if whole else x[:rows]
        mean = ref.mean(dim=(0, 2, 3))
        var = ref.var(dim=(0, 2, 3), unbiased=False)
        scale = self.weight * torch.rsqrt(var + self.eps)
        return x * scale[None, :, None, None] + (self.bias - mean * scale)[None, :, None, None]


def to_episode_bn(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d (in place) by EpisodeBatchNorm2d with the same affine parameters."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, EpisodeBatchNorm2d):
            bn = EpisodeBatchNorm2d(child.num_features, child.eps)
            with torch.no_grad():
                bn.weight.copy_(child.weight)
                bn.bias.copy_(child.bias)
            setattr(module, name, bn)
        else:
            to_episode_bn(child)
    return module


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


@contextlib.contextmanager
def bn_statistics_from(module: nn.Module, rows: int | None) -> Iterator[None]:
    """Within the block, every EpisodeBatchNorm2d of `module` normalises with the first `rows` rows' moments."""
    layers = [m for m in module.modules() if isinstance(m, EpisodeBatchNorm2d)]
    old = [m.stats_rows for m in layers]
    for m in layers:
        m.stats_rows = rows
    try:
        yield
    finally:
        for m, r in zip(layers, old, strict=True):
            m.stats_rows = r


def forward_query(model: nn.Module, xs: torch.Tensor, xq: torch.Tensor, bn_mode: str) -> torch.Tensor:
    """The query pass under the chosen BN mode (see the module docstring)."""
    if bn_mode == "transductive":
        return model(xq)
    n_s = xs.shape[0]
    with bn_statistics_from(model, n_s):
        return model(torch.cat([xs, xq]))[n_s:]


class MetaNet(nn.Module):
    """Encoder followed by an `n_way` linear head: θ for MAML and FOMAML."""

    def __init__(self, encoder: nn.Module, n_way: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_dim, n_way)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def build_meta_net(image_size: int, cfg: Mapping[str, Any], n_way: int | None) -> nn.Module:
    """The meta-learned network: encoder with episode BN, plus a head unless Proto-MAML (n_way=None)."""
    encoder = to_episode_bn(build_backbone(image_size, cfg))
    return encoder if n_way is None else MetaNet(encoder, n_way)


# --------------------------------------------------------------------------- MAML / FOMAML (learn2learn)


def adapt(learner: nn.Module, xs: torch.Tensor, ys: torch.Tensor, steps: int, first_order: bool | None = None) -> None:
    """`steps` inner SGD steps on the support cross-entropy, through learn2learn's `MAML.adapt`."""
    for _ in range(steps):
        learner.adapt(F.cross_entropy(learner(xs), ys), first_order=first_order)


def l2l_meta_gradient(maml: nn.Module, tasks: Sequence[TaskTensors], steps: int, bn_mode: str) -> float:
    """Accumulate the meta-batch mean query-loss gradient into `maml`'s `.grad`; returns the mean query loss."""
    total = 0.0
    for t in tasks:
        learner = maml.clone()
        adapt(learner, t.xs, t.ys, steps)
        loss = F.cross_entropy(forward_query(learner, t.xs, t.xq, bn_mode), t.yq) / len(tasks)
        loss.backward()
        total += float(loss.detach())
    return total


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


# --------------------------------------------------------------------------- Proto-MAML


def proto_head(z: torch.Tensor, ys: torch.Tensor, n_way: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prototype initialisation of a linear head: W_k = 2c_k, b_k = −‖c_k‖²."""
    c = class_means(z, ys, n_way)
    return 2 * c, -(c * c).sum(1)


def protomaml_adapt(learner: nn.Module, xs: torch.Tensor, ys: torch.Tensor, n_way: int, steps: int, lr: float,
                    keep_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """First-order inner loop over (embedding, head) from the prototype head; returns the adapted head.

    The embedding is updated in place on the learn2learn clone (`maml_update`, the primitive behind
    `MAML.adapt`); the gradient is taken by hand because the first support forward is shared with the
    prototypes and its graph must survive the first step when `keep_graph` (meta-training)."""
    maml_update = _l2l().algorithms.maml.maml_update
    z = learner(xs)
    w0, b0 = proto_head(z, ys, n_way)
    w, b = w0.detach().requires_grad_(), b0.detach().requires_grad_()
    w_init, b_init = w, b
    for step in range(steps):
        if step > 0:
            z = learner(xs)
        loss = F.cross_entropy(z @ w.T + b, ys)
        grads = torch.autograd.grad(loss, [*learner.parameters(), w, b], retain_graph=keep_graph and step == 0)
        maml_update(learner, lr, list(grads[:-2]))
        w, b = w - lr * grads[-2], b - lr * grads[-1]
    if not keep_graph:
        return w.detach(), b.detach()
    return w0 + (w - w_init).detach(), b0 + (b - b_init).detach()


def protomaml_query_loss(learner: nn.Module, t: TaskTensors, n_way: int, steps: int, lr: float,
                         bn_mode: str) -> torch.Tensor:
    """Query cross-entropy after Proto-MAML adaptation (meta-training: prototype path differentiable)."""
    w, b = protomaml_adapt(learner, t.xs, t.ys, n_way, steps, lr, keep_graph=True)
    return F.cross_entropy(forward_query(learner, t.xs, t.xq, bn_mode) @ w.T + b, t.yq)


# --------------------------------------------------------------------------- the methods


@register("maml", "MAML (second order, learn2learn): meta-learned init adapted by SGD on the support set",
          family="maml", first_order=False, proto=False, bn_mode="transductive")
@register("fomaml", "First-order MAML (learn2learn first_order=True): no gradients through the inner steps",
          family="maml", first_order=True, proto=False, bn_mode="transductive")
@register("protomaml", "Proto-MAML (first order): MAML whose head starts from the support prototypes W=2c, b=-|c|^2",
          family="maml", first_order=True, proto=True, bn_mode="support")
class MAML(Method):
    family = "maml"

    def __init__(self, device: torch.device | str = "cpu", first_order: bool = False, proto: bool = False,
                 bn_mode: str = "transductive", **options: Any):
        super().__init__(device, **options)
        if bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode must be one of {BN_MODES}, got '{bn_mode}'")
        self.first_order = bool(first_order or proto)  # Proto-MAML is first-order by definition here
        self.proto = proto
        self.bn_mode = bn_mode

    @property
    def variant(self) -> str:
        return "protomaml" if self.proto else ("fomaml" if self.first_order else "maml")

    def prepare(self, source: SourceData, profile: Mapping[str, Any], cache: Any) -> None:
        cfg = method_profile(profile, self.family)
        self.image_size = source.data.image_size
        self.n_way = int(profile.get("episodes", {}).get("n_way", cfg.get("train_way", 5)))
        seed = derived_seed(source.seed, self.variant)
        with seeded(seed):
            net = build_meta_net(self.image_size, cfg, None if self.proto else self.n_way).to(self.device)
        self.maml = _l2l().algorithms.MAML(net, lr=float(cfg["inner_lr"]), first_order=self.first_order)
        key = artifact_config(self.variant, source, cfg, n_way=self.n_way, bn_mode=self.bn_mode,
                              first_order=self.first_order)
        state = cache.get_or_build(self.variant, key, lambda: self._meta_train(source, cfg, seed))
        self.maml.module.load_state_dict(state["net"])
        self.maml.to(self.device)
        self.train_log = state.get("log", [])

    def meta_step(self, tasks: Sequence[TaskTensors], cfg: Mapping[str, Any]) -> float:
        """Accumulate one meta-batch's gradient (no optimiser step); returns the mean query loss."""
        steps = int(cfg["inner_steps_train"])
        if not self.proto:
            return l2l_meta_gradient(self.maml, tasks, steps, self.bn_mode)
        total = 0.0
        for t in tasks:
            loss = protomaml_query_loss(self.maml.clone(), t, self.n_way, steps, float(cfg["inner_lr"]),
                                        self.bn_mode) / len(tasks)
            loss.backward()
            total += float(loss.detach())
        return total

    def _meta_train(self, source: SourceData, cfg: Mapping[str, Any], seed: int) -> dict[str, Any]:
        opt = torch.optim.Adam(self.maml.parameters(), lr=float(cfg["outer_lr"]))
        batch = int(cfg["meta_batch"])
        iters = int(cfg["meta_iterations"])
        tasks = meta_train_tasks(source, self.n_way, int(cfg["train_shots"]), int(cfg["train_queries"]),
                                 iters * batch, seed, self.device)
        log: list[float] = []
        self.maml.train()
        for _ in range(iters):
            opt.zero_grad(set_to_none=True)
            log.append(self.meta_step([next(tasks) for _ in range(batch)], cfg))
            opt.step()
        return {"net": state_to_cpu(self.maml.module), "log": log}

    def adapted_logits(self, xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor, steps: int,
                       n_way: int) -> torch.Tensor:
        """Adapt a clone on a support set (float tensors) and return query logits; the prepared θ is untouched."""
        learner = self.maml.clone()
        if self.proto:
            w, b = protomaml_adapt(learner, xs, ys, n_way, steps, self.maml.lr, keep_graph=False)
            with torch.no_grad():
                return forward_query(learner, xs, xq, self.bn_mode) @ w.T + b
        adapt(learner, xs, ys, steps, first_order=True)  # values equal to second order; no graph needed
        with torch.no_grad():
            return forward_query(learner, xs, xq, self.bn_mode)

    def run_episode(self, episode: EpisodeData, profile: Mapping[str, Any]) -> EpisodeResult:
        cfg = method_profile(profile, self.family)
        if not self.proto and episode.n_way != self.n_way:
            raise ValueError(f"{self.variant} was meta-trained for {self.n_way}-way episodes (its head has "
                             f"{self.n_way} outputs) but got a {episode.n_way}-way episode; set episodes.n_way")
        t0 = time.perf_counter()
        xs = eval_transform(episode.support_x.to(self.device))
        xq = eval_transform(episode.query_x.to(self.device))
        logits = self.adapted_logits(xs, episode.support_y.to(self.device), xq, int(cfg["inner_steps_test"]),
                                     episode.n_way)
        return EpisodeResult(accuracy=accuracy(logits, episode.query_y), wall_s=time.perf_counter() - t0,
                             params=count_params(self.maml.module))
