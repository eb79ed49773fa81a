"""Learngene end to end on tiny synthetic data: inheritance, fresh start per episode, accuracy sanity,
variants, open-world rows and ρ rows through the artifact cache."""
from __future__ import annotations

import copy
import shutil
import tomllib
from pathlib import Path

import pytest
import torch

from bench.experiments.fig3 import rank_layers_by_trend
from bench.experiments.fig3 import run as fig3_run
from bench.experiments.table2 import _recognition_rows
from bench.profiles import collective_settings, method_settings
from methods import registry
from methods.artifacts import ArtifactCache
from methods.backbones import CollectiveNet
from methods.base import EpisodeData, SourceData
from methods.learngene.collective import ContinualLearner
from methods.learngene.inherit import build_individual, extract_learngene, gene_blocks
from methods.learngene.stages import AncestorState, collective_artifact, open_world_artifact
from methods.settings import CollectiveSettings
from tasks.datasets import make_synthetic
from tasks.episodes import sample_episodes
from tasks.splits import seeded_split

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def tiny_profile() -> dict:
    prof = tomllib.loads((ROOT / "bench/profiles/smoke.toml").read_text())
    prof["collective"].update(tasks=3, epochs=2, images_per_class=20, test_per_class=5, widen_until=2,
                              learngene_task=2, checkpoints=[1, 2], lr=0.01)
    prof["experiments"]["fig6"]["checkpoints"] = [1]
    prof["individual"].update(epochs=15, lr=0.005, width=0.125)
    return prof


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    data = make_synthetic(num_classes=30, train_per_class=30, test_per_class=10, seed=0)
    src = SourceData(data, seeded_split(data, 0), seed=0, dataset="synthetic")
    cache = ArtifactCache(tmp_path_factory.mktemp("artifacts"))
    prof = tiny_profile()
    ep = sample_episodes(data, src.novel_ids, 5, 20, 10, 2, 0)
    eps = [EpisodeData(data.images[e.support], e.support_labels, data.images[e.query], e.query_labels, 5, 20, 0, i)
           for i, e in enumerate(ep)]
    return src, cache, prof, eps


def test_gene_positions():
    assert gene_blocks(13, 3, "top") == [10, 11, 12]
    assert gene_blocks(13, 3, "middle") == [5, 6, 7]
    assert gene_blocks(13, 3, "front") == [0, 1, 2]
    with pytest.raises(ValueError):
        gene_blocks(13, 3, "side")


@pytest.mark.parametrize("position", ["top", "middle", "front"])
def test_inheritance_copies_exactly_the_chosen_blocks(position):
    torch.manual_seed(0)
    net = CollectiveNet(5, 32, width=0.125)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
    entry = ContinualLearner(net, make_synthetic(5, 2, 1), CollectiveSettings(), device=torch.device("cpu"),
                             seed=0).state()
    gene = extract_learngene(AncestorState.of_entry(entry, "test"), 3, position)
    ind = build_individual(gene, 5, 32, 0.125)
    for block, i in zip(ind.gene, gene["indices"], strict=True):
        src = net.blocks[i].state_dict()
        for k, v in block.state_dict().items():
            assert torch.equal(v, src[k]), (position, i, k)
    assert ind.front[-1][0].out_channels == (net.widths[gene["indices"][0] - 1] if position != "front" else 3)


def test_each_episode_starts_from_the_same_learngene(setup):
    src, cache, prof, eps = setup
    m = registry.get("learngene")
    m.prepare(src, method_settings(prof, m.name), cache)
    before = copy.deepcopy(m.gene)
    r1 = m.run_episode(eps[0])
    for a, b in zip(before["blocks"], m.gene["blocks"], strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)  # prepared state untouched
    assert r1.extra["gene_blocks"] == [11, 12, 13] and r1.extra["ewc_penalty_final"] > 0
    # the same episode again gives the same result (fresh front/head seeded by the episode, same learngene)
    assert m.run_episode(eps[0]).curve == r1.curve


def test_easy_task_high_accuracy_and_shuffled_labels_near_chance(setup):
    src, cache, prof, eps = setup
    m = registry.get("learngene")
    m.prepare(src, method_settings(prof, m.name), cache)
    r = m.run_episode(eps[0])
    assert max(r.curve) >= 0.9 and len(r.curve) == prof["individual"]["epochs"]
    shuffled = copy.copy(eps[0])
    shuffled.support_y = eps[0].support_y[torch.randperm(100, generator=torch.Generator().manual_seed(0))]
    r = m.run_episode(shuffled)
    assert r.curve[-1] <= 0.5


