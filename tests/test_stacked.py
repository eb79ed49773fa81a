"""Stacked episode training (methods/stacked.py) reproduces scratch's one-at-a-time path episode by
episode, and is used on CUDA only, with equal-shaped episodes only.

Tolerances: the weight comparison runs in float64, where the only difference between the paths is
summation order (grouped vs plain convolution, bmm vs addmm), so after 2 epochs group e matches
episode e's own network to 1e-9 (rounding is ~1e-15 per op); a real mismatch (another seed, another
generator order, a mean instead of a sum over episodes) moves weights by ~1e-3. The end-to-end
comparison runs in float32, as the bench does, and asks for equal accuracies and curves.
"""
from __future__ import annotations

import pytest
import torch
from meta_helpers import colour_set, episodes, source
from torch import nn

import methods
from bench.profiles import method_settings
from methods.backbones import CollectiveNet, IndividualNet
from methods.base import EpisodeResult
from methods.learngene.ewc import EWCPenalty
from methods.learngene.inherit import build_individual, extract_learngene, gene_param_names
from methods.learngene.stages import AncestorState
from methods.settings import LearngeneSettings
from methods.stacked import stack_named, train_stacked
from methods.training import Recipe, derived_seed, rng, train_supervised
from tasks.augment import train_transform, train_transform_stacked
from tasks.datasets import make_synthetic

PROFILE = {"episodes": {"n_way": 5},
           "individual": {"width": 0.125, "epochs": 6, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
                          "batch_size": 8, "crop_padding": 2}}


class _Float64(nn.Module):
    """An IndividualNet in float64 that takes the float32 batches the augmentation makes."""

    def __init__(self, net: IndividualNet):
        super().__init__()
        self.net = net.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.double())


def _textured():
    """Gratings (tasks.datasets.make_synthetic), 16 px: well-conditioned for float32 comparisons. The
    near-constant colour images amplify float32 rounding through BatchNorm's tiny variances (1e-3
    relative after 2 epochs, both paths equally right), so they serve only the float64 check."""
    return source(make_synthetic(20, 12, 6, 16, seed=0))


def _init(ep, width: float = 0.125) -> IndividualNet:
    torch.manual_seed(derived_seed(ep.seed, "episode-init", ep.index))
    return IndividualNet(ep.n_way, 16, width=width)


@pytest.mark.parametrize("crop", [0, 2])
def test_stacked_augmentation_equals_per_episode(crop):
    x = torch.randint(0, 256, (6, 3, 3, 8, 8), dtype=torch.uint8)
    gens = [rng(0, "aug", e) for e in range(3)]
    refs = [rng(0, "aug", e) for e in range(3)]
    out = train_transform_stacked(x, gens, crop)
    for e in range(3):
        assert torch.equal(out[:, e], train_transform(x[:, e], refs[e], crop))
        assert torch.equal(gens[e].get_state(), refs[e].get_state())  # the same draws were consumed


def test_stacked_weights_equal_one_at_a_time_float64():
    eps = episodes(source(colour_set()), k_shot=5, n_query=3, n=3)
    recipe = Recipe(epochs=2, lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=8, crop_padding=2,
                    last_batch="keep")
    kw = {"device": torch.device("cpu")}  # 25 images: batches 8,8,8,1 (uneven)
    alone = []
    for ep in eps:
        model = _Float64(_init(ep))
        curve = train_supervised(model, ep.support_x, ep.support_y, recipe, generator=rng(ep.seed, "episode", ep.index),
                                 eval_x=ep.query_x, eval_y=ep.query_y, **kw)
        alone.append((model.net, curve))
    curves, stacked = train_stacked([_init(ep).double() for ep in eps], [ep.support_x for ep in eps],
                                    [ep.support_y for ep in eps], recipe,
                                    generators=[rng(ep.seed, "episode", ep.index) for ep in eps],
                                    eval_xs=[ep.query_x for ep in eps], eval_ys=[ep.query_y for ep in eps], **kw)
    for e, (net, curve) in enumerate(alone):
        got = stacked.export(e, _init(eps[e]).double()).state_dict()
        for name, want in net.state_dict().items():
            torch.testing.assert_close(got[name], want, rtol=0, atol=1e-9, msg=f"episode {e}: {name}")
        assert curves[e] == curve
    moved = max(float((a - b).abs().max()) for a, b in zip(alone[0][0].state_dict().values(),
                                                            _init(eps[0]).double().state_dict().values(),
                                                            strict=True))
    assert moved > 1e-3  # training moved the weights far more than the tolerance


