"""Benchmarks of Baseline, Baseline++ and DeepEMD.

1. One 5-way 20-shot episode (feature extraction + head / SFC fine-tuning + prediction) per method at
   smoke sizes (the smoke profile's `[methods.*]` and width, 32 px synthetic images, 10 queries
   per class); pre-training happens once in a module fixture and is not timed.
2. DeepEMD's solver cost for one test episode's problems (5 prototypes x 75 queries = 375 exact
   EMDs, 16 nodes as our 4x4 map, 25 as ResNet-12 at 84 px): `batched` (one float64 conversion,
   vectorised mass normalisation, POT's C network simplex in a tight loop) against `pot` (one
   `ot.emd` call per pair from torch tensors, the reference code's pattern). Both are exact; the
   test checks the flows give the same transport cost.

Run for numbers:

    .venv/bin/pytest tests/benchmarks/test_bench_finetune_deepemd.py --benchmark-enable -s

With the default `--benchmark-disable` each function runs once. One torch thread (shared 2-core
machines; 2 threads under contention were ~20x slower on these tiny tensors).
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch

from bench.profiles import method_settings
from methods import registry
from methods.artifacts import ArtifactCache
from methods.base import EpisodeData, SourceData
from methods.deepemd import emd_flows
from tasks.datasets import make_synthetic
from tasks.episodes import sample_episodes
from tasks.splits import seeded_split

SMOKE = Path(__file__).resolve().parents[2] / "bench" / "profiles" / "smoke.toml"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def smoke_profile() -> dict:
    return tomllib.loads(SMOKE.read_text())


@pytest.fixture(scope="module")
def source() -> SourceData:
    data = make_synthetic(num_classes=20, train_per_class=24, test_per_class=10, image_size=32, seed=0)
    return SourceData(data, seeded_split(data, 0), seed=0, dataset="synthetic")


@pytest.fixture(scope="module")
def episode(source: SourceData) -> EpisodeData:
    e = sample_episodes(source.data, source.novel_ids, 5, 20, 10, 1, seed=0)[0]
    return EpisodeData(source.data.images[e.support], e.support_labels, source.data.images[e.query],
                       e.query_labels, 5, 20, seed=0, index=0)


@pytest.mark.parametrize("name", ["finetune", "finetune++", "deepemd"])
def test_episode_5way_20shot(benchmark, name, source, episode, smoke_profile, tmp_path_factory):
    method = registry.get(name)
    method.prepare(source, method_settings(smoke_profile, method.name), ArtifactCache(tmp_path_factory.mktemp(name)))
    result = benchmark.pedantic(method.run_episode, args=(episode,), rounds=3, iterations=1)
    benchmark.extra_info.update({"accuracy": result.accuracy, "threads": torch.get_num_threads(),
                                 **{k: v for k, v in result.extra.items() if isinstance(v, (int, float))}})
    assert 0.0 <= result.accuracy <= 1.0 and result.curve


def episode_problems(nodes: int, pairs: int = 375, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(pairs, nodes, nodes, generator=g), torch.rand(pairs, nodes, generator=g) + 1e-3,
            torch.rand(pairs, nodes, generator=g) + 1e-3)


@pytest.mark.parametrize("nodes", [16, 25])
@pytest.mark.parametrize("solver", ["batched", "pot"])
def test_emd_solver_per_test_episode(benchmark, solver, nodes):
    cost, w1, w2 = episode_problems(nodes)
    flows = benchmark.pedantic(emd_flows, args=(cost, w1, w2, solver), rounds=5, iterations=1)
    reference = emd_flows(cost, w1, w2, "pot" if solver == "batched" else "batched")
    torch.testing.assert_close((flows * cost).sum((-1, -2)), (reference * cost).sum((-1, -2)),
                               rtol=1e-5, atol=1e-5)
    benchmark.extra_info.update({"pairs": cost.shape[0], "nodes": nodes})
