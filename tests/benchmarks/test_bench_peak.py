"""How close each main loop runs to the machine's matrix-multiply rate, measured in the same run.

`make bench` times a 2048² fp32 and bf16 matrix product (the machine's practical peak on these
cores) and one step of each main loop of the suite: collective training, individual (support-set)
training, a ProtoNet meta-iteration, a MAML meta-iteration, a DeepEMD 5-way 20-shot episode and
evaluation (eval-mode prediction of 250 queries). Each loop's floating-point operations are counted
once with `torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix products, forward and
backward); `bench.benchmarks_report` divides them by the measured time and by the peak. DeepEMD's
EMD solver (POT's network simplex) does no counted FLOPs, so its fraction understates the work.

Width: BENCH_WIDTH (default 0.25), 32 px. With the project's default `--benchmark-disable` each
benchmark runs once, as a smoke test.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench.profiles import load_profile, method_settings
from methods import registry
from methods.artifacts import ArtifactCache
from methods.backbones import CollectiveNet, IndividualNet
from methods.base import EpisodeData, SourceData
from methods.episodic import meta_train_tasks
from methods.training import Recipe, predict, train_supervised
from tasks.datasets import make_synthetic
from tasks.episodes import sample_episodes
from tasks.splits import seeded_split

WIDTH = float(os.environ.get("BENCH_WIDTH", "0.25"))
GEMM = 2048
DEVICE = torch.device("cpu")


def count_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of one call (FlopCounterMode: conv/matmul, forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def timed(benchmark, fn: Callable[[], object], loop: str, rounds: int = 5) -> None:
    benchmark.extra_info.update(loop=loop, flops=count_flops(fn), width=WIDTH,
                                threads=torch.get_num_threads())
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1, iterations=1)


@pytest.fixture(scope="module")
def source() -> SourceData:
    data = make_synthetic(num_classes=20, train_per_class=40, test_per_class=50, image_size=32, seed=0)
    return SourceData(data, seeded_split(data, 0), 0, dataset="synthetic")


@pytest.fixture(scope="module")
def profile() -> dict:
    prof = copy.deepcopy(load_profile("quick"))
    prof["individual"]["width"] = WIDTH
    for fam in ("maml", "protonet", "matchingnet", "deepemd"):
        prof["methods"][fam]["meta_iterations"] = 0  # weights do not matter for timing
    prof["methods"]["finetune"].update(pretrain_epochs=1, pretrain_images_per_class=10)
    return prof


def prepared(name: str, source: SourceData, profile: dict, tmp_path_factory):
    m = registry.get(name, DEVICE)
    m.prepare(source, method_settings(profile, name), ArtifactCache(tmp_path_factory.mktemp(name)))
    return m


def episode(source: SourceData, k_shot: int = 20) -> EpisodeData:
    e = sample_episodes(source.data, source.novel_ids, 5, k_shot, None, 1, 0)[0]
    return EpisodeData(source.data.images[e.support], e.support_labels, source.data.images[e.query],
                       e.query_labels, 5, k_shot, 0, 0, record_curve=False)


@pytest.mark.benchmark(group="peak")
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_bench_matmul_peak(benchmark, dtype):
    """The practical peak: a large square matrix product in fp32 and in bf16."""
    dt = torch.float32 if dtype == "fp32" else torch.bfloat16
    a, b = torch.randn(GEMM, GEMM, dtype=dt), torch.randn(GEMM, GEMM, dtype=dt)
    benchmark.extra_info.update(loop=f"matmul {GEMM}² {dtype}", flops=2 * GEMM**3, peak=dtype,
                                threads=torch.get_num_threads())
    benchmark.pedantic(torch.mm, args=(a, b), rounds=5, warmup_rounds=1, iterations=1)


@pytest.mark.benchmark(group="loops")
def test_bench_collective_step(benchmark, source, profile):
    c = profile["collective"]
    net = CollectiveNet(5, 32, width=WIDTH)
    x, y = source.data.images[:c["batch_size"]], torch.arange(c["batch_size"]) % 5
    timed(benchmark, lambda: train_supervised(net, x, y, Recipe(epochs=1, lr=c["lr"], batch_size=c["batch_size"]),
                                              generator=torch.Generator().manual_seed(0), device=DEVICE),
          "collective training (1 SGD step, batch 64)")


@pytest.mark.benchmark(group="loops")
def test_bench_individual_step(benchmark, source, profile):
    ind = profile["individual"]
    net = IndividualNet(5, 32, width=WIDTH)
    x, y = source.data.images[:25], torch.arange(25) % 5
    timed(benchmark, lambda: train_supervised(net, x, y, Recipe(epochs=1, lr=ind["lr"], batch_size=25),
                                              generator=torch.Generator().manual_seed(0), device=DEVICE),
          "individual training (1 SGD step, batch 25)")


@pytest.mark.benchmark(group="loops")
def test_bench_protonet_iteration(benchmark, source, profile, tmp_path_factory):
    m = prepared("protonet", source, profile, tmp_path_factory)
    cfg = profile["methods"]["protonet"]
    task = next(meta_train_tasks(source, cfg["train_way"], cfg["train_shots"], cfg["train_queries"], 1, 0, DEVICE))
    opt = torch.optim.Adam(m.net.parameters(), lr=cfg["lr"])
    m.net.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        m.episode_loss(task, cfg["train_way"]).backward()
        opt.step()

    timed(benchmark, step, f"ProtoNet meta-iteration ({cfg['train_way']}-way {cfg['train_shots']}-shot)")


@pytest.mark.benchmark(group="loops")
def test_bench_maml_iteration(benchmark, source, profile, tmp_path_factory):
    m = prepared("maml", source, profile, tmp_path_factory)
    cfg = profile["methods"]["maml"]
    tasks = list(meta_train_tasks(source, profile["episodes"]["n_way"], cfg["train_shots"], cfg["train_queries"],
                                  cfg["meta_batch"], 0, DEVICE))
    opt = torch.optim.Adam(m.maml.parameters(), lr=cfg["outer_lr"])

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        m.meta_step(tasks)
        opt.step()

    timed(benchmark, step, f"MAML meta-iteration (meta-batch {cfg['meta_batch']}, second order)", rounds=3)


@pytest.mark.benchmark(group="loops")
def test_bench_deepemd_episode(benchmark, source, profile, tmp_path_factory):
    m = prepared("deepemd", source, profile, tmp_path_factory)
    ep = episode(source)
    timed(benchmark, lambda: m.run_episode(ep), "DeepEMD episode (5-way 20-shot, SFC, 250 queries)", rounds=2)


@pytest.mark.benchmark(group="loops")
def test_bench_evaluation(benchmark, source):
    net = IndividualNet(5, 32, width=WIDTH)
    x = source.data.images[:250]
    timed(benchmark, lambda: predict(net, x, DEVICE), "evaluation (eval-mode logits of 250 queries)")


def test_flop_counter_counts_a_known_product():
    """The counter the fractions rest on: an [m,k]x[k,n] product is 2mkn FLOPs."""
    assert count_flops(lambda: torch.randn(64, 32) @ torch.randn(32, 16)) == 2 * 64 * 32 * 16
    lin = torch.nn.Linear(32, 16, bias=False)
    x = torch.randn(8, 32, requires_grad=True)  # forward + grad of input + grad of weight: 3 products
    assert count_flops(lambda: F.linear(x, lin.weight).sum().backward()) == 3 * 2 * 8 * 32 * 16
