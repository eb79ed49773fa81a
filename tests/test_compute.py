"""`[compute]`: channels-last and bf16 autocast reach every loop, key the artifacts, and fp32 stays exact."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from methods.artifacts import ArtifactCache
from methods.backbones import IndividualNet
from methods.settings import ComputeSettings
from methods.training import compute, fit, predict, rng, set_compute, shuffled_batches


@pytest.fixture
def policy():
    yield set_compute
    set_compute(ComputeSettings())


def _train(net: torch.nn.Module, seen: list) -> None:
    x, y = torch.randint(0, 255, (20, 3, 32, 32), dtype=torch.uint8), torch.arange(20) % 5

    def loss_of(idx):
        out = net(x[idx].float() / 255)
        seen.append(out.dtype)
        return F.cross_entropy(out.float(), y[idx])

    fit(loss_of, shuffled_batches(20, 10, rng(0, "t")), lambda: torch.optim.SGD(net.parameters(), lr=0.01),
        module=net)


def test_bf16_autocast_and_channels_last_reach_fit_and_predict(policy):
    policy(ComputeSettings(channels_last=True, amp="bf16"))
    net, seen = IndividualNet(5, 32, width=0.125), []
    _train(net, seen)
    assert seen and all(d == torch.bfloat16 for d in seen)
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    out = predict(net, torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.device("cpu"))
    assert out.dtype == torch.float32  # callers always get fp32 logits


def test_default_is_fp32_and_contiguous(policy):
    net, seen = IndividualNet(5, 32, width=0.125), []
    _train(net, seen)
    assert all(d == torch.float32 for d in seen)
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()


def test_non_default_compute_changes_the_artifact_key(policy, tmp_path):
    cache = ArtifactCache(tmp_path)
    fp32 = cache.path("x", {"a": 1})
    policy(ComputeSettings(amp="bf16"))
    assert compute().amp == "bf16" and cache.path("x", {"a": 1}) != fp32
    policy(ComputeSettings())
    assert cache.path("x", {"a": 1}) == fp32  # the default keeps every existing key
