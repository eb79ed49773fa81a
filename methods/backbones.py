"""Backbones shared by every method, each with a `width` multiplier so CPU profiles can shrink them.

- `IndividualNet`: the individual model (as in the official code): 4 new conv blocks (64,128,256,512) with max
  pools, 3 inheritable conv blocks (512,512,512), a pool, then FC 1024-1024-N without dropout. The
  front has 3 pools below 64 px and 4 from 64 px on, so the inherited blocks run at 4x4 (32/64 px)
  or 5x5 (84 px) as in the paper's CIFAR and ImageNet models.
- `CollectiveNet`: the collective model's 13 conv blocks (official code) with pools after conv
  1,3,6,9,12, FC 1024-1024-N with dropout 0.5, optional final softmax (the official double softmax).
- `Conv4` and `timm:<name>` as alternative embedding backbones.
Every backbone exposes `embed(x)` (a flat embedding) and `out_dim`; the individual network also
exposes `feature_map(x)` (dense features for DeepEMD).
"""
from __future__ import annotations

import torch
from torch import nn

INDIVIDUAL_FRONT = (64, 128, 256, 512)
INDIVIDUAL_GENE = (512, 512, 512)
COLLECTIVE_WIDTHS = (64, 64, 64, 64, 128, 128, 128, 256, 256, 256, 256, 256, 256)
COLLECTIVE_POOL_AFTER = (1, 3, 6, 9, 12)
FC_WIDTH = 1024


def scaled(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 conv (bias, as the official code) + BatchNorm + ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=True), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _flat_dim(module: nn.Module, image_size: int) -> int:
    with torch.no_grad():
        was = module.training
        module.eval()
        out = module(torch.zeros(1, 3, image_size, image_size))
        module.train(was)
    return int(out.flatten(1).shape[1])


