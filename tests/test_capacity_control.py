"""Scratch is the control that separates inheritance from architecture only while its network equals
the learngene individual model's. For every shipped profile: the collective model's schedule, run to the
task the learngene is taken after, must leave inherited blocks whose widths make the learngene
individual model exactly as large as scratch's (same parameter count, same layer shapes)."""
from __future__ import annotations

import pytest
import torch

from bench.profiles import PROFILE_DIR, collective_settings, load_profile, method_settings
from methods.backbones import CollectiveNet, IndividualNet, count_params
from methods.learngene.collective import initial_widths, widen, widening_schedule


def learngene_widths(profile: dict) -> tuple[list[int], int]:
    """(widths of the 3 top blocks, channels they read) after the collective model's widening schedule."""
    c = collective_settings(profile)
    net = CollectiveNet(5, 32, widths=initial_widths(c, None), width=c.width)
    schedule = widening_schedule(c.schedule, c.widen_until, c.width, c.tasks)
    g = torch.Generator().manual_seed(0)
    for task in range(c.learngene_task + 1):
        for layer, extra in schedule.get(task, ()):
            widen(net, layer, extra, g)
    return net.widths[-3:], net.widths[-4]


@pytest.mark.parametrize("name", sorted(p.stem for p in PROFILE_DIR.glob("*.toml")))
def test_learngene_individual_model_matches_scratch(name):
    profile = load_profile(name)
    s = method_settings(profile, "learngene")
    assert s.inherit_position == "top" and s.inherit_blocks == 3
    gene, gene_in = learngene_widths(profile)
    size = int(profile["data"]["image_size"])
    scratch = IndividualNet(5, size, width=method_settings(profile, "scratch").width)
    learngene = IndividualNet(5, size, width=s.width, gene_widths=tuple(gene), gene_in=gene_in)
    assert [p.shape for p in learngene.parameters()] == [p.shape for p in scratch.parameters()], (gene, gene_in)
    assert count_params(learngene) == count_params(scratch)
