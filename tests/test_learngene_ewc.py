"""EWC retain loss: zero at θ*, positive on inherited parameters only; Fisher vs closed forms."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from methods.backbones import IndividualNet
from methods.learngene.ewc import EWCPenalty, fisher_diagonal
from methods.learngene.inherit import gene_param_names

torch.set_num_threads(1)


@pytest.fixture
def net_and_penalty():
    torch.manual_seed(0)
    net = IndividualNet(5, 32, width=0.125)
    names = gene_param_names(net)
    x = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    y = torch.arange(5).repeat_interleave(4)
    fisher = fisher_diagonal(net, x, y, names, n_samples=128, generator=torch.Generator().manual_seed(0))
    return net, EWCPenalty(net, fisher, lam=1000.0), fisher


def test_selects_only_inherited_parameters(net_and_penalty):
    net, pen, fisher = net_and_penalty
    assert pen.names and all(n.startswith("gene.") for n in pen.names)
    assert len(pen.names) == 3 * 4  # 3 blocks x (conv w, conv b, BN γ, BN β); running stats excluded
    assert all((f >= 0).all() for f in fisher.values()) and any((f > 0).any() for f in fisher.values())


def test_penalty_zero_at_anchor_positive_after_inherited_change_zero_after_other_change(net_and_penalty):
    net, pen, _ = net_and_penalty
    assert pen(net).item() == 0.0
    with torch.no_grad():
        net.front[0][0].weight.add_(1.0)  # not inherited
        net.classifier[0].weight.add_(1.0)
    assert pen(net).item() == 0.0
    with torch.no_grad():
        net.gene[1][0].weight.add_(0.1)  # inherited
    assert pen(net).item() > 0.0


def test_penalty_value_and_gradient():
    lin = nn.Linear(3, 2)
    fisher = {"weight": torch.full((2, 3), 2.0), "bias": torch.zeros(2)}
    pen = EWCPenalty(lin, fisher, lam=10.0)
    with torch.no_grad():
        lin.weight[0, 0] += 0.5
    val = pen(lin)
    assert val.item() == pytest.approx(10.0 * 0.5 * 2.0 * 0.25)  # λ · ½ F Δθ²
    val.backward()
    assert lin.weight.grad[0, 0].item() == pytest.approx(10.0 * 2.0 * 0.5)


def test_fisher_of_softmax_linear_model_matches_closed_form():
    torch.manual_seed(1)
    d, c, n = 4, 3, 64
    lin = nn.Linear(d, c)
    x = torch.randn(n, d)
    y = torch.randint(0, c, (n,))
    p = torch.softmax(lin(x), dim=1).detach()
    onehot = torch.nn.functional.one_hot(y, c).float()
    kw = dict(n_samples=n, generator=torch.Generator().manual_seed(0), preprocessed=True)
    # exact: F[W_cj] = mean_x p_c (1 - p_c) x_j², F[b_c] = mean_x p_c (1 - p_c)
    f = fisher_diagonal(lin, x, y, ["weight", "bias"], estimator="exact", **kw)
    v = p * (1 - p)
    assert torch.allclose(f["weight"], (v[:, :, None] * x[:, None, :] ** 2).mean(0), atol=1e-6)
    assert torch.allclose(f["bias"], v.mean(0), atol=1e-6)
    # empirical: F[W_cj] = mean_x (1[y=c] - p_c)² x_j²
    f = fisher_diagonal(lin, x, y, ["weight", "bias"], estimator="empirical", **kw)
    e = (onehot - p) ** 2
    assert torch.allclose(f["weight"], (e[:, :, None] * x[:, None, :] ** 2).mean(0), atol=1e-6)
    assert torch.allclose(f["bias"], e.mean(0), atol=1e-6)
    # sampled: unbiased for the exact Fisher; with one draw per sample it is at least non-negative and finite
    f = fisher_diagonal(lin, x, y, ["weight"], estimator="sampled", **kw)
    assert torch.isfinite(f["weight"]).all() and (f["weight"] >= 0).all()


def test_fisher_uses_min_of_128_and_n():
    lin = nn.Linear(2, 2)
    x = torch.randn(5, 2)
    f = fisher_diagonal(lin, x, torch.zeros(5, dtype=torch.long), ["bias"], n_samples=3, preprocessed=True,
                        generator=torch.Generator().manual_seed(0))
    assert f["bias"].shape == (2,)
