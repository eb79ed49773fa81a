"""Benchmarks of the meta-learners (pytest-benchmark): one 5-way 20-shot episode per method, one
meta-training iteration per meta-learner at the smoke profile's episode sizes, and the torch.func
MAML step against learn2learn's clone/adapt loop (whose gradients must match).

Width and image sizes: BENCH_WIDTH (default 0.25) at 32 and 64 px. With the project's default
`--benchmark-disable` every benchmark runs once, as a fast smoke test; time them with
`pytest tests/benchmarks/test_bench_meta.py --benchmark-enable`.
"""
from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path

import pytest
import torch
from func_maml import elementary_bn, func_meta_gradient

from bench.profiles import method_settings
from methods import registry
from methods.artifacts import ArtifactCache
from methods.base import EpisodeData, SourceData
from methods.episodic import meta_train_tasks
from tasks.datasets import make_synthetic
from tasks.episodes import sample_episodes
from tasks.splits import seeded_split

WIDTH = float(os.environ.get("BENCH_WIDTH", "0.25"))
SIZES = (32, 64)
META_LEARNERS = ("maml", "fomaml", "protomaml", "protonet", "matchingnet")
SMOKE = tomllib.loads((Path(__file__).resolve().parents[2] / "bench" / "profiles" / "smoke.toml").read_text())
DEVICE = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))


def bench_profile() -> dict:
    prof = copy.deepcopy(SMOKE)
    prof["individual"]["width"] = WIDTH
    for fam in ("maml", "protonet", "matchingnet"):
        prof["methods"][fam]["meta_iterations"] = 0  # weights do not matter for timing
    for fam in ("protonet", "matchingnet"):  # MAML has no running BN statistics to recalibrate
        prof["methods"][fam]["bn_recalibration_episodes"] = 1
    return prof


@pytest.fixture(scope="module", params=SIZES, ids=lambda s: f"{s}px")
def source(request) -> SourceData:
    data = make_synthetic(num_classes=20, train_per_class=20, test_per_class=10, image_size=request.param, seed=0)
    return SourceData(data, seeded_split(data, 0), 0, dataset="synthetic")


@pytest.fixture(scope="module")
def prepared(source, tmp_path_factory) -> dict:
    cache = ArtifactCache(tmp_path_factory.mktemp("artifacts"))
    out = {}
    for name in META_LEARNERS:
        m = registry.get(name, DEVICE)
        m.prepare(source, method_settings(bench_profile(), m.name), cache)
        out[name] = m
    return out


def episode(source: SourceData, k_shot: int = 20) -> EpisodeData:
    e = sample_episodes(source.data, source.novel_ids, 5, k_shot, int(SMOKE["episodes"]["queries"]), 1, 0)[0]
    return EpisodeData(source.data.images[e.support], e.support_labels, source.data.images[e.query],
                       e.query_labels, 5, k_shot, 0, 0)


@pytest.mark.parametrize("name", META_LEARNERS)
def test_bench_episode_5way_20shot(benchmark, name, source, prepared):
    ep = episode(source)
    res = benchmark.pedantic(prepared[name].run_episode, args=(ep,), rounds=3, warmup_rounds=1)
    assert 0.0 <= res.accuracy <= 1.0


def training_tasks(source: SourceData, family: str, n: int) -> list:
    cfg = SMOKE["methods"][family]
    way = int(cfg.get("train_way", SMOKE["episodes"]["n_way"]))
    return list(meta_train_tasks(source, way, int(cfg["train_shots"]), int(cfg["train_queries"]), n, 0, DEVICE))


@pytest.mark.parametrize("name", META_LEARNERS)
def test_bench_meta_iteration(benchmark, name, source, prepared):
    """One outer update: a meta-batch of tasks (MAML family) or one episode (metric methods)."""
    m = prepared[name]
    fam = registry.entry(name).family
    cfg = {**SMOKE["individual"], **SMOKE["methods"][fam]}
    if fam == "maml":
        tasks = training_tasks(source, fam, int(cfg["meta_batch"]))
        params = list(m.maml.parameters())
        opt = torch.optim.Adam(params, lr=float(cfg["outer_lr"]))

        def step() -> float:
            opt.zero_grad(set_to_none=True)
            loss = m.meta_step(tasks)
            opt.step()
            return loss
    else:
        task = training_tasks(source, fam, 1)[0]
        module = m.net
        module.train()
        opt = torch.optim.Adam(module.parameters(), lr=float(cfg["lr"]))

        def step() -> float:
            opt.zero_grad(set_to_none=True)
            loss = m.episode_loss(task, int(cfg["train_way"]))
            loss.backward()
            opt.step()
            return float(loss.detach())
    loss = benchmark.pedantic(step, rounds=3, warmup_rounds=1)
    assert loss >= 0 and loss == loss  # easy synthetic data can drive a metric loss to exactly 0


@pytest.mark.parametrize("impl", ["l2l", "func"])
@pytest.mark.parametrize("name", ["maml", "fomaml"])
def test_bench_meta_gradient_l2l_vs_func(benchmark, name, impl, source, tmp_path):
    """The meta-gradient alone (no optimiser step), learn2learn's clone/adapt loop vs torch.func + vmap.

    On a freshly prepared network, never the shared `prepared` one: the meta-iteration benchmarks take
    optimiser steps on that one, and the float32 bound below holds for the network at initialisation
    (after a few Adam steps the two operation orders drift apart by more, and the test then passed or
    failed depending on which tests ran before it)."""
    m = registry.get(name, DEVICE)
    m.prepare(source, method_settings(bench_profile(), m.name), ArtifactCache(tmp_path / "artifacts"))
    cfg = {**SMOKE["individual"], **SMOKE["methods"]["maml"]}
    tasks = training_tasks(source, "maml", int(cfg["meta_batch"]))
    steps = int(cfg["inner_steps_train"])
    net = m.maml.module

    def l2l_grad() -> dict[str, torch.Tensor]:
        m.maml.zero_grad(set_to_none=True)
        m.meta_step(tasks)
        return {n: p.grad.detach().clone() for n, p in net.named_parameters()}

    def func_grad() -> dict[str, torch.Tensor]:
        return func_meta_gradient(net, tasks, float(cfg["inner_lr"]), steps, m.first_order, m.bn_mode)[0]

    benchmark.pedantic(l2l_grad if impl == "l2l" else func_grad, rounds=3, warmup_rounds=1)
    # Equality is checked in full float32 (on CUDA, TF32 convolutions alone move gradients by ~1e-2) and
    # with the same BN arithmetic on both sides (fused vs elementary BN differ by float32 rounding that
    # near-constant channels amplify; tests/test_maml.py compares the two paths in float64).
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False), elementary_bn(net):
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            got, other = func_grad(), l2l_grad()
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
    flat = torch.cat([got[n].flatten() for n in got])
    ref = torch.cat([other[n].flatten() for n in got])
    # float32 with different operation orders (vmap's grouped convolutions vs a loop): rounding reaches
    # ~1e-3 of the largest gradient at 64 px; the exact (float64, 1e-12) comparison is in tests/test_maml.py.
    assert (flat - ref).abs().max() <= 1e-2 * ref.abs().max()
