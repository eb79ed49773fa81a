"""DeepEMD (methods/deepemd.py): the exact EMD flow (against POT and an independent LP), the
cross-reference weights, the logits' invariances, SFC, and the method end to end."""
from __future__ import annotations

import dataclasses

import numpy as np
import ot
import pytest
import torch
from episode_helpers import novel_episodes
from scipy.optimize import linprog

from bench.profiles import method_settings
from methods import registry
from methods.artifacts import ArtifactCache
from methods.deepemd import (
    centre_normalise,
    emd_flows,
    emd_logits,
    node_weights,
    normalise_masses,
    sfc_finetune,
)
from methods.settings import DeepEMDSettings
from methods.training import class_means

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_problems(P: int, n: int, m: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(P, n, m, generator=g, dtype=torch.float64),
            torch.rand(P, n, generator=g, dtype=torch.float64) + 1e-3,
            torch.rand(P, m, generator=g, dtype=torch.float64) + 1e-3)


@pytest.mark.parametrize("solver", ["batched", "pot"])
def test_flow_satisfies_both_marginals(solver):
    cost, w1, w2 = random_problems(20, 16, 16, 0)
    flow = emd_flows(cost, w1, w2, solver).double()
    a, b = normalise_masses(w1.numpy(), w2.numpy())
    assert (flow >= 0).all()
    np.testing.assert_allclose(flow.sum(-1).numpy(), a, atol=1e-5)
    np.testing.assert_allclose(flow.sum(-2).numpy(), b, atol=1e-5)
    np.testing.assert_allclose(a.sum(-1), 16.0, rtol=1e-12)  # total mass = number of nodes (DeepEMD)


@pytest.mark.parametrize("shape", [(16, 16), (25, 25), (7, 11)])
def test_flow_cost_equals_pot_exact_emd(shape):
    n, m = shape
    cost, w1, w2 = random_problems(30, n, m, 1)
    a, b = normalise_masses(w1.numpy(), w2.numpy())
    for solver in ("batched", "pot"):
        flow = emd_flows(cost, w1, w2, solver).double()
        got = (flow * cost).sum((-1, -2)).numpy()
        want = np.array([ot.emd2(a[i], b[i], cost[i].numpy()) for i in range(len(a))])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_flow_cost_equals_an_independent_linear_program():
    """scipy's HiGHS on the transportation LP, sharing no code with POT's network simplex."""
    n, m = 6, 5
    cost, w1, w2 = random_problems(8, n, m, 2)
    a, b = normalise_masses(w1.numpy(), w2.numpy())
    rows = np.kron(np.eye(n), np.ones((1, m)))  # sum_j x_ij = a_i
    cols = np.kron(np.ones((1, n)), np.eye(m))  # sum_i x_ij = b_j
    flow = emd_flows(cost, w1, w2, "batched").double()
    for i in range(len(a)):
        res = linprog(cost[i].numpy().ravel(), A_eq=np.vstack([rows, cols]), b_eq=np.concatenate([a[i], b[i]]),
                      bounds=(0, None), method="highs")
        assert res.status == 0
        assert float((flow[i] * cost[i]).sum()) == pytest.approx(res.fun, rel=1e-5, abs=1e-6)


def test_solver_rejects_unknown_name():
    cost, w1, w2 = random_problems(1, 3, 3, 0)
    with pytest.raises(ValueError, match="batched"):
        emd_flows(cost, w1, w2, "sinkhorn")


def test_node_weights_are_cross_reference_relu_dot_mean():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(3, 6, 4, generator=g), torch.randn(2, 6, 5, generator=g)
    w = node_weights(x, y)
    assert w.shape == (3, 2, 4)
    for a in range(3):
        for b in range(2):
            want = torch.clamp(x[a].T @ y[b].mean(-1), min=0) + 1e-3
            torch.testing.assert_close(w[a, b], want)