def _leaking_learngene(setup):
    """learngene-ewc0 with the official carry-over, prepared, on a 1-epoch profile."""
    src, cache, prof, eps = setup
    prof = copy.deepcopy(prof)
    prof["individual"]["epochs"] = 1
    leak = registry.get("learngene-ewc0")
    leak.prepare(src, method_settings(prof, leak.name, {"reuse_across_tasks": True}), cache)
    return leak, prof, eps


def test_reuse_across_tasks_reproduces_the_official_leak(setup):
    leak, prof, eps = _leaking_learngene(setup)
    leak.run_episode(eps[0])
    carried = {k: v.clone() for k, v in leak._carry.state_dict().items()}
    fresh = build_individual(leak.gene, 5, 32, 0.125)
    assert not torch.equal(carried["gene.0.0.weight"], fresh.gene[0][0].weight.detach())  # trained, not reset


def test_variants_and_checkpoint_option(setup):
    src, cache, prof, eps = setup
    assert {"learngene", "learngene-ewc0", "learngene-ewc5000", "learngene-front", "learngene-openworld",
            "learngene-official"} <= set(registry.names())
    m = registry.get("learngene")
    m.prepare(src, method_settings(prof, m.name, {"checkpoint": 1}), cache)
    assert m.gene_source == "task 1"
    with pytest.raises(ValueError, match="no collective checkpoint"):
        registry.get("learngene").prepare(src, method_settings(prof, "learngene", {"checkpoint": 0}), cache)
    mid = registry.get("learngene-middle")
    mid.prepare(src, method_settings(prof, mid.name, {"collective.uniform_width": 32}), cache)  # as Figure 6b's cells
    assert mid.gene["indices"] == [5, 6, 7] and len(set(mid.gene["widths"])) == 1  # uniform network
    n_built = len(cache.built)
    collective_artifact(src, collective_settings(prof), cache, "cpu")  # shared, not retrained
    assert len(cache.built) == n_built


class _Env:
    """The part of `bench.cell_env.Env` the Figure 3 and Table 2 rows read."""

    def __init__(self, src, cache, prof):
        self.spec = type("Spec", (), {"profile": prof})()
        self.cache, self.device, self._src = cache, torch.device("cpu"), src

    def source(self, seed):
        return self._src


def test_rows_for_experiments(setup):
    src, cache, prof, _ = setup
    art = collective_artifact(src, collective_settings(prof), cache, "cpu")
    assert len(art["rho"]) == 3 * 13 * 2 and {"task", "layer", "mode", "sigma", "rho"} <= set(art["rho"][0])
    assert all(len(r["per_epoch"]) == 2 for r in art["rho"])
    ranked = rank_layers_by_trend(art["rho"], "abs")
    assert [r["rank"] for r in ranked] == list(range(1, 14))
    rows = fig3_run(type("Cell", (), {"params": {"seed": 0}})(), _Env(src, cache, prof))
    assert len([r for r in rows if r["metric"] == "collective_R"]) == 6
    assert {"collective_avg_acc", "collective_forgetting", "collective_bwt"} <= {r["metric"] for r in rows}
    ow = {r["metric"]: r for r in _recognition_rows(_Env(src, cache, prof), 0)}
    assert 0.0 <= ow["detection.auroc"]["value"] <= 1.0 and ow["detection.auroc"]["positive"] == "open-world"
    assert {"incremental.before.avg_acc", "incremental.after.avg_acc"} <= set(ow)


def test_official_leak_stays_inside_one_sequence_of_tasks(setup):
    """The carried weights restart at episode 0, so a cell's numbers never depend on which cells ran
    earlier in the same worker process (a real bug: process/Ray results varied with scheduling)."""
    leak, prof, eps = _leaking_learngene(setup)
    leak.run_episode(eps[0])
    first = leak.run_episode(eps[1]).curve
    leak.run_episode(eps[1])  # another cell's tasks run in between
    leak.run_episode(eps[0])
    again = leak.run_episode(eps[1]).curve
    assert first == again


