"""Collective model: Net2Wider/Net2Deeper are function-preserving, the schedule, ρ, continual training."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from methods.backbones import CollectiveNet, scaled
from methods.learngene.collective import (
    PAPER_ADD_CONV,
    ContinualLearner,
    _RhoRecorder,
    deepen,
    model_from_state,
    train_collective,
    widen,
    widening_schedule,
)
from methods.settings import CollectiveSettings
from tasks.continual import continual_tasks
from tasks.datasets import make_synthetic

torch.set_num_threads(1)  # the machine is shared; 1 thread is faster under contention


def randomised(net: CollectiveNet, seed: int = 0) -> CollectiveNet:
    """Non-trivial BN parameters and statistics, so a wrong BN copy shows up."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.2 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
    return net.eval()


def outputs(net: CollectiveNet, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net.eval()(x)


@pytest.mark.parametrize("layer", [0, 5])
def test_widen_conv_to_conv_preserves_function(layer):
    net = randomised(CollectiveNet(7, 32, width=0.125))
    x = torch.randn(4, 3, 32, 32)
    before = outputs(net, x)
    old = net.widths[layer]
    widen(net, layer, 5, torch.Generator().manual_seed(1))
    assert net.widths[layer] == old + 5 and net.blocks[layer][0].out_channels == old + 5
    assert net.blocks[layer][1].num_features == old + 5 and net.blocks[layer + 1][0].in_channels == old + 5
    assert torch.allclose(outputs(net, x), before, atol=1e-5)


def test_widen_last_conv_to_linear_with_spatial_map_preserves_function():
    net = randomised(CollectiveNet(7, 64, width=0.125))  # 64 px -> 2x2 map before the flatten
    assert net.spatial == 2
    x = torch.randn(3, 3, 64, 64)
    before = outputs(net, x)
    widen(net, 12, 9, torch.Generator().manual_seed(2))
    assert net.classifier[0].in_features == net.widths[12] * 4
    assert torch.allclose(outputs(net, x), before, atol=1e-5)


def test_widen_copies_bn_for_every_new_channel():
    net = randomised(CollectiveNet(7, 32, width=0.125))
    bn_old = {k: v.clone() for k, v in net.blocks[3][1].state_dict().items()}
    old = net.widths[3]
    g = torch.Generator().manual_seed(5)
    picks = torch.randint(0, old, (6,), generator=torch.Generator().manual_seed(5))
    widen(net, 3, 6, g)
    bn = net.blocks[3][1]
    for name in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(bn, name)[old:], bn_old[name][picks])


def test_deepen_preserves_function_and_moves_pools():
    net = randomised(CollectiveNet(7, 32, width=0.125))
    x = torch.randn(4, 3, 32, 32)
    before = outputs(net, x)
    deepen(net, 3)  # block 3 is followed by a pool
    deepen(net, 0)
    assert len(net.blocks) == 15 and len(net.widths) == 15
    assert torch.allclose(outputs(net, x), before, atol=1e-5)


def test_whole_paper_schedule_preserves_function_and_reaches_final_widths():
    w = 0.125
    net = randomised(CollectiveNet(7, 32, width=w))
    x = torch.randn(2, 3, 32, 32)
    before = outputs(net, x)
    sched = widening_schedule("paper", 20, w, 50)
    assert sorted(sched) == list(range(1, 21)) and [ops[0][0] for _, ops in sorted(sched.items())] == list(PAPER_ADD_CONV)
    g = torch.Generator().manual_seed(0)
    for t in sorted(sched):
        for conv, add in sched[t]:
            widen(net, conv, add, g)
    final = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert net.widths == [scaled(c, w) for c in final]
    assert torch.allclose(outputs(net, x), before, atol=1e-5)


def test_compressed_and_uniform_schedules():
    sched = widening_schedule("paper", 3, 0.25, 4)
    assert sorted(sched) == [1, 2, 3] and sum(len(v) for v in sched.values()) == 20
    assert widening_schedule("paper", 20, 1.0, 5) == widening_schedule("paper", 4, 1.0, 5)  # clamped to tasks-1
    assert widening_schedule("none", 20, 1.0, 50) == {}
    assert widening_schedule([[1, 4, 3]], 0, 1.0, 5) == {1: [(4, 3)]}


