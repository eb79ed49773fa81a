"""Issue 22's inheritance matrix: k = 0..7 inherited blocks, frozen genes, matched resolution.

Guards: k = 0 is scratch exactly on the same episode (same weights before and after training, same
accuracy, curve and parameter count, the EWC penalty skipped); a frozen learngene's inherited
weights and BatchNorm buffers are bit-identical after training while the fresh blocks train; k
inherited blocks leave 7 - k fresh front blocks for every position; only the pre-trained individual
network can be inherited whole (full fine-tuning); each result records the resolution every
inherited block was trained at and runs at, and `match_resolution` removes the mismatch; pools
inside the gene train the same stacked (CUDA's path) as alone, and a frozen gene is never stacked.
"""
from __future__ import annotations

import pytest
import torch
from test_study_ancestors import study_profile

from bench.profiles import method_settings
from methods import registry
from methods.artifacts import ArtifactCache
from methods.backbones import count_params
from methods.base import EpisodeData, SourceData
from tasks.datasets import make_synthetic
from tasks.episodes import sample_episodes
from tasks.splits import seeded_split

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    data = make_synthetic(num_classes=30, train_per_class=20, test_per_class=10, seed=0)
    src = SourceData(data, seeded_split(data, 0), seed=0, dataset="synthetic")
    e = sample_episodes(data, src.novel_ids, 5, 5, 5, 1, 0)[0]
    ep = EpisodeData(data.images[e.support], e.support_labels, data.images[e.query], e.query_labels, 5, 5, 0, 0)
    return src, ArtifactCache(tmp_path_factory.mktemp("artifacts")), ep


def prepared(setup, name: str, **options):
    src, cache, _ = setup
    m = registry.get(name)
    m.prepare(src, method_settings(study_profile(), name, options), cache)
    models: list[torch.nn.Module] = []
    new_model = m.new_model
    m.new_model = lambda episode: models.append(new_model(episode)) or models[-1]  # keep the episode's network
    return m, models


def test_k0_is_scratch_exactly_on_the_same_episode(setup):
    ep = setup[2]
    lg, lg_models = prepared(setup, "learngene", inherit_blocks=0)
    sc, sc_models = prepared(setup, "scratch")
    torch.manual_seed(0)
    before = [p.detach().clone() for p in lg.individual_model(5).parameters()]
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(before, sc.new_model(ep).parameters(), strict=True))
    r_lg, r_sc = lg.run_episode(ep), sc.run_episode(ep)
    assert (r_lg.accuracy, r_lg.curve, r_lg.params) == (r_sc.accuracy, r_sc.curve, r_sc.params)
    assert "ewc_penalty_final" not in r_lg.extra and r_lg.extra["gene_blocks"] == []
    after_lg, after_sc = lg_models[-1].parameters(), sc_models[-1].parameters()
    assert all(torch.equal(a, b) for a, b in zip(after_lg, after_sc, strict=True))  # trained identically


def test_frozen_gene_keeps_inherited_weights_and_bn_statistics_bit_identical(setup):
    ep = setup[2]
    m, models = prepared(setup, "learngene-random", frozen_gene=True, epochs=3)
    res = m.run_episode(ep)
    net = models[-1]
    for block, inherited in zip(net.gene_blocks(), m.gene["blocks"], strict=True):
        for k, v in block.state_dict().items():
            assert torch.equal(v, inherited[k]), k  # weights, running mean/var and batch count
    assert int(net.front[0][1].num_batches_tracked) > 0  # the fresh blocks did train
    assert "ewc_penalty_final" not in res.extra and res.extra["frozen_gene"] is True
    trained, t_models = prepared(setup, "learngene-random", epochs=3)  # the control: unfrozen blocks move
    trained.run_episode(ep)
    moved = t_models[-1].gene_blocks()[0].state_dict()
    assert not torch.equal(moved["0.weight"], trained.gene["blocks"][0]["0.weight"])


@pytest.mark.parametrize("k", range(0, 7))
@pytest.mark.parametrize("position", ["top", "middle", "front"])
def test_k_inherited_blocks_leave_7_minus_k_fresh_front_blocks(setup, k, position):
    m, models = prepared(setup, "learngene-random", inherit_blocks=k, inherit_position=position, epochs=1)
    res = m.run_episode(setup[2])
    net = models[-1]
    assert res.extra["fresh_front_blocks"] == 7 - k and len(net.gene_blocks()) == k
    assert res.params == count_params(net) and 0.0 <= res.accuracy <= 1.0


def test_all_seven_blocks_only_from_the_pretrained_individual(setup):
    src, cache, ep = setup
    with pytest.raises(ValueError, match="keep at least one fresh front block|no fresh front block"):
        m, _ = prepared(setup, "learngene-random", inherit_blocks=7)
        m.individual_model(5)
    full, models = prepared(setup, "finetune-full", epochs=1)
    res = full.run_episode(ep)
    assert res.extra["fresh_front_blocks"] == 0 and len(models[-1].gene_blocks()) == 7
    assert res.extra["gene_runs_px"] == res.extra["gene_trained_px"] == [32, 16, 8, 4, 4, 4, 4]


def test_resolution_each_inherited_block_was_trained_at_and_runs_at(setup):
    ep = setup[2]
    top, _ = prepared(setup, "learngene-random", epochs=1)
    r = top.run_episode(ep).extra
    assert (r["gene_trained_px"], r["gene_runs_px"]) == ([2, 2, 2], [4, 4, 4])  # the confound at 32 px
    matched, _ = prepared(setup, "learngene-random", epochs=1, match_resolution=True)
    assert matched.run_episode(ep).extra["gene_runs_px"] == [2, 2, 2]
    middle, _ = prepared(setup, "learngene-random", epochs=1, match_resolution=True, inherit_position="middle")
    r = middle.run_episode(ep).extra
    assert r["gene_trained_px"] == r["gene_runs_px"] == [8, 8, 4]  # the ancestor's pool after block 7 (conv 7)


def test_pools_inside_the_gene_stack_as_they_train_alone_and_frozen_genes_never_stack(setup):
    """k = 5 with matched pools puts pools inside `gene`: the stacked path (CUDA's) gives the same results
    as one episode at a time; a frozen gene or an empty one is never stacked (a stack trains every block)."""
    src, _, _ = setup
    d = src.data
    eps = [EpisodeData(d.images[e.support], e.support_labels, d.images[e.query], e.query_labels, 5, 5, 0, e.index)
           for e in sample_episodes(d, src.novel_ids, 5, 5, 5, 2, 0)]
    results = []
    for stack in (False, True):
        m, _ = prepared(setup, "learngene-random", inherit_blocks=5, match_resolution=True, epochs=2)
        m.stack_episodes = stack
        assert m.uses_stacking() == stack
        results.append(m.run_episodes(eps))
    assert [r.accuracy for r in results[0]] == [r.accuracy for r in results[1]]
    assert [r.params for r in results[0]] == [r.params for r in results[1]]
    for options in ({"frozen_gene": True}, {"inherit_blocks": 0}):
        m, _ = prepared(setup, "learngene-random", **options)
        m.stack_episodes = True
        assert not m.uses_stacking(), options