QUICK = {**PROFILE, "individual": {**PROFILE["individual"], "epochs": 2}}  # for tests of the dispatch only


def _scratch(profile: dict = PROFILE, stack: bool | None = None, device: str = "cpu"):
    m = methods.get("scratch", device)
    m.prepare(_textured(), method_settings(profile, m.name), cache=None)
    m.stack_episodes = stack
    return m


def test_scratch_stacked_results_equal_one_at_a_time():
    eps = episodes(_textured(), k_shot=5, n_query=4, n=4)
    eps[3].record_curve = False  # a table cell's episode: its own stack, final accuracy only
    alone = [_scratch(stack=False).run_episode(ep) for ep in eps]
    stacked = _scratch(stack=True).run_episodes(eps)
    assert [r.accuracy for r in stacked] == [r.accuracy for r in alone]
    assert [r.curve for r in stacked] == [r.curve for r in alone]
    assert stacked[3].curve is None and len(stacked[0].curve) == PROFILE["individual"]["epochs"]
    assert [r.params for r in stacked] == [r.params for r in alone]
    assert 0.5 < sum(r.accuracy for r in stacked) / len(stacked)  # it learned something to compare


def test_stacking_is_used_on_cuda_and_not_on_cpu_by_default(monkeypatch):
    assert not _scratch().uses_stacking()
    assert _scratch(stack=True).uses_stacking()
    gpu = methods.get("scratch", "cuda")  # a torch.device only: nothing runs on it here
    assert gpu.uses_stacking()
    gpu.stack_episodes = False
    assert not gpu.uses_stacking()

    calls = []
    monkeypatch.setattr(type(gpu), "_run_stack", lambda self, eps: calls.append(len(eps)) or
                        [EpisodeResult(accuracy=0.0) for _ in eps])
    m = _scratch(QUICK)
    eps = episodes(_textured(), k_shot=5, n_query=2, n=2)
    assert all(r.wall_s > 0 for r in m.run_episodes(eps)) and calls == []  # CPU: one at a time
    m.device = torch.device("cuda")
    m.run_episodes(eps)
    assert calls == [2]


def test_only_equal_shaped_episodes_are_stacked(monkeypatch):
    src = _textured()
    eps = [*episodes(src, k_shot=5, n_query=2, n=3), *episodes(src, k_shot=3, n_query=2, n=2, seed=2),
           *episodes(src, k_shot=5, n_query=3, n=1, seed=3)]
    order = [eps[i] for i in (0, 3, 1, 5, 4, 2)]  # interleaved shapes
    m = _scratch(QUICK, stack=True)
    m.stack_size = 2
    stacks = []
    real = type(m)._run_stack

    def spy(self, batch):
        stacks.append([(e.support_x.shape, e.query_x.shape) for e in batch])
        return real(self, batch)

    monkeypatch.setattr(type(m), "_run_stack", spy)
    got = m.run_episodes(order)
    assert all(len(set(s)) == 1 for s in stacks)  # every stack has one support and one query shape
    assert sorted(len(s) for s in stacks) == [1, 1, 2, 2]  # 3 of one shape -> 2 + 1 (stack_size 2)
    assert [r.accuracy for r in got] == [_scratch(QUICK, stack=False).run_episode(e).accuracy for e in order]


# --------------------------------------------------------------------------- learngene (EWC penalty)


def _gene() -> dict:
    """A learngene from a random collective network (no collective training: stacking is what is tested)."""
    torch.manual_seed(0)
    net = CollectiveNet(5, 32, width=0.125)
    return extract_learngene(AncestorState(net.state_dict(), tuple(net.widths), "test"), 3, "top")


def _learngene(stack: bool | None, **settings) -> methods.Method:
    m = methods.get("learngene")
    m.s = LearngeneSettings(**{"width": 0.125, "epochs": 4, "lr": 0.01, "batch_size": 8, "crop_padding": 2,
                               "fisher_samples": 16, "ewc_lambda": 1000.0, **settings})
    m.image_size, m.gene, m.gene_source, m._carry = 16, _gene(), "test", None
    m.stack_episodes = stack
    return m