def test_open_world_stage_does_not_depend_on_the_global_rng(setup, tmp_path):
    """The stage trains through dropout (global RNG): its artifact must not depend on what ran before
    in the process (found as a serial-vs-Ray difference)."""
    src, cache, prof, _ = setup
    collective_artifact(src, collective_settings(prof), cache, "cpu")  # shared, already trained
    finals = []
    for noise in (1, 2):
        root = tmp_path / f"ow{noise}"
        # the trained collective model is loaded from disk (not retrained, which would reseed)
        shutil.copytree(cache.root, root, ignore=shutil.ignore_patterns("learngene-openworld-*"))
        torch.manual_seed(noise)  # a different process history
        art = open_world_artifact(src, collective_settings(prof), ArtifactCache(root), "cpu")
        finals.append(art["final"]["state"])
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])


def test_collective_probes_read_the_checkpoint_or_a_random_trunk(setup):
    """collective-ncm embeds with exactly the learngene checkpoint's trunk; collective-ncm-random has
    the same widths but none of its weights; both classify by the nearest class mean."""
    from methods.learngene.collective import model_from_state
    from methods.training import predict

    src, cache, prof, eps = setup
    trained = registry.get("collective-ncm")
    trained.prepare(src, method_settings(prof, "collective-ncm"), cache)
    rand = registry.get("collective-ncm-random")
    rand.prepare(src, method_settings(prof, "collective-ncm-random"), cache)
    art = collective_artifact(src, method_settings(prof, "learngene").collective, cache, "cpu")
    ref = model_from_state(art["checkpoints"]["2"])
    blocks = {k: v for k, v in ref.state_dict().items() if k.startswith("blocks.")}
    assert trained.trunk.state_dict().keys() == blocks.keys()  # the conv trunk (the ancestor's blocks) only
    for k, v in blocks.items():
        assert torch.equal(trained.trunk.state_dict()[k], v), k
    x = eps[0].query_x  # the ancestor trunk embeds exactly as the checkpoint's own CollectiveNet.features
    assert torch.equal(predict(trained.trunk, x, trained.device), predict(ref, x, "cpu", forward=ref.features))
    conv = [k for k, v in ref.state_dict().items() if v.dim() == 4]
    assert [rand.trunk.net.state_dict()[k].shape for k in conv] == [ref.state_dict()[k].shape for k in conv]
    assert not any(torch.equal(rand.trunk.net.state_dict()[k], ref.state_dict()[k]) for k in conv)
    e = eps[0]
    zs, zq = predict(trained.trunk, e.support_x, trained.device), predict(trained.trunk, e.query_x, trained.device)
    means = torch.stack([zs[e.support_y == c].mean(0) for c in range(5)])
    expected = float((torch.cdist(zq.double(), means.double()).argmin(1) == e.query_y).double().mean())
    assert abs(trained.run_episode(e).accuracy - expected) < 1e-6


def test_recipe_checks_change_one_thing_and_stay_out_of_all(setup):
    src, cache, prof, eps = setup
    assert not {"learngene-genelr0.1", "learngene-genelr10", "learngene-bnreset"} & set(registry.names_in_all())
    assert "learngene" in registry.names_in_all()
    base = registry.get("learngene")
    base.prepare(src, method_settings(prof, "learngene"), cache)
    slow = registry.get("learngene-genelr0.1")
    slow.prepare(src, method_settings(prof, "learngene-genelr0.1"), cache)
    torch.manual_seed(0)
    net = slow.individual_model(5)
    groups = slow.optimizer_params(net)
    lr = slow.s.lr
    assert groups[1]["lr"] == pytest.approx(0.1 * lr) and "lr" not in groups[0]
    gene_ids = {id(p) for p in net.gene.parameters()}
    assert {id(p) for p in groups[1]["params"]} == gene_ids
    assert not gene_ids & {id(p) for p in groups[0]["params"]}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(net.parameters()))
    assert base.optimizer_params(net) is None
    reset = registry.get("learngene-bnreset")
    reset.prepare(src, method_settings(prof, "learngene-bnreset"), cache)
    torch.manual_seed(0)
    kept, fresh = base.individual_model(5), reset.individual_model(5)
    bn_kept = [m for m in kept.gene.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    bn_fresh = [m for m in fresh.gene.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert any(not torch.equal(m.running_var, torch.ones_like(m.running_var)) for m in bn_kept)
    assert all(torch.equal(m.running_var, torch.ones_like(m.running_var)) and not m.running_mean.any() for m in bn_fresh)
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(bn_kept, bn_fresh, strict=True))  # γ inherited
    r_base, r_slow = base.run_episode(eps[0]), slow.run_episode(eps[0])
    assert r_base.accuracy != r_slow.accuracy or r_base.curve != r_slow.curve
