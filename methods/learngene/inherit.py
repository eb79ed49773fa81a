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
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from methods.backbones import IndividualNet

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
    """The learngene of an ancestor network (any `AncestorState`: its `blocks.{i}.` keys and `widths`)."""
    widths = list(ancestor.widths)
    idx = gene_blocks(len(widths), k, position)
    state = ancestor.state
    blocks = []
    for i in idx:
        prefix = f"blocks.{i}."
        blocks.append({key[len(prefix):]: v.clone() for key, v in state.items() if key.startswith(prefix)})
    return {"blocks": blocks, "indices": idx, "widths": [widths[i] for i in idx],
            "in_channels": widths[idx[0] - 1] if idx[0] > 0 else 3}


def build_individual(gene: Mapping[str, Any], n_classes: int, image_size: int, width: float) -> IndividualNet:
    """Fresh front + inherited learngene + fresh head (see module docstring)."""
    net = IndividualNet(n_classes, image_size, width=width, gene_widths=tuple(gene["widths"]),
                        gene_in=int(gene["in_channels"]))
    for block, state in zip(net.gene, gene["blocks"], strict=True):
        # Sequential(conv, bn, relu): keys "0.weight", "1.running_mean", ...
        block.load_state_dict(state)
    return net


def gene_param_names(net: IndividualNet) -> list[str]:
    """Names of the inherited parameters (conv weight/bias, BN γ/β; not the running statistics)."""
    return [f"gene.{n}" for n, _ in net.gene.named_parameters()]