def test_learngene_ewc_stacked_weights_equal_one_at_a_time_float64():
    eps = episodes(_textured(), k_shot=5, n_query=3, n=3)
    gene = _gene()
    recipe = Recipe(epochs=2, lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=8, crop_padding=2,
                    last_batch="balanced")
    kw = {"device": torch.device("cpu")}

    def build(ep) -> IndividualNet:
        torch.manual_seed(derived_seed(ep.seed, "episode-init", ep.index))
        return build_individual(gene, ep.n_way, 16, 0.125).double()

    names = gene_param_names(build(eps[0]))
    fishers = [{k: torch.rand_like(build(eps[0]).state_dict()[k], generator=rng(i, "f")) * 0.01 for k in names}
               for i in range(len(eps))]  # F <= 0.01: lambda * F * lr < 1, a strong but stable pull
    alone = []
    for ep, fisher in zip(eps, fishers, strict=True):
        model = _Float64(build(ep))
        penalty = EWCPenalty(model.net, fisher, 1000.0)
        train_supervised(model, ep.support_x, ep.support_y, recipe, generator=rng(ep.seed, "episode", ep.index),
                         extra_loss=lambda _, p=penalty, n=model.net: p(n), **kw)
        alone.append((model.net, float(penalty(model.net).detach())))
    stacked_penalty: list[EWCPenalty] = []
    _, stacked = train_stacked(
        [build(ep) for ep in eps], [ep.support_x for ep in eps], [ep.support_y for ep in eps], recipe,
        generators=[rng(ep.seed, "episode", ep.index) for ep in eps], eval_xs=[ep.query_x for ep in eps],
        eval_ys=[ep.query_y for ep in eps], curve=False,
        on_stack=lambda m: stacked_penalty.append(EWCPenalty(m, stack_named(fishers), 1000.0)),
        extra_loss=lambda m: stacked_penalty[0](m), **kw)
    finals = stacked_penalty[0].per_episode(stacked, len(eps))
    for e, (net, pen) in enumerate(alone):
        got = stacked.export(e, build(eps[e])).state_dict()
        for name, want in net.state_dict().items():
            torch.testing.assert_close(got[name], want, rtol=0, atol=1e-9, msg=f"episode {e}: {name}")
        assert pen > 0 and finals[e] == pytest.approx(pen, rel=1e-9)


def test_learngene_stacked_results_equal_one_at_a_time():
    eps = episodes(_textured(), k_shot=5, n_query=4, n=3)
    alone = [_learngene(False).run_episode(ep) for ep in eps]
    stacked = _learngene(True).run_episodes(eps)
    assert [r.accuracy for r in stacked] == [r.accuracy for r in alone]
    assert [r.curve for r in stacked] == [r.curve for r in alone]
    for a, s in zip(alone, stacked, strict=True):
        assert s.params == a.params
        assert s.extra.pop("ewc_penalty_final") == pytest.approx(a.extra.pop("ewc_penalty_final"), rel=1e-3)
        assert s.extra == a.extra
    assert sum(r.accuracy for r in stacked) / len(stacked) > 0.5


def test_learngene_with_the_official_leak_is_never_stacked():
    assert _learngene(True).uses_stacking() and not _learngene(None).uses_stacking()
    assert not _learngene(True, reuse_across_tasks=True).uses_stacking()  # episodes depend on each other


def test_runner_rows_are_the_same_stacked(tmp_path, monkeypatch):
    from bench.cell_env import Env, RunSpec, run_episodes
    from bench.profiles import load_profile, resolve

    env = Env(RunSpec("synthetic", "", 32, resolve(load_profile("smoke"), image_size=32), str(tmp_path)))
    alone = run_episodes(env, "scratch", "novel", 5, 0, 2, options={"epochs": 2})
    cls = methods.get("scratch").__class__
    stacks, real = [], cls._run_stack
    monkeypatch.setattr(cls, "stack_episodes", True)
    monkeypatch.setattr(cls, "_run_stack", lambda self, eps: stacks.append(len(eps)) or real(self, eps))
    env._methods.clear()
    stacked = run_episodes(env, "scratch", "novel", 5, 0, 2, options={"epochs": 2})
    assert stacks == [2]  # the cell's two episodes ran as one stack

    def strip(rows: list[dict]) -> list[dict]:
        return [r for r in rows if r["metric"] != "wall_s"]

    assert strip(stacked) == strip(alone) and len(stacked) == len(alone)
    assert {r["metric"] for r in alone} >= {"accuracy", "curve", "params", "wall_s"}