class IndividualNet(nn.Module):
    """The individual model / scratch model: `front` (new) -> `gene` (inheritable) -> pool -> classifier.

    The template is 7 conv blocks (`INDIVIDUAL_FRONT` + `INDIVIDUAL_GENE`); `gene_widths` of length k
    makes the top k the inheritable `gene` and the first 7 - k the fresh `front` (default k = 3; k = 0
    is scratch's network, k = 7 leaves no front and the gene reads RGB). `pool_after` lists the template
    positions (0..5, repeats allowed) followed by a 2x2 max pool; default: positions 0..2 (0..3 from
    64 px on). A pool after a gene block sits inside `gene` (use `gene_blocks()` for its conv blocks).
    Conv blocks are created in template order, then the classifier, so for a given seed the weights of
    every earlier configuration are unchanged (tests/test_study_invariants.py).
    `frozen_gene` (set by `methods.learngene.inherit.freeze`) keeps the gene's BatchNorm in eval mode.
    """

    def __init__(self, n_classes: int, image_size: int = 32, width: float = 1.0, fc_width: int | None = None,
                 gene_widths: tuple[int, ...] | None = None, gene_in: int | None = None,
                 pool_after: tuple[int, ...] | None = None):
        super().__init__()
        if image_size < 16:
            raise ValueError(f"image size {image_size} is too small for the individual network (needs >= 16)")
        template = [scaled(c, width) for c in INDIVIDUAL_FRONT + INDIVIDUAL_GENE]
        gene_w = list(gene_widths) if gene_widths is not None else template[len(INDIVIDUAL_FRONT):]
        n_front = len(template) - len(gene_w)
        if n_front < 0:
            raise ValueError(f"{len(gene_w)} inherited blocks do not fit the {len(template)}-block individual network")
        front_w = template[:n_front]
        if gene_in is not None and front_w:
            front_w[-1] = gene_in
        elif gene_in not in (None, 3):
            raise ValueError(f"no fresh front block is left to produce the {gene_in} channels the first inherited "
                             "block reads; only a network of the individual's shape can be inherited whole")
        pools = tuple(pool_after) if pool_after is not None else tuple(range(4 if image_size >= 64 else 3))
        if any(not 0 <= p < len(template) - 1 for p in pools):
            raise ValueError(f"pool positions {pools} must lie between the template's blocks (0..{len(template) - 2})")
        front: list[nn.Module] = []
        gene: list[nn.Module] = []
        c_in, px, self.resolutions = 3, image_size, []
        for pos, c in enumerate(front_w + gene_w):
            part = front if pos < n_front else gene
            part.append(conv_block(c_in, c))
            self.resolutions.append(px)
            part.extend(nn.MaxPool2d(2) for _ in range(pools.count(pos)))
            px //= 2 ** pools.count(pos)
            c_in = c
        if px < 2:
            raise ValueError(f"pools {pools} leave {px} px before the last pool at {image_size} px")
        self.front = nn.Sequential(*front)
        self.gene = nn.Sequential(*gene)
        self.pool = nn.MaxPool2d(2)
        self.image_size = image_size
        self.frozen_gene = False
        self.out_dim = _flat_dim(nn.Sequential(self.front, self.gene, self.pool), image_size)
        fc = fc_width or scaled(FC_WIDTH, width)
        self.classifier = nn.Sequential(nn.Linear(self.out_dim, fc), nn.ReLU(inplace=True),
                                        nn.Linear(fc, fc), nn.ReLU(inplace=True), nn.Linear(fc, n_classes))

    def gene_blocks(self) -> list[nn.Sequential]:
        """The gene's conv blocks (Sequential(conv, BN, ReLU)), in order, without its pools."""
        return [m for m in self.gene if isinstance(m, nn.Sequential)]

    def train(self, mode: bool = True) -> IndividualNet:
        """As `nn.Module.train`, except that a frozen gene stays in eval mode (its BN statistics fixed)."""
        super().train(mode)
        if self.frozen_gene:
            self.gene.eval()
        return self

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Dense features after the inheritable blocks (before the last pool): [B, C, h, w]."""
        return self.gene(self.front(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.feature_map(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class IndividualEncoder(nn.Module):
    """The individual network's conv trunk (front + gene + pool) as an embedding: the baselines'
    backbone, so their capacity matches the individual model (the paper "resets the capacity")."""

    def __init__(self, image_size: int = 32, width: float = 1.0):
        super().__init__()
        net = IndividualNet(1, image_size, width)
        self.front, self.gene, self.pool = net.front, net.gene, net.pool
        self.out_dim = net.out_dim

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.gene(self.front(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.feature_map(x)).flatten(1)

    embed = forward


class CollectiveNet(nn.Module):
    """The collective model: 13 conv blocks in `blocks`, pools after COLLECTIVE_POOL_AFTER, FC head.

    `widths` is a list so Net2Wider can grow it in place (methods/learngene/collective.py).
    """

    def __init__(self, n_classes: int, image_size: int = 32, widths: tuple[int, ...] | list[int] = COLLECTIVE_WIDTHS,
                 width: float = 1.0, fc_width: int | None = None, dropout: float = 0.5, softmax_output: bool = False,
                 pool_after: tuple[int, ...] = COLLECTIVE_POOL_AFTER):
        super().__init__()
        self.widths = [scaled(c, width) for c in widths]
        self.pool_after = tuple(pool_after)
        self.blocks = nn.ModuleList()
        c_in = 3
        for c in self.widths:
            self.blocks.append(conv_block(c_in, c))
            c_in = c
        self.pool = nn.MaxPool2d(2)
        self.image_size = image_size
        self.spatial = image_size
        for _ in self.pool_after:
            self.spatial //= 2
        if self.spatial < 1:
            raise ValueError(f"image size {image_size} is too small for the collective network (needs >= 32)")
        fc = fc_width or scaled(FC_WIDTH, width)
        self.classifier = nn.Sequential(
            nn.Linear(self.widths[-1] * self.spatial * self.spatial, fc), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(fc, fc), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(fc, n_classes))
        self.softmax_output = softmax_output

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.pool_after:
                x = self.pool(x)
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.classifier(self.features(x))
        return torch.softmax(out, dim=1) if self.softmax_output else out


class Conv4(nn.Module):
    """The classic few-shot Conv-4: 4 x (conv 64, BN, ReLU, max pool)."""

    def __init__(self, image_size: int = 32, width: float = 1.0):
        super().__init__()
        c = scaled(64, width)
        self.trunk = nn.Sequential(conv_block(3, c), nn.MaxPool2d(2), conv_block(c, c), nn.MaxPool2d(2),
                                   conv_block(c, c), nn.MaxPool2d(2), conv_block(c, c), nn.MaxPool2d(2))
        self.out_dim = _flat_dim(self.trunk, image_size)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x).flatten(1)

    embed = forward


class TimmEncoder(nn.Module):
    """Any timm model by name, randomly initialised (no downloads), as a pooled embedding."""

    def __init__(self, name: str, image_size: int = 32):
        super().__init__()
        import timm

        self.model = timm.create_model(name, pretrained=False, num_classes=0)
        self.out_dim = _flat_dim(self.model, image_size)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).flatten(1)

    embed = forward


def build_encoder(name: str, image_size: int, width: float = 1.0) -> nn.Module:
    """An embedding backbone by name: 'individual' (default for baselines), 'conv4', or 'timm:<model>'."""
    if name == "individual":
        return IndividualEncoder(image_size, width)
    if name == "conv4":
        return Conv4(image_size, width)
    if name.startswith("timm:"):
        return TimmEncoder(name[5:], image_size)
    raise ValueError(f"unknown backbone '{name}'; use individual, conv4 or timm:<model name>")


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
