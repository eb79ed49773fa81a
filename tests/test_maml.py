"""MAML, FOMAML and Proto-MAML: the inner step, the meta-gradient (against finite differences, the
first-order approximation and torch.func), the prototype head, the BN modes, and the methods end to end."""
from __future__ import annotations

import meta_helpers as H
import pytest
import torch
import torch.nn.functional as F
from func_maml import func_meta_gradient
from torch import nn

from bench.profiles import method_settings
from methods import registry
from methods.episodic import TaskTensors
from methods.maml import (
    EpisodeBatchNorm2d,
    _l2l,
    forward_query,
    l2l_meta_gradient,
    proto_head,
    protomaml_adapt,
)
from methods.protonet import prototype_logits

LR = 0.3


def tiny_net(seed: int = 0, n_out: int | None = 3) -> nn.Module:
    """conv -> episode BN -> ReLU -> pool -> linear, in float64 so finite differences are exact enough."""
    torch.manual_seed(seed)
    layers = [nn.Conv2d(2, 4, 3, padding=1), EpisodeBatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if n_out:
        layers.append(nn.Linear(4, n_out))
    net = nn.Sequential(*layers).double()
    with torch.no_grad():  # non-trivial affine BN parameters so their gradients are exercised too
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.uniform_(-0.5, 0.5)
    return net


def tiny_task(seed: int, way: int = 3, shots: int = 2, queries: int = 2) -> TaskTensors:
    g = torch.Generator().manual_seed(seed)
    ys = torch.arange(way).repeat_interleave(shots)
    yq = torch.arange(way).repeat_interleave(queries)
    return TaskTensors(torch.randn(len(ys), 2, 5, 5, generator=g, dtype=torch.float64), ys,
                       torch.randn(len(yq), 2, 5, 5, generator=g, dtype=torch.float64), yq)


def grads_of(net: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in net.parameters()])


def l2l_grad(net: nn.Module, tasks, steps: int, first_order: bool, bn_mode: str = "transductive") -> torch.Tensor:
    net.zero_grad(set_to_none=True)
    maml = _l2l().algorithms.MAML(net, lr=LR, first_order=first_order)
    l2l_meta_gradient(maml, tasks, steps, bn_mode)
    return grads_of(net)


def meta_loss_at(net: nn.Module, flat: torch.Tensor, task: TaskTensors, steps: int) -> float:
    """The MAML objective L_Q(θ − α∇L_S(θ) ...) evaluated at flat parameters θ (for finite differences)."""
    from torch.func import functional_call

    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    p = dict(zip(names, [t.reshape(s).clone().requires_grad_() for t, s in
                         zip(flat.split([s.numel() for s in shapes]), shapes, strict=True)], strict=True))
    for _ in range(steps):
        loss = F.cross_entropy(functional_call(net, p, (task.xs,)), task.ys)
        g = torch.autograd.grad(loss, list(p.values()))
        p = {k: v - LR * gk for (k, v), gk in zip(p.items(), g, strict=True)}
    return float(F.cross_entropy(functional_call(net, p, (task.xq,)), task.yq))


# --------------------------------------------------------------------------- inner step and meta-gradient


def test_one_inner_step_equals_a_hand_written_sgd_step():
    net, t = tiny_net(), tiny_task(0)
    loss = F.cross_entropy(net(t.xs), t.ys)
    expected = [p - LR * g for p, g in zip(net.parameters(), torch.autograd.grad(loss, list(net.parameters())), strict=True)]
    learner = _l2l().algorithms.MAML(net, lr=LR).clone()
    learner.adapt(F.cross_entropy(learner(t.xs), t.ys))
    for got, want in zip(learner.parameters(), expected, strict=True):
        torch.testing.assert_close(got, want)
    assert any(not torch.equal(a, b) for a, b in zip(learner.parameters(), net.parameters(), strict=True))


