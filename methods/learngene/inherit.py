"""Learngene extraction and the individual model (Wang et al., AAAI 2022: the top-3 conv blocks of the
collective model become the individual model's last blocks). The blocks come from an ancestor
(`methods.learngene.stages.AncestorState`, whose docstring is the contract: conv blocks under
`blocks.{i}.` and their widths), whichever network built it.

The learngene is k consecutive conv blocks: "top" (the paper's and the code's choice: conv11-13 of
13), "middle" (conv6-8) or "front" (conv1-3) as in Figure 6b, or an int start index. It is stored as
plain tensors (conv and BN, running statistics included, as the official code inherits them) so it
caches with `weights_only=True`. The individual model is a fresh random front (4 conv blocks, the
last one producing the learngene's input width) + the learngene + a fresh FC head; the caller seeds
torch first, so the fresh parts are a function of the episode (and equal to `scratch`'s for the
same episode and widths).

A front-position learngene starts with the collective model's first conv, which reads RGB; keeping
the paper's "same individual template" therefore makes the front's last conv output 3 channels.
That bottleneck is a real property of inheriting an input layer into this template, noted here
because it handicaps the "front" curve of Figure 6b.

Issue 22's inheritance matrix adds three knobs, each a `LearngeneSettings` field: k = 0..7 inherited
blocks on the 7-block template (7 - k fresh front blocks; k = 0 builds exactly scratch's network, k = 7
only an ancestor of the individual's shape), `frozen_gene` (`freeze`: weights and BN statistics
fixed) and `match_resolution` (`matched_pools`: the individual pools where the ancestor did, so
each inherited block runs at the feature-map size it was trained at; `gene_resolutions` records both).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from methods.backbones import INDIVIDUAL_FRONT, INDIVIDUAL_GENE, IndividualNet

if TYPE_CHECKING:
    from methods.learngene.stages import AncestorState


def gene_blocks(n_layers: int, k: int, position: str | int) -> list[int]:
    """Indices (0-based) of the k consecutive conv blocks at `position`."""
    if not 1 <= k <= n_layers:
        raise ValueError(f"cannot inherit {k} blocks from a {n_layers}-layer collective model")
    if isinstance(position, int) or str(position).isdigit():
        start = int(position)
    elif position == "top":
        start = n_layers - k
    elif position == "middle":
        start = (n_layers - k) // 2
    elif position == "front":
        start = 0
    else:
        raise ValueError(f"unknown learngene position '{position}'; use top, middle, front or a block index")
    if start < 0 or start + k > n_layers:
        raise ValueError(f"blocks {start}..{start + k - 1} do not exist in a {n_layers}-layer model")
    return list(range(start, start + k))


def extract_learngene(ancestor: AncestorState, k: int = 3, position: str | int = "top") -> dict[str, Any]:
    """The learngene of an ancestor network (any `AncestorState`: its `blocks.{i}.` keys and `widths`);
    k = 0 is the empty learngene (scratch's network). `pools` counts the ancestor's pools before the first
    inherited block and after each one (None when the ancestor does not record them)."""
    widths = list(ancestor.widths)
    idx = gene_blocks(len(widths), k, position) if k else []
    state = ancestor.state
    blocks = []
    for i in idx:
        prefix = f"blocks.{i}."
        blocks.append({key[len(prefix):]: v.clone() for key, v in state.items() if key.startswith(prefix)})
    pa = ancestor.pool_after
    pools = None if pa is None or not idx else \
        {"before": sum(p < idx[0] for p in pa), "after": [list(pa).count(i) for i in idx]}
    return {"blocks": blocks, "indices": idx, "widths": [widths[i] for i in idx],
            "in_channels": (widths[idx[0] - 1] if idx[0] > 0 else 3) if idx else None,
            "ancestor_blocks": len(widths), "ancestor_px": ancestor.image_size, "pools": pools}


def matched_pools(gene: Mapping[str, Any]) -> tuple[int, ...]:
    """Template pool positions that put the ancestor's pools around the inherited blocks: as many pools
    in the fresh front as the ancestor had before the first inherited block (after the front's first
    blocks, any surplus after its last), the ancestor's pools between inherited blocks, and the
    template's final pool after the last (whatever the ancestor did there)."""
    if gene.get("pools") is None:
        raise ValueError("the ancestor does not record where it pools; match_resolution needs it")
    k = len(gene["indices"])
    n_front = len(INDIVIDUAL_FRONT) + len(INDIVIDUAL_GENE) - k
    before = gene["pools"]["before"]
    if before and not n_front:
        raise ValueError("no fresh front block is left to pool in before the inherited blocks")
    front = [min(i, n_front - 1) for i in range(before)]
    between = [n_front + j for j, n in enumerate(gene["pools"]["after"][:-1]) for _ in range(n)]
    return tuple(front + between)


def build_individual(gene: Mapping[str, Any], n_classes: int, image_size: int, width: float, *,
                     frozen: bool = False, match_resolution: bool = False) -> IndividualNet:
    """Fresh front + inherited learngene + fresh head (see module docstring)."""
    if len(gene["blocks"]) == len(INDIVIDUAL_FRONT) + len(INDIVIDUAL_GENE) and \
            gene.get("ancestor_blocks") != len(gene["blocks"]):
        raise ValueError("all 7 blocks can be inherited only from an ancestor of the individual's shape "
                         "(pretrained-individual); keep at least one fresh front block")
    net = IndividualNet(n_classes, image_size, width=width, gene_widths=tuple(gene["widths"]),
                        gene_in=None if gene["in_channels"] is None else int(gene["in_channels"]),
                        pool_after=matched_pools(gene) if match_resolution else None)
    for block, state in zip(net.gene_blocks(), gene["blocks"], strict=True):
        # Sequential(conv, bn, relu): keys "0.weight", "1.running_mean", ...
        block.load_state_dict(state)
    return freeze(net) if frozen else net


def freeze(net: IndividualNet) -> IndividualNet:
    """Fix the inherited blocks: no gradients (so no optimiser step or weight decay touches them) and
    their BatchNorm in eval mode whatever the network's mode (running statistics never updated)."""
    for p in net.gene.parameters():
        p.requires_grad_(False)
    net.frozen_gene = True
    return net.train(net.training)


def gene_param_names(net: IndividualNet) -> list[str]:
    """Names of the inherited parameters that train (conv weight/bias, BN γ/β; not the running statistics;
    none when nothing is inherited or the gene is frozen): what the EWC penalty anchors."""
    return [f"gene.{n}" for n, p in net.gene.named_parameters() if p.requires_grad]


def gene_resolutions(gene: Mapping[str, Any], net: IndividualNet) -> dict[str, list[int] | None]:
    """Feature-map side (px) each inherited block was trained at in its ancestor and runs at in `net`
    (the resolution confound of issue 22: at 32 px the collective's top blocks ran at 2x2, the
    template runs them at 4x4). `trained_px` is None when the ancestor does not record its pools."""
    runs = net.resolutions[len(net.resolutions) - len(gene["indices"]):] if gene["indices"] else []
    trained = None
    if gene.get("pools") is not None and gene.get("ancestor_px"):
        px, trained = gene["ancestor_px"] // 2 ** gene["pools"]["before"], []
        for n in gene["pools"]["after"]:
            trained.append(px)
            px //= 2 ** n
    return {"trained_px": trained, "runs_px": list(runs)}
