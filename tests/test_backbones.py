"""Backbones: valid at 32, 64 and 84 px, width multiplier scales channels, and the layouts of the official code."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from methods.backbones import (
    COLLECTIVE_WIDTHS,
    CollectiveNet,
    Conv4,
    IndividualNet,
    build_encoder,
    count_params,
)


@pytest.mark.parametrize("size,gene_hw", [(32, 4), (64, 4), (84, 5)])
def test_individual_net_sizes(size, gene_hw):
    net = IndividualNet(5, size, width=0.125).eval()
    x = torch.zeros(2, 3, size, size)
    fmap = net.feature_map(x)
    # the inherited blocks run at 4x4 (3 pools below 64 px, 4 from 64 px) or 5x5 at 84 px, as in the paper
    assert fmap.shape[-2:] == (gene_hw, gene_hw)
    assert net(x).shape == (2, 5)
    assert net.embed(x).shape == (2, net.out_dim)


def test_individual_layout_at_full_width():
    net = IndividualNet(5, 32, width=1.0)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 512, 512, 512]  # 4 new + 3 inheritable
    assert len(net.gene) == 3
    fcs = [m for m in net.classifier if isinstance(m, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(2048, 1024), (1024, 1024), (1024, 5)]
    assert not any(isinstance(m, nn.Dropout) for m in net.modules())
    assert abs(count_params(net) - 11.79e6) / 11.79e6 < 0.01  # the paper's individual model: 11.79 M parameters


@pytest.mark.parametrize("size", [32, 64, 84])
def test_collective_net_sizes(size):
    net = CollectiveNet(64, size, width=0.125).eval()
    assert len(net.blocks) == 13
    assert net(torch.zeros(2, 3, size, size)).shape == (2, 64)


def test_collective_layout_and_softmax_option():
    net = CollectiveNet(64, 32, width=1.0)
    assert net.widths == list(COLLECTIVE_WIDTHS)
    assert sum(isinstance(m, nn.Dropout) for m in net.classifier) == 2
    soft = CollectiveNet(64, 32, width=0.125, softmax_output=True).eval()
    p = soft(torch.randn(3, 3, 32, 32))
    assert torch.allclose(p.sum(1), torch.ones(3), atol=1e-5) and (p >= 0).all()


def test_width_multiplier_scales_channels():
    small, big = IndividualNet(5, 32, width=0.25), IndividualNet(5, 32, width=0.5)
    c_small = [m.out_channels for m in small.modules() if isinstance(m, nn.Conv2d)]
    c_big = [m.out_channels for m in big.modules() if isinstance(m, nn.Conv2d)]
    assert [2 * c for c in c_small] == c_big


@pytest.mark.parametrize("name", ["individual", "conv4", "timm:resnet18"])
def test_build_encoder(name):
    enc = build_encoder(name, 32, width=0.25).eval()
    out = enc(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, enc.out_dim)


def test_conv4_and_bad_names():
    assert Conv4(84, 1.0).out_dim == 64 * 5 * 5
    with pytest.raises(ValueError, match="unknown backbone"):
        build_encoder("vgg99", 32)
    with pytest.raises(ValueError, match="too small"):
        IndividualNet(5, 8)