def test_second_order_meta_gradient_matches_finite_differences():
    net, t = tiny_net(), tiny_task(1)
    g = l2l_grad(net, [t], steps=2, first_order=False)
    flat = torch.cat([p.detach().flatten() for p in net.parameters()])
    eps = 1e-6
    for i in range(0, flat.numel(), 7):  # a spread of coordinates: conv, BN affine, head
        e = torch.zeros_like(flat)
        e[i] = eps
        fd = (meta_loss_at(net, flat + e, t, 2) - meta_loss_at(net, flat - e, t, 2)) / (2 * eps)
        assert abs(fd - float(g[i])) < 1e-6 + 1e-5 * abs(fd), (i, fd, float(g[i]))
    d = torch.randn(flat.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fd = (meta_loss_at(net, flat + eps * d, t, 2) - meta_loss_at(net, flat - eps * d, t, 2)) / (2 * eps)
    assert abs(fd - float(g @ d)) < 1e-6 * max(1.0, abs(fd))


def test_first_order_drops_exactly_the_second_order_term():
    """One inner step: ∇θ L_Q(θ') = (I − α H_S(θ)) ∇θ' L_Q(θ'), and FOMAML keeps only ∇θ' L_Q(θ')."""
    net, t = tiny_net(), tiny_task(2)
    second = l2l_grad(net, [t], steps=1, first_order=False)
    first = l2l_grad(net, [t], steps=1, first_order=True)
    params = list(net.parameters())
    grad_s = torch.autograd.grad(F.cross_entropy(net(t.xs), t.ys), params, create_graph=True)
    flat_gs = torch.cat([g.flatten() for g in grad_s])
    hv = torch.autograd.grad(flat_gs @ first, params)  # H_S(θ) · ∇θ' L_Q(θ')
    torch.testing.assert_close(second - first, -LR * torch.cat([h.flatten() for h in hv]))
    assert (second - first).abs().max() > 1e-6  # the term is really there


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("bn_mode", ["transductive", "support"])
def test_functional_meta_gradient_equals_learn2learn(first_order, bn_mode):
    net = tiny_net()
    tasks = [tiny_task(s) for s in (3, 4, 5)]
    ref = l2l_grad(net, tasks, steps=2, first_order=first_order, bn_mode=bn_mode)
    got, _ = func_meta_gradient(net, tasks, LR, 2, first_order, bn_mode)
    torch.testing.assert_close(torch.cat([got[n].flatten() for n, _ in net.named_parameters()]), ref)


def test_episode_bn_fused_and_elementary_paths_agree():
    bn = tiny_net()[1]
    x = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    fused = bn(x)
    bn.elementary = True
    torch.testing.assert_close(bn(x), fused)
    bn.stats_rows = 6  # all rows: still plain batch statistics
    torch.testing.assert_close(bn(x), fused)


def test_support_bn_mode_makes_each_query_independent_of_the_others():
    net, t = tiny_net(), tiny_task(6)
    other = t.xq.clone()
    other[1:] += 3.0  # change every query except the first
    for mode, independent in (("support", True), ("transductive", False)):
        a = forward_query(net, t.xs, t.xq, mode)[0]
        b = forward_query(net, t.xs, other, mode)[0]
        assert torch.allclose(a, b) == independent, mode


# --------------------------------------------------------------------------- Proto-MAML


def test_protomaml_initial_logits_are_protonet_logits_plus_a_row_constant():
    g = torch.Generator().manual_seed(0)
    zs, zq = torch.randn(15, 6, generator=g, dtype=torch.float64), torch.randn(8, 6, generator=g, dtype=torch.float64)
    ys = torch.arange(5).repeat_interleave(3)
    w, b = proto_head(zs, ys, 5)
    diff = (zq @ w.T + b) - prototype_logits(zs, ys, zq, 5)
    torch.testing.assert_close(diff, (zq * zq).sum(1, keepdim=True).expand(-1, 5))  # ‖z‖²: same for every class


def test_protomaml_meta_gradient_flows_through_the_prototypes():
    t = tiny_task(7)

    def encoder_grad(steps: int, detach_init: bool) -> torch.Tensor:
        net = tiny_net(n_out=None)
        learner = _l2l().algorithms.MAML(net, lr=LR, first_order=True).clone()
        w, b = protomaml_adapt(learner, t.xs, t.ys, 3, steps, LR, keep_graph=True)
        if detach_init:
            w, b = w.detach(), b.detach()
        F.cross_entropy(forward_query(learner, t.xs, t.xq, "support") @ w.T + b, t.yq).backward()
        return grads_of(net)

    # zero inner steps: Proto-MAML's loss is ProtoNet's (the row constant cancels in the softmax)
    net = tiny_net(n_out=None)
    z = forward_query(net, t.xs, t.xq, "support")
    F.cross_entropy(prototype_logits(net(t.xs), t.ys, z, 3), t.yq).backward()
    torch.testing.assert_close(encoder_grad(0, False), grads_of(net))
    # with inner steps, the prototype path adds a real contribution to the first-order gradient
    assert (encoder_grad(2, False) - encoder_grad(2, True)).abs().max() > 1e-6


# --------------------------------------------------------------------------- the methods end to end

PROFILE = H.profile("maml", meta_iterations=2, inner_lr=0.05, inner_steps_test=5)


@pytest.mark.parametrize("name", ["maml", "fomaml", "protomaml"])
def test_meta_learner_separates_easy_classes_and_fails_on_shuffled_labels(name, tmp_path):
    src = H.source()
    m = registry.get(name)
    m.prepare(src, method_settings(PROFILE, m.name), H.cache(tmp_path))
    before = H.state_snapshot(m.maml)
    eps = H.episodes(src, n=2)
    assert H.mean_accuracy(m, eps, PROFILE) > 0.9
    assert H.mean_accuracy(m, H.episodes(src, n=2, shuffle_labels=True), PROFILE) < 0.45
    assert m.run_episode(eps[0]).accuracy == m.run_episode(eps[0]).accuracy
    assert H.same_state(before, H.state_snapshot(m.maml))  # episodes never touch the prepared weights


def test_meta_training_is_deterministic_and_cached_per_variant(tmp_path):
    src = H.source()
    a, b = registry.get("fomaml"), registry.get("fomaml")
    a.prepare(src, method_settings(PROFILE, a.name), H.cache(tmp_path / "a"))
    b.prepare(src, method_settings(PROFILE, b.name), H.cache(tmp_path / "b"))
    assert H.same_state(H.state_snapshot(a.maml), H.state_snapshot(b.maml))
    assert a.train_log == b.train_log
    cache = H.cache(tmp_path / "a")
    registry.get("fomaml").prepare(src, method_settings(PROFILE, "fomaml"), cache)
    assert cache.built == []  # same config: loaded, not retrained
    # the test-time inner steps are not part of the meta-trained weights: changing them re-uses them
    cache = H.cache(tmp_path / "a")
    c = registry.get("fomaml")
    c.prepare(src, method_settings(H.profile("maml", meta_iterations=2, inner_lr=0.05, inner_steps_test=3), "fomaml"),
              cache)
    assert cache.built == [] and c.s.inner_steps_test == 3
    cache = H.cache(tmp_path / "a")
    registry.get("fomaml").prepare(
        src, method_settings(H.profile("maml", meta_iterations=2, inner_lr=0.05, inner_steps_test=5, inner_steps_train=2),
                             "fomaml"), cache)
    assert len(cache.built) == 1  # a meta-training setting is: trained again


def test_maml_refuses_an_episode_of_another_way(tmp_path):
    src = H.source()
    m = registry.get("fomaml")
    m.prepare(src, method_settings(H.profile("maml", meta_iterations=1), m.name), H.cache(tmp_path))
    ep = H.episodes(src, n=1)[0]
    ep.n_way = 4
    with pytest.raises(ValueError, match="5-way"):
        m.run_episode(ep)


def test_bn_mode_is_validated():
    with pytest.raises(ValueError, match="bn_mode"):
        method_settings(PROFILE, "maml", {"bn_mode": "running"})
