"""MAML (Finn et al. 2017), first-order MAML, and Proto-MAML (Triantafillou et al. 2020) on learn2learn.

All three meta-learn the individual model's conv trunk (at the profile's width) with
`l2l.algorithms.MAML`: per task `clone()`, `inner_steps_train` SGD steps of rate `inner_lr` on the
support cross-entropy (`adapt`), query cross-entropy back-propagated to the original weights, averaged
over `meta_batch` tasks, Adam (`outer_lr`, constant as in the MAML paper). At test: `inner_steps_test`
steps from the meta-learned weights, then predict the query (the paper trains with 5 steps and tests
with 10; learn2learn's example uses 1).

- `maml`: second order (gradients through the inner updates). The head is an ordinary `n_way`-output
  linear layer inside θ whose slots are arbitrary, so it only serves episodes of `n_way` ways
  (the experiment passes the profile's `episodes.n_way`).
- `fomaml`: the same object with `first_order=True` (the inner gradients are constants).
- `protomaml`: no learned head; each task's head is initialised from the support prototypes c_k of the
  current embedding, W_k = 2c_k, b_k = −‖c_k‖², so its first logits are ProtoNet's up to the
  class-independent ‖z‖². First-order as in Meta-Dataset ("fo-Proto-MAML"), with the prototype path kept
  differentiable: the inner loop adapts a detached copy of (W, b) and the adapted head is re-attached
  as W₀ + (W − W₀).detach() (the UvA tutorial's formulation), so the outer gradient reaches the
  embedding through the initialisation as well as through the first-order path.

BatchNorm (`bn_mode`, a settings field set by each variant). Every BN layer is replaced by
`EpisodeBatchNorm2d` without running statistics (learn2learn's clone shares buffers with the original,
so running statistics would be mutated by every episode, and MAML never used them anyway):
- "transductive" (maml, fomaml default): batch statistics of whatever batch is forwarded, so the query
  pass normalises with query statistics - the original MAML and learn2learn behaviour.
- "support" (protomaml default, Meta-Dataset's choice): the query pass is normalised with the adapted
  model's support-set moments (support and query are forwarded together and only support rows feed
  the statistics), so predictions do not depend on the other queries.

learn2learn (and gym, which it imports) is imported only when a MAML-family method is prepared, so
other runs neither pay its import time nor print gym's deprecation banner. A `torch.func` version of
the meta-gradient lives in tests/func_maml.py (it was slower than learn2learn's clone/adapt loop).
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from methods.backbones import count_params
from methods.base import EpisodeData, EpisodeResult, Method, SourceData
from methods.episodic import TaskTensors, artifact_config, build_backbone, meta_train_tasks, state_to_cpu
from methods.registry import register
from methods.settings import BackboneSettings, MAMLSettings
from methods.training import accuracy, class_means, compute_context, derived_seed, seeded
from tasks.augment import eval_transform

BN_MODES = ("transductive", "support")


#: Settings read only at test time: not part of the meta-trained weights' cache key.
TEST_ONLY_FIELDS = ("inner_steps_test",)


def _l2l():
    """learn2learn, imported on first use: its import (gym included) costs seconds, and gym prints a
    deprecation notice on stderr from every process that imports it; runs without a MAML-family
    method pay neither, and the notice is kept out of the output of those that do."""
    import sys

    if "learn2learn" not in sys.modules:
        import io

        with contextlib.redirect_stderr(io.StringIO()):
            import learn2learn  # noqa: F401
    return sys.modules["learn2learn"]


class EpisodeBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm with batch statistics only (biased variance, as in training-mode BN); `stats_rows = n`
    takes the moments from the first n rows."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__(num_features, eps=eps, affine=True, track_running_stats=False)
        self.stats_rows: int | None = None
        self.elementary = False  # set by tests/func_maml.py (see forward)

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


def build_meta_net(image_size: int, settings: BackboneSettings, n_way: int | None) -> nn.Module:
    """The meta-learned network: encoder with episode BN, plus a head unless Proto-MAML (n_way=None)."""
    encoder = to_episode_bn(build_backbone(image_size, settings))
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
          family="maml", settings=MAMLSettings, first_order=False, proto=False, bn_mode="transductive")
@register("fomaml", "First-order MAML (learn2learn first_order=True): no gradients through the inner steps",
          family="maml", settings=MAMLSettings, first_order=True, proto=False, bn_mode="transductive")
@register("protomaml", "Proto-MAML (first order): MAML whose head starts from the support prototypes W=2c, b=-|c|^2",
          family="maml", settings=MAMLSettings, first_order=True, proto=True, bn_mode="support")
class MAML(Method):
    family = "maml"
    requires = ("learn2learn",)  # imported on first use (`_l2l`)
    # Facts (methods.base.MethodFacts)
    roles = frozenset({"opponent"})
    budget_knob = ("methods", "maml", "meta_iterations")
    variant_facts: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "maml": {"report_order": 10}, "fomaml": {"report_order": 20}, "protomaml": {"report_order": 40}}

    @classmethod
    def artifact_group(cls, family: str, settings: MAMLSettings) -> Hashable:
        """One group per meta-trained network: MAML, first-order MAML and Proto-MAML train three (their
        builds run in parallel, and no cell waits on another variant's lock)."""
        return family, settings.first_order, settings.proto, settings.meta_iterations

    def prepare(self, source: SourceData, settings: MAMLSettings, cache: Any) -> None:
        self.s = settings
        self.first_order = settings.first_order or settings.proto  # Proto-MAML is first-order here
        self.proto, self.bn_mode, self.n_way = settings.proto, settings.bn_mode, settings.n_way
        self.image_size = source.data.image_size
        seed = derived_seed(source.seed, self.variant)
        with seeded(seed):
            net = build_meta_net(self.image_size, settings, None if self.proto else self.n_way).to(self.device)
        self.maml = _l2l().algorithms.MAML(net, lr=settings.inner_lr, first_order=self.first_order)
        state = cache.get_or_build(self.variant, artifact_config(self.variant, source, settings, TEST_ONLY_FIELDS),
                                   lambda: self._meta_train(source, seed))
        self.maml.module.load_state_dict(state["net"])
        self.maml.to(self.device)
        self.train_log = state.get("log", [])

    @property
    def variant(self) -> str:
        return "protomaml" if self.proto else ("fomaml" if self.first_order else "maml")

    def meta_step(self, tasks: Sequence[TaskTensors]) -> float:
        """Accumulate one meta-batch's gradient (no optimiser step); returns the mean query loss."""
        steps = self.s.inner_steps_train
        if not self.proto:
            return l2l_meta_gradient(self.maml, tasks, steps, self.bn_mode)
        total = 0.0
        for t in tasks:
            loss = protomaml_query_loss(self.maml.clone(), t, self.n_way, steps, self.s.inner_lr,
                                        self.bn_mode) / len(tasks)
            loss.backward()
            total += float(loss.detach())
        return total

    def _meta_train(self, source: SourceData, seed: int) -> dict[str, Any]:
        """The outer loop (its own, not `training.fit`: each step accumulates a meta-batch of bi-level
        gradients before one Adam step)."""
        s = self.s
        opt = torch.optim.Adam(self.maml.parameters(), lr=s.outer_lr)
        tasks = meta_train_tasks(source, self.n_way, s.train_shots, s.train_queries, s.meta_iterations * s.meta_batch,
                                 seed, self.device)
        log: list[float] = []
        self.maml.train()
        amp = compute_context(self.maml)
        for _ in tqdm(range(s.meta_iterations), desc=f"{self.variant} meta-train", leave=False, position=1,
                      disable=None):
            opt.zero_grad(set_to_none=True)
            with amp:
                log.append(self.meta_step([next(tasks) for _ in range(s.meta_batch)]))
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

    def run_episode(self, episode: EpisodeData) -> EpisodeResult:
        if not self.proto and episode.n_way != self.n_way:
            raise ValueError(f"{self.variant} was meta-trained for {self.n_way}-way episodes (its head has "
                             f"{self.n_way} outputs) but got a {episode.n_way}-way episode; set episodes.n_way")
        t0 = time.perf_counter()
        xs = eval_transform(episode.support_x.to(self.device))
        xq = eval_transform(episode.query_x.to(self.device))
        logits = self.adapted_logits(xs, episode.support_y.to(self.device), xq, self.s.inner_steps_test,
                                     episode.n_way)
        return EpisodeResult(accuracy=accuracy(logits, episode.query_y), wall_s=time.perf_counter() - t0,
                             params=count_params(self.maml.module))
