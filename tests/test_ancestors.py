"""Where a learngene comes from: the ancestor table (`methods.learngene.stages.ANCESTORS`).

Guards that each built-in ancestor builder is deterministic and cached by its settings (equal
settings: one build, then the cached state), that the ancestor field and nested overrides
("collective.width") are checked when a variant is registered (one-line errors with a "did you
mean"), and that a new ancestor is one builder plus one registration: a random-weight ancestor
added here runs on the smoke grid through the normal `bench run` path.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch
from cli_helpers import run

from bench.profiles import method_settings
from methods import registry
from methods.artifacts import ArtifactCache
from methods.backbones import CollectiveNet
from methods.base import SourceData
from methods.learngene import stages
from methods.learngene.method import Learngene
from methods.learngene.stages import ANCESTORS, AncestorState
from methods.settings import LearngeneSettings, SettingsError, to_json
from methods.training import derived_seed
from tasks.datasets import make_synthetic
from tasks.splits import seeded_split

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def tiny_profile() -> dict:
    prof = tomllib.loads((ROOT / "bench/profiles/smoke.toml").read_text())
    prof["collective"].update(tasks=3, epochs=1, images_per_class=10, test_per_class=5, widen_until=2,
                              learngene_task=2, checkpoints=[2])
    prof["experiments"]["fig6"]["checkpoints"] = []
    prof["individual"].update(width=0.125)
    return prof


@pytest.fixture(scope="module")
def source() -> SourceData:
    data = make_synthetic(num_classes=30, train_per_class=20, test_per_class=10, seed=0)
    return SourceData(data, seeded_split(data, 0), seed=0, dataset="synthetic")


def _equal(a: AncestorState, b: AncestorState) -> bool:
    return (a.widths, a.provenance, a.image_size) == (b.widths, b.provenance, b.image_size) and \
        a.state.keys() == b.state.keys() and all(torch.equal(a.state[k], b.state[k]) for k in a.state)


@pytest.mark.parametrize("name", ["continual", "continual-uniform", "open-world"])
def test_builtin_ancestor_is_deterministic_and_cached_by_its_settings(name, source, tmp_path):
    s = method_settings(tiny_profile(), "learngene", {"ancestor": name})
    cache = ArtifactCache(tmp_path / "a")
    first = ANCESTORS[name](source, s, cache, "cpu")
    built = list(cache.built)
    assert built and first.widths and all(f"blocks.{i}.0.weight" in first.state for i in range(len(first.widths)))
    again = ANCESTORS[name](source, s, cache, "cpu")
    assert cache.built == built  # equal settings: the cached entry, no second build
    assert _equal(first, again)
    fresh = ANCESTORS[name](source, s, ArtifactCache(tmp_path / "b"), "cpu")
    assert _equal(first, fresh)  # built again from nothing: the same tensors


def test_ancestor_field_and_nested_overrides_are_checked_at_registration():
    with pytest.raises(SettingsError, match=r"ancestor: unknown value 'open_world'; did you mean 'open-world'\?"):
        registry.register("learngene-bad", "x", family="learngene", settings=LearngeneSettings, ancestor="open_world")
    with pytest.raises(SettingsError, match=r"collective\.widht: unknown key; did you mean 'width'\?"):
        registry.register("learngene-bad", "x", family="learngene", settings=LearngeneSettings,
                          **{"collective.widht": 0.5})
    with pytest.raises(SettingsError, match=r"collective\.epochs: must be > 0"):
        registry.register("learngene-bad", "x", family="learngene", settings=LearngeneSettings,
                          **{"collective.epochs": 0})
    assert "learngene-bad" not in registry.names()
    msg = str(pytest.raises(SettingsError, registry.register, "learngene-bad", "x", family="learngene",
                            settings=LearngeneSettings, ancestor="xyz").value)
    assert "\n" not in msg and "known: continual, continual-uniform, open-world, joint, pretrained-individual, random" in msg


def test_nested_cell_option_changes_one_field_of_the_collective_settings():
    prof = tiny_profile()
    base = method_settings(prof, "learngene")
    s = method_settings(prof, "learngene", {"collective.width": 0.5, "collective.uniform_width": 16})
    assert (s.collective.width, s.collective.uniform_width) == (0.5, 16)
    changed = {k for k, v in to_json(s.collective).items() if to_json(base.collective)[k] != v}
    assert changed == {"width", "uniform_width"} and s.epochs == base.epochs


def random_ancestor(source: SourceData, s: LearngeneSettings, cache, device) -> AncestorState:
    """A throw-away ancestor: the collective network's base architecture with random weights (cached)."""
    key = {"source": source.fingerprint(), "width": s.collective.width}

    def build() -> dict:
        torch.manual_seed(derived_seed(source.seed, "random-ancestor"))
        net = CollectiveNet(5, source.data.image_size, width=s.collective.width)
        return {"state": {k: v.clone() for k, v in net.state_dict().items()}, "widths": list(net.widths),
                "image_size": source.data.image_size}

    return AncestorState.of_entry(cache.get_or_build("test-random-ancestor", key, build), "random weights")


@pytest.fixture
def random_variant():
    """`random` in the ancestor table and a learngene variant inheriting from it, both removed after."""
    registry.names()
    ANCESTORS["test-random"] = random_ancestor
    registry.register("learngene-random-test", "Learngene from a random-weight network (test)", family="learngene",
                      settings=LearngeneSettings, ancestor="test-random")(Learngene)
    yield "learngene-random-test"
    registry._REGISTRY.pop("learngene-random-test", None)
    ANCESTORS.pop("test-random", None)


def test_a_new_ancestor_runs_through_bench_run_on_the_smoke_grid(capsys, tmp_path, random_variant):
    results = tmp_path / "results"
    code, _, err = run(capsys, "run", "--method", random_variant, "--experiment", "table3", "--profile", "smoke",
                       "--dataset", "synthetic", "--results-dir", str(results), "--no-report")
    assert code == 0, err
    from bench.collect import collect

    acc = collect(results).query("metric == 'accuracy'")
    assert set(acc.method) == {random_variant} and len(acc) >= 2 and acc["value"].between(0, 100).all()
    assert list((results / "artifacts").glob("test-random-ancestor-*"))  # built through its own cached entry
    assert stages.ancestor_run("test-random") == "test-random"
