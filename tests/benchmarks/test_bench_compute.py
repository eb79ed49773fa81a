"""The `[compute]` switches per loop: fp32 vs channels_last vs bf16 autocast, time and accuracy.

Each loop is run through its method exactly as a cell runs it (base training, then fixed 5-way
10-shot episodes with every test image as a query), once per switch: individual training (scratch),
collective training (learngene: the collective model, then the individual model), episodic
meta-training (ProtoNet) and pre-training (fine-tuning). `bench.benchmarks_report` turns the stored
per-episode accuracies into paired differences to fp32 (mean ± 95 % CI) beside the speed-ups, and
names the CPU's bf16 support: a switch belongs in a shipped profile only where that difference is
within its CI. Real data (tiny-imagenet at 32 px) when BENCH_DATA_DIR has it, else synthetic.
Budgets are cut (a few minutes in all) but equal across switches.
"""
from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import pytest
import torch

from bench.cell_env import Env, RunSpec, run_episodes
from bench.profiles import load_profile
from bench.usage import cpu_bf16_support
from methods.settings import ComputeSettings
from methods.training import set_compute

POLICIES = {"fp32": ComputeSettings(), "channels_last": ComputeSettings(channels_last=True),
            "bf16": ComputeSettings(amp="bf16")}
LOOPS = {"individual training": "scratch", "collective training": "learngene", "episodic meta-training": "protonet",
         "pre-training": "finetune"}
EPISODES = 10


def _profile() -> dict:
    prof = copy.deepcopy(load_profile("quick"))
    prof["individual"]["width"] = prof["collective"]["width"] = float(os.environ.get("BENCH_WIDTH", "0.25"))
    prof["episodes"]["queries"] = "all"
    prof["collective"].update(tasks=6, epochs=3, widen_until=5, learngene_task=5, checkpoints=[5])
    prof["methods"]["protonet"]["meta_iterations"] = 200
    prof["methods"]["finetune"]["pretrain_epochs"] = 4
    prof.pop("experiments", None)
    return prof


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> RunSpec:
    data_dir = os.environ.get("BENCH_DATA_DIR", "")
    real = bool(data_dir) and (Path(data_dir) / "tiny-imagenet-100.zip").exists()
    return RunSpec("tiny-imagenet" if real else "synthetic", data_dir, 32, _profile(),
                   str(tmp_path_factory.mktemp("compute")))


@pytest.mark.benchmark(group="compute switches")
@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("loop", list(LOOPS))
def test_bench_compute_switch(benchmark, request, spec, loop, policy):
    session = getattr(request.config, "_benchmarksession", None)  # knows --benchmark-enable beats -disable
    if session is None or session.disabled:
        pytest.skip("timing only (minutes of training): run with --benchmark-enable (make bench)")
    env = Env(spec)
    set_compute(POLICIES[policy])
    accs: list[float] = []

    def run() -> None:
        rows = run_episodes(env, LOOPS[loop], "novel", 10, 0, EPISODES, curve=False)
        accs[:] = [r["value"] for r in rows if r["metric"] == "accuracy"]

    try:
        t0 = time.perf_counter()
        benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
        wall = time.perf_counter() - t0
    finally:
        set_compute(ComputeSettings())
    benchmark.extra_info.update(loop=loop, method=LOOPS[loop], policy=policy, episode_acc=accs,
                                accuracy=round(sum(accs) / len(accs), 4), wall_s=round(wall, 2),
                                data=spec.dataset, cpu_bf16=cpu_bf16_support(), threads=torch.get_num_threads())
    assert len(accs) == EPISODES
