"""Issue 22's control ancestors (`joint`, `pretrained-individual`, `random`, `random-bn`) and their probes.

Guards: each builder is deterministic and cached by its settings (built twice: trained once; a fresh
cache: the same tensors); the jointly trained network has the continual run's final widths, sees
only base-class train images (a spy on the images it reads) and exactly the continual run's image
passes; the pre-trained individual is the fine-tuning baseline's own artifact (no second build) with
its 7 conv blocks under `blocks.0..6`; the recalibrated random network has the random one's weights
and BN statistics of base images; the per-ancestor probes run through the ancestor's blocks.
"""
from __future__ import annotations

import pytest
import torch
from test_ancestors import _equal, tiny_profile

from bench.profiles import method_settings
from methods import registry
from methods.artifacts import ArtifactCache
from methods.base import EpisodeData, SourceData
from methods.learngene import controls
from methods.learngene.probe import AncestorTrunk
from methods.learngene.stages import ANCESTORS, collective_artifact, continual_passes
from methods.training import predict
from tasks.datasets import make_synthetic
from tasks.episodes import sample_episodes
from tasks.imageset import TRAIN_POOL
from tasks.splits import seeded_split

torch.set_num_threads(1)


def study_profile() -> dict:
    prof = tiny_profile()
    prof["methods"].setdefault("finetune", {}).update(pretrain_epochs=1)
    return prof


@pytest.fixture(scope="module")
def source() -> SourceData:
    data = make_synthetic(num_classes=30, train_per_class=20, test_per_class=10, seed=0)
    return SourceData(data, seeded_split(data, 0), seed=0, dataset="synthetic")


@pytest.mark.parametrize(("name", "change"), [("joint", {"collective.lr": 0.05}),
                                              ("pretrained-individual", {"pretrain.pretrain_epochs": 2}),
                                              ("random", {"collective.width": 0.25})])
def test_control_ancestor_is_deterministic_and_cached_by_its_settings(name, change, source, tmp_path):
    s = method_settings(study_profile(), "learngene", {"ancestor": name})
    cache = ArtifactCache(tmp_path / "a")
    first = ANCESTORS[name](source, s, cache, "cpu")
    built = list(cache.built)
    assert len(built) == 1 and first.widths and first.pool_after is not None
    assert all(f"blocks.{i}.0.weight" in first.state for i in range(len(first.widths)))
    assert _equal(first, ANCESTORS[name](source, s, cache, "cpu")) and cache.built == built  # cached: built once
    assert _equal(first, ANCESTORS[name](source, s, ArtifactCache(tmp_path / "b"), "cpu"))  # deterministic
    ANCESTORS[name](source, method_settings(study_profile(), "learngene", {"ancestor": name, **change}), cache, "cpu")
    assert len(cache.built) == 2  # another setting that changes it: another entry


def test_joint_sees_only_base_train_images_for_the_continual_runs_passes(source, tmp_path, monkeypatch):
    s = method_settings(study_profile(), "learngene", {"ancestor": "joint", "collective.epochs": 4})
    seen: list[torch.Tensor] = []
    real = controls._images
    monkeypatch.setattr(controls, "_images", lambda src, idx: (seen.append(idx.clone()), real(src, idx))[1])
    cache = ArtifactCache(tmp_path)
    joint = ANCESTORS["joint"](source, s, cache, "cpu")
    allowed = set(torch.cat([source.data.indices(c, TRAIN_POOL) for c in source.base_ids]).tolist())
    read = torch.cat(seen)
    assert set(read.tolist()) <= allowed  # never open-world or novel classes, never a test image
    passes = continual_passes(source, s.collective)
    assert len(read) == passes and passes > len(allowed) and passes % len(allowed)  # 1.x epochs: exact passes
    continual = collective_artifact(source, s.collective, cache, "cpu")
    assert list(joint.widths) == continual["final"]["widths"] == controls.final_widths(s.collective)


def test_random_bn_is_the_random_network_with_base_image_bn_statistics(source, tmp_path):
    s = method_settings(study_profile(), "learngene", {"ancestor": "random-bn"})
    cache = ArtifactCache(tmp_path)
    bn = ANCESTORS["random-bn"](source, s, cache, "cpu")
    built = list(cache.built)
    raw = ANCESTORS["random"](source, method_settings(study_profile(), "learngene", {"ancestor": "random"}), cache, "cpu")
    assert cache.built == built and len(built) == 2  # the random network, then its recalibration: each once
    for k, v in raw.state.items():
        if k.endswith((".0.weight", ".0.bias", ".1.weight", ".1.bias")):
            assert torch.equal(bn.state[k], v), k  # weights untouched
    for i in range(len(bn.widths)):
        mean, var = bn.state[f"blocks.{i}.1.running_mean"], bn.state[f"blocks.{i}.1.running_var"]
        assert torch.equal(raw.state[f"blocks.{i}.1.running_mean"], torch.zeros_like(mean))  # fresh: 0 / 1
        assert mean.abs().max() > 0 and not torch.allclose(var, torch.ones_like(var))  # now of base images
    assert _equal(bn, ANCESTORS["random-bn"](source, s, ArtifactCache(tmp_path / "b"), "cpu"))  # deterministic


def test_pretrained_individual_is_the_fine_tuning_baselines_network(source, tmp_path):
    prof = study_profile()
    cache = ArtifactCache(tmp_path)
    ft = registry.get("finetune")
    ft.prepare(source, method_settings(prof, "finetune"), cache)
    built = list(cache.built)
    anc = ANCESTORS["pretrained-individual"](source, method_settings(prof, "learngene-pretrained"), cache, "cpu")
    assert cache.built == built  # shared, not retrained
    assert len(anc.widths) == 7 and anc.pool_after == (0, 1, 2, 6)
    x = source.data.images[:8]
    assert torch.equal(predict(AncestorTrunk(anc), x, torch.device("cpu")), predict(ft.encoder, x, torch.device("cpu")))


@pytest.mark.parametrize("name", ["ancestor-ncm-joint", "ancestor-ncm-pretrained", "ancestor-ncm-random",
                                  "ancestor-ncm-random-bn"])
def test_each_ancestor_probe_classifies_novel_queries_through_its_blocks(name, source, tmp_path):
    prof = study_profile()
    m = registry.get(name)
    s = method_settings(prof, name)
    m.prepare(source, s, ArtifactCache(tmp_path))
    anc = ANCESTORS[s.ancestor](source, s, ArtifactCache(tmp_path), "cpu")
    assert all(torch.equal(m.trunk.state_dict()[k], v) for k, v in anc.state.items() if k.startswith("blocks."))
    e = sample_episodes(source.data, source.novel_ids, 5, 5, 5, 1, 0)[0]
    d = source.data
    res = m.run_episode(EpisodeData(d.images[e.support], e.support_labels, d.images[e.query], e.query_labels, 5, 5, 0))
    assert 0.0 <= res.accuracy <= 1.0