def maps(q: int, c: int = 8, h: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(q, c, h, h, generator=torch.Generator().manual_seed(seed))


def test_logits_are_temperature_over_n_times_flow_weighted_cosine():
    qm, pm = maps(4, seed=1), maps(3, seed=2)
    logits, flow = emd_logits(qm, pm, temperature=12.5, return_flow=True)
    q, p = centre_normalise(qm.flatten(2)), centre_normalise(pm.flatten(2))
    for i in range(4):
        for j in range(3):
            cos = q[i].T @ p[j]
            assert float(logits[i, j]) == pytest.approx(12.5 / 16 * float((flow[i, j] * cos).sum()), rel=1e-5)
            # total mass is N, so the logit is T * (1 - EMD/N)
            emd = float((flow[i, j] * (1 - cos)).sum())
            assert float(logits[i, j]) == pytest.approx(12.5 * (1 - emd / 16), rel=1e-4, abs=1e-4)


def test_logits_invariant_to_permuting_nodes():
    qm, pm = maps(5, seed=3), maps(4, seed=4)
    base = emd_logits(qm, pm)
    g = torch.Generator().manual_seed(5)
    perm_q, perm_p = torch.randperm(16, generator=g), torch.randperm(16, generator=g)
    permuted = emd_logits(qm.flatten(2)[..., perm_q], pm.flatten(2)[..., perm_p])
    torch.testing.assert_close(permuted, base, atol=1e-5, rtol=1e-5)
    # and the feature map's spatial layout is irrelevant: same nodes as a 2x8 map
    torch.testing.assert_close(emd_logits(qm.reshape(5, 8, 2, 8), pm.reshape(4, 8, 2, 8)), base)


def test_logits_gradient_flows_through_similarity_only():
    qm = maps(3, seed=6)
    pm = maps(2, seed=7).requires_grad_(True)
    emd_logits(qm, pm).sum().backward()
    assert pm.grad is not None and torch.isfinite(pm.grad).all() and pm.grad.abs().sum() > 0


def test_class_means_and_sfc_start():
    fs = maps(10, seed=8)
    ys = torch.arange(5).repeat_interleave(2)
    means = class_means(fs, ys, 5)
    torch.testing.assert_close(means[3], fs[6:8].mean(0))
    cfg = DeepEMDSettings(sfc_epochs=0)
    protos, curve = sfc_finetune(fs, ys, 5, cfg, torch.Generator().manual_seed(0))
    torch.testing.assert_close(protos, means)
    assert curve == []
    cfg = dataclasses.replace(cfg, sfc_epochs=2, sfc_lr=0.1)
    stats: dict = {}
    protos, curve = sfc_finetune(fs, ys, 5, cfg, torch.Generator().manual_seed(0), fs, ys, stats)
    assert len(curve) == 2 and not torch.equal(protos, means)
    # 2 epochs x ceil(10/4) steps x (batch x 5 protos) + 2 curve evaluations x (10 x 5)
    assert stats["n_emd"] == 2 * (4 * 5 + 4 * 5 + 2 * 5) + 2 * 50


# --------------------------------------------------------------------------- end to end

PROFILE = {
    "individual": {"width": 0.125, "crop_padding": 0},
    "methods": {"finetune": {"pretrain_epochs": 6, "pretrain_lr": 0.05, "pretrain_batch": 32,
                             "pretrain_images_per_class": 30, "pretrain_optimizer": "sgd",
                             "pretrain_momentum": 0.9, "pretrain_weight_decay": 5e-4,
                             "pretrain_schedule": "cosine"},
                "deepemd": {"sfc_epochs": 3, "sfc_lr": 0.1, "sfc_batch": 4, "temperature": 12.5,
                            "solver": "batched", "meta_iterations": 0}},
}


def test_end_to_end_easy_task_and_shuffled_labels(synthetic_source, tmp_path):
    method = registry.get("deepemd")
    method.prepare(synthetic_source, method_settings(PROFILE, method.name), ArtifactCache(tmp_path))
    easy = [method.run_episode(ep) for ep in novel_episodes(synthetic_source, 10, 2)]
    for r in easy:
        assert len(r.curve) == 3 and r.curve[-1] == pytest.approx(r.accuracy)
        assert r.extra["nodes"] == 16 and r.extra["n_emd"] > 0
    # Chance is 0.2. The 6-epoch backbone's quality depends on its seed: over artifact seeds 0-3 the
    # Baseline reaches 0.99/0.86/0.61/0.71 (seeds of the base commit) and 0.80/0.59/0.80/0.88 (rng()
    # seeds), so 0.9 held only for one lucky draw; 0.7 with the shuffled-label contrast below still
    # separates a working method from a broken one.
    assert sum(r.accuracy for r in easy) / len(easy) >= 0.7, [r.accuracy for r in easy]
    shuffled = [method.run_episode(ep) for ep in novel_episodes(synthetic_source, 10, 3, shuffle=True)]
    assert sum(r.accuracy for r in shuffled) / len(shuffled) <= 0.45, [r.accuracy for r in shuffled]
    one_shot = method.run_episode(novel_episodes(synthetic_source, 1, 1)[0])
    assert one_shot.extra["n_emd"] == 100 * 5 and one_shot.accuracy > 0.4  # no SFC at 1-shot


def test_shares_finetune_pretraining_and_caches_meta_training(synthetic_source, tmp_path):
    cache = ArtifactCache(tmp_path)
    prof = {"individual": PROFILE["individual"],
            "methods": {"finetune": {**PROFILE["methods"]["finetune"], "pretrain_epochs": 1},
                        "deepemd": {**PROFILE["methods"]["deepemd"], "meta_iterations": 2, "meta_queries": 3}}}
    ft = registry.get("finetune")
    ft.prepare(synthetic_source, method_settings(prof, ft.name), cache)
    ft_state = {k: v.clone() for k, v in ft.encoder.state_dict().items()}
    emd = registry.get("deepemd")
    emd.prepare(synthetic_source, method_settings(prof, emd.name), cache)
    kinds = sorted(p.rsplit("/", 1)[-1].rsplit("-", 1)[0] for p in cache.built)
    assert kinds == ["deepemd-meta", "pretrain-linear"]  # one pre-training for both methods
    assert len(emd.meta_log["loss"]) == 2
    assert all(not p.requires_grad for p in emd.encoder.parameters())
    # meta-training moved DeepEMD's encoder but left the prepared finetune encoder untouched
    assert all(torch.equal(v, ft_state[k]) for k, v in ft.encoder.state_dict().items())
    assert any(not torch.equal(v, ft_state[k]) for k, v in emd.encoder.state_dict().items())
    again = registry.get("deepemd")
    again.prepare(synthetic_source, method_settings(prof, again.name), cache)
    assert len(cache.built) == 2
