"""ProtoNet: the prototype rule itself, and the method end to end on tiny data."""
from __future__ import annotations

import meta_helpers as H
import torch

from bench.profiles import method_settings
from methods import registry
from methods.protonet import prototype_logits, squared_distances


def test_identity_features_equal_nearest_class_mean():
    g = torch.Generator().manual_seed(0)
    zs = torch.randn(5 * 4, 7, generator=g, dtype=torch.float64)
    ys = torch.arange(5).repeat(4)  # interleaved, not class-major: the rule must not rely on order
    zq = torch.randn(40, 7, generator=g, dtype=torch.float64)
    logits = prototype_logits(zs, ys, zq, 5)
    means = torch.stack([zs[ys == k].mean(0) for k in range(5)])
    brute = torch.tensor([[float(((q - m) ** 2).sum()) for m in means] for q in zq], dtype=torch.float64)
    torch.testing.assert_close(logits, -brute)  # squared Euclidean, not plain distance
    assert torch.equal(logits.argmax(1), brute.argmin(1))


def test_squared_distances_never_negative_for_identical_points():
    z = torch.randn(6, 33) * 1e3
    assert (squared_distances(z, z).diagonal() >= 0).all()


def test_protonet_separates_easy_classes_and_fails_on_shuffled_labels(tmp_path):
    src = H.source()
    m = registry.get("protonet")
    m.prepare(src, method_settings(H.profile(), m.name), H.cache(tmp_path))
    assert H.mean_accuracy(m, H.episodes(src, n=2), H.profile()) > 0.9
    assert H.mean_accuracy(m, H.episodes(src, n=2, shuffle_labels=True), H.profile()) < 0.45


def test_protonet_episode_is_pure_and_weights_are_cached(tmp_path):
    src = H.source()
    cache = H.cache(tmp_path)
    m = registry.get("protonet")
    m.prepare(src, method_settings(H.profile(), m.name), cache)
    before = H.state_snapshot(m.encoder)
    ep = H.episodes(src, n=1)[0]
    a, b = m.run_episode(ep), m.run_episode(ep)
    assert a.accuracy == b.accuracy and H.same_state(before, H.state_snapshot(m.encoder))
    again = registry.get("protonet")
    again.prepare(src, method_settings(H.profile(), again.name), cache)  # loads, does not retrain
    assert len(cache.built) == 1 and H.same_state(before, H.state_snapshot(again.encoder))


def test_random_ncm_is_nearest_class_mean_on_the_untrained_trunk(tmp_path):
    """The floor row: no meta-training step touches the weights (only BN running statistics are
    re-estimated), and its prediction is the nearest class mean of the trunk's embeddings."""
    from methods.episodic import derived_seed, seeded
    from methods.training import predict

    src = H.source()
    m = registry.get("random-ncm")
    settings = method_settings(H.profile(), m.name)
    assert settings.meta_iterations == 0
    m.prepare(src, settings, H.cache(tmp_path))
    with seeded(derived_seed(src.seed, m.family)):
        fresh = m.build(src.data.image_size, settings)
    for (name, p), q in zip(m.encoder.named_parameters(), fresh.parameters(), strict=True):
        assert torch.equal(p.detach().cpu(), q.detach()), f"{name} moved: the floor must stay untrained"
    ep = H.episodes(src, n=1)[0]
    zs = predict(m.encoder, ep.support_x, m.device).double()
    zq = predict(m.encoder, ep.query_x, m.device).double()
    means = torch.stack([zs[ep.support_y == k].mean(0) for k in range(ep.n_way)])
    expected = float((torch.cdist(zq, means).argmin(1) == ep.query_y).double().mean())
    assert abs(m.run_episode(ep).accuracy - expected) < 1e-6
