"""MatchingNet: the attention rule, FCE, and the method end to end on tiny data."""
from __future__ import annotations

import meta_helpers as H
import torch
import torch.nn.functional as F

from bench.profiles import method_settings
from methods import registry
from methods.matchingnet import FullContextEmbedding, attention, matching_probs


def test_attention_is_a_distribution_over_the_support():
    g = torch.Generator().manual_seed(0)
    fq, gs = torch.randn(13, 9, generator=g), torch.randn(20, 9, generator=g)
    for temperature in (1.0, 10.0, 100.0):
        a = attention(fq, gs, temperature)
        assert a.shape == (13, 20) and (a >= 0).all()
        torch.testing.assert_close(a.sum(1), torch.ones(13))
    p = matching_probs(fq, gs, torch.arange(5).repeat_interleave(4), 5, 10.0)
    torch.testing.assert_close(p.sum(1), torch.ones(13))


def test_well_separated_support_reproduces_one_nearest_neighbour():
    g = torch.Generator().manual_seed(1)
    gs = F.normalize(torch.randn(15, 32, generator=g), dim=1)  # nearly orthogonal directions
    ys = torch.randint(0, 5, (15,), generator=g)
    fq = gs[torch.randint(0, 15, (40,), generator=g)] + 0.05 * torch.randn(40, 32, generator=g)
    nn1 = ys[(F.normalize(fq, dim=1) @ gs.T).argmax(1)]
    assert torch.equal(matching_probs(fq, gs, ys, 5, temperature=50.0).argmax(1), nn1)


def test_fce_keeps_shapes_and_depends_on_the_whole_support():
    torch.manual_seed(0)
    fce = FullContextEmbedding(8, steps=3)
    zs, zq = torch.randn(10, 8), torch.randn(4, 8)
    gs = fce.support(zs)
    assert gs.shape == zs.shape and fce.query(zq, gs).shape == zq.shape
    zs2 = zs.clone()
    zs2[-1] += 1.0  # changing one support point moves every context embedding (bidirectional LSTM)
    assert not torch.allclose(fce.support(zs2)[0], gs[0])


def test_matchingnet_separates_easy_classes_and_fails_on_shuffled_labels(tmp_path):
    src = H.source()
    for fce in (False, True):
        prof = H.profile("matchingnet", fce=fce)
        m = registry.get("matchingnet")
        m.prepare(src, method_settings(prof, m.name), H.cache(tmp_path / str(fce)))
        before = H.state_snapshot(m.net)
        assert H.mean_accuracy(m, H.episodes(src, n=2), prof) > 0.9
        assert H.mean_accuracy(m, H.episodes(src, n=2, shuffle_labels=True), prof) < 0.45
        assert H.same_state(before, H.state_snapshot(m.net))