def test_rho_signed_and_abs_on_a_known_gradient():
    net = CollectiveNet(5, 32, width=0.125)
    rec = _RhoRecorder(net, sigma=0.5, epochs=2, steps_per_epoch=1)
    grads = []
    for block in net.blocks:
        w = block[0].weight
        n = w.numel()
        pattern = torch.zeros(n)
        pattern[: n // 2] = 1.0          # half above +σ
        pattern[n // 2: 3 * n // 4] = -1.0  # a quarter below -σ
        grads.append(pattern[torch.randperm(n)].view_as(w))
    for _ in range(2):  # two epochs, one step each
        loss = sum((b[0].weight * g).sum() for b, g in zip(net.blocks, grads, strict=True))
        loss.backward()
    res = rec.close()
    for layer, block in enumerate(net.blocks):
        n = block[0].weight.numel()
        assert res["signed"][layer] == pytest.approx([(n // 2) / n] * 2)
        assert res["abs"][layer] == pytest.approx([(n // 2 + (3 * n // 4 - n // 2)) / n] * 2)
    assert all(not b[0].weight._backward_hooks for b in net.blocks)


@pytest.fixture(scope="module")
def small_run():
    data = make_synthetic(num_classes=12, train_per_class=12, test_per_class=4, seed=1)
    tasks = continual_tasks(data, list(range(10)), 3, 5, 10, 4, seed=0)
    cfg = CollectiveSettings(width=0.125, epochs=2, batch_size=16, lr=0.01, momentum=0.9, weight_decay=5e-4,
                             widen_until=2, sigma=1e-4, schedule="paper")
    return data, tasks, cfg


def test_train_collective_records_rho_R_checkpoints(small_run):
    data, tasks, cfg = small_run
    art = train_collective(data, tasks, cfg, device=torch.device("cpu"), seed=0, n_outputs=10, keep=[0, 2])
    assert sorted(art["checkpoints"]) == ["0", "2"]
    assert [len(r) for r in art["R"]] == [1, 2, 3]
    assert len(art["rho"]) == 3 * 13 * 2 and {r["mode"] for r in art["rho"]} == {"signed", "abs"}
    assert all(0.0 <= r["rho"] <= 1.0 and len(r["per_epoch"]) == 2 for r in art["rho"])
    assert art["checkpoints"]["0"]["widths"] != art["final"]["widths"]  # widened after task 0
    net = model_from_state(art["final"])
    assert net.widths == art["final"]["widths"]
    assert art["task_classes"] == [list(t.classes) for t in tasks]


def test_faithful_softmax_outputs_probabilities(small_run):
    data, tasks, cfg = small_run
    art = train_collective(data, tasks[:1], cfg, device=torch.device("cpu"), seed=0, n_outputs=10,
                           faithful_softmax=True)
    net = model_from_state(art["final"]).eval()
    with torch.no_grad():
        p = net(torch.randn(4, 3, 32, 32))
    assert (p >= 0).all() and torch.allclose(p.sum(1), torch.ones(4), atol=1e-5)


def test_class_incremental_head_uses_global_outputs(small_run):
    data, tasks, cfg = small_run
    idx = {c: i for i, c in enumerate(range(12))}
    net = CollectiveNet(12, 32, width=0.125)
    learner = ContinualLearner(net, data, dataclasses.replace(cfg, epochs=1), device=torch.device("cpu"), seed=0,
                               head="class_incremental", class_index=idx)
    learner.learn(tasks[0])
    assert len(learner.R) == 1 and 0.0 <= learner.R[0][0] <= 1.0


def _forward_twice_no_mode_change(net: CollectiveNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward as the next caller would: no `.eval()` in between, twice (a train-mode BN would both
    use batch statistics and overwrite its running statistics, so the two calls would differ too)."""
    with torch.no_grad():
        return net(x), net(x)


def test_widen_and_deepen_in_eval_mode_preserve_function_on_repeated_forwards():
    net = randomised(CollectiveNet(7, 32, width=0.125))  # eval mode, non-trivial running statistics
    x = torch.randn(4, 3, 32, 32)
    before = outputs(net, x)
    assert before.abs().max() > 1e-3  # a non-trivial output, so "unchanged" means something
    g = torch.Generator().manual_seed(3)
    widen(net, 2, 4, g)
    widen(net, 7, 6, g)
    widen(net, 12, 3, g)  # last conv -> linear
    deepen(net, 4)
    assert not any(m.training for m in net.modules()), "a module made by widen/deepen is in train mode"
    first, second = _forward_twice_no_mode_change(net, x)
    assert torch.allclose(first, before, atol=1e-5)
    assert torch.allclose(second, before, atol=1e-5)


def test_widen_and_deepen_in_train_mode_make_train_mode_modules():
    net = CollectiveNet(7, 32, width=0.125).train()
    widen(net, 3, 2, torch.Generator().manual_seed(0))
    widen(net, 12, 2, torch.Generator().manual_seed(0))
    deepen(net, 1)
    assert all(m.training for m in net.modules())


def test_collective_accuracy_is_measured_on_held_out_images_only(small_run, monkeypatch):
    """The "accuracy right after each task" the results README reports (R[t][t]) reads only the
    tasks' held-out test images: the images evaluated are exactly the tasks' test-pool images, no
    test image is a training image, and blanking every train-pool image leaves R unchanged."""
    import methods.learngene.collective as collective
    from tasks.imageset import TEST_POOL

    data, tasks, cfg = small_run
    for tk in tasks:
        assert not set(tk.test_idx.tolist()) & set(tk.train_idx.tolist())
        assert bool((data.pool[tk.test_idx] == TEST_POOL).all())
    learner = ContinualLearner(CollectiveNet(10, 32, width=0.125), data, dataclasses.replace(cfg, epochs=1),
                               device=torch.device("cpu"), seed=0)
    learner.learn(tasks[0])
    learner.learn(tasks[1])
    seen = []
    real_predict = collective.predict

    def spy(net, images, device, *a, **k):
        seen.append(images.clone())
        return real_predict(net, images, device, *a, **k)

    monkeypatch.setattr(collective, "predict", spy)
    before = learner.evaluate()
    assert torch.equal(seen[-1], data.images[torch.cat([tasks[0].test_idx, tasks[1].test_idx])])
    saved = data.images.clone()
    try:
        data.images[data.pool != TEST_POOL] = 0
        assert learner.evaluate() == before
    finally:
        data.images.copy_(saved)
