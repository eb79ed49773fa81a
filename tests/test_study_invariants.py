"""Issue 22's study must not change a single existing cell or the default run.

Guards: (a) the settings JSON (part of every cell's key) of every learngene-settings variant that
existed before the study, under the smoke, quick and paper profiles and with Figure 6's options,
is byte-identical to the JSON computed at commit 28118af (tests/fixtures/learngene_settings_head.json);
the study's new fields are stored only when they matter. (b) Scratch's and learngene's individual
networks are created in the same order, so a fixed seed gives the very same weights as at that
commit (tests/fixtures/individual_init_head.json). (c) `--method all` does not grow: every study
variant is out of it and of every paper experiment.
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import torch

from bench.profiles import method_settings
from methods import registry
from methods.backbones import CollectiveNet, IndividualNet
from methods.learngene.inherit import build_individual, extract_learngene
from methods.learngene.stages import AncestorState
from methods.pretrain import pretrain_key
from methods.settings import replace, to_json

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
STUDY = {"learngene-continual", "learngene-joint", "learngene-pretrained", "learngene-random", "learngene-random-bn",
         "finetune-full", "ancestor-ncm-joint", "ancestor-ncm-pretrained", "ancestor-ncm-random", "ancestor-ncm-random-bn"}
OPTIONS = {"": None, "checkpoint": {"checkpoint": 2}, "uniform": {"collective.uniform_width": 64}}


def _profile(name: str) -> dict:
    return tomllib.loads((ROOT / f"bench/profiles/{name}.toml").read_text())


def test_settings_json_of_every_earlier_learngene_variant_is_byte_identical():
    head = json.loads((FIXTURES / "learngene_settings_head.json").read_text())["settings"]
    names = {key.split("/")[1] for key in head}
    assert names == {n for n in registry.names() if registry.entry(n).settings is registry.entry("learngene").settings
                     and n not in STUDY}  # the fixture covers every earlier variant
    profiles = {p: _profile(p) for p in ("smoke", "quick", "paper")}
    for key, expected in head.items():
        prof, name, opt = key.split("/")
        now = json.dumps(to_json(method_settings(profiles[prof], name, OPTIONS[opt])))
        if expected.startswith("sha256:"):
            assert "sha256:" + hashlib.sha256(now.encode()).hexdigest() == expected, key
        else:
            assert now == expected, key


def test_new_fields_are_stored_only_when_they_matter():
    prof = _profile("quick")
    s = method_settings(prof, "learngene")
    stored = to_json(s)
    assert not {"frozen_gene", "match_resolution", "pretrain"} & set(stored)
    changed = to_json(replace(s, "test", frozen_gene=True, match_resolution=True))
    assert changed["frozen_gene"] is True and changed["match_resolution"] is True
    assert "pretrain" in to_json(method_settings(prof, "learngene-pretrained"))
    assert "pretrain" not in to_json(method_settings(prof, "learngene-joint"))


def test_pretrained_ancestor_reads_the_fine_tuning_baselines_artifact_key():
    """Same key as `finetune`'s pre-training, so the artifact is shared, never trained twice."""
    from methods.base import SourceData
    from tasks.datasets import make_synthetic
    from tasks.splits import seeded_split

    data = make_synthetic(num_classes=20, train_per_class=4, test_per_class=2, seed=0)
    src = SourceData(data, seeded_split(data, 0), seed=0, dataset="synthetic")
    for prof in (_profile("quick"), _profile("smoke")):
        mine = method_settings(prof, "learngene-pretrained").pretrain
        assert pretrain_key(src, mine, False) == pretrain_key(src, method_settings(prof, "finetune"), False)


def _digest(net: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def test_individual_networks_are_initialised_exactly_as_before():
    expected = json.loads((FIXTURES / "individual_init_head.json").read_text())["digests"]
    now = {}
    for size in (32, 64):
        for width in (0.125, 0.25):
            torch.manual_seed(7)
            now[f"scratch/{size}/{width}"] = _digest(IndividualNet(5, size, width=width))
            torch.manual_seed(3)
            anc = CollectiveNet(5, size, width=width)
            st = AncestorState({k: v.clone() for k, v in anc.state_dict().items()}, tuple(anc.widths), "t", size)
            for pos in ("top", "middle", "front"):
                torch.manual_seed(7)
                now[f"learngene/{size}/{width}/{pos}"] = _digest(build_individual(extract_learngene(st, 3, pos), 5,
                                                                                  size, width))
    assert now == expected


def test_method_all_does_not_grow():
    assert STUDY <= set(registry.names())
    assert not STUDY & set(registry.names_in_all()) and not STUDY & set(registry.names_not_in_all())  # nor checks
    for name in STUDY:
        assert registry.facts(name).experiments == {"why"} and not registry.facts(name).runs_with, name
