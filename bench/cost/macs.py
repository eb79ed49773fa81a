"""The multiply-accumulate model: the fallback of `bench.cost` for a method with no recorded time.

It counts conv/linear multiply-accumulates (measured with forward hooks on the real backbones) times
the image passes each cell implies (forward+backward = 3 forwards), at an assumed throughput. It ignores
data movement and Python overhead (on 2 CPU cores it read 5x high), so it is an order of magnitude only.
"""
from __future__ import annotations

import torch
from torch import nn

from bench.cell_env import Cell
from methods import registry

CPU_TFLOPS = 0.05   # what 2 CPU cores sustain on these small convs (measured order of magnitude)
GPU_TFLOPS = 20.0   # an H100 on small convs at batch 32-64 (latency-bound; far below peak)


def macs(model: nn.Module, image_size: int) -> int:
    """Conv + linear multiply-accumulates for one image."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            total += out.numel() * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1] // mod.groups
        elif isinstance(mod, nn.Linear):
            total += mod.in_features * mod.out_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        model.eval()
        model(torch.zeros(1, 3, image_size, image_size))
    for h in hs:
        h.remove()
    return total


def cell_passes(cell: Cell, prof: dict, n_query: int) -> float:
    """Image passes (forward-equivalents) of one cell's episodes with the individual-sized backbone."""
    ind = prof.get("individual", {})  # a profile without [individual] is refused by `run`; no KeyError here
    ep = prof["episodes"]
    shots = cell.params.get("shots", ep.get("open_world_shots", 20))
    epochs = ind.get("epochs", 30)
    if cell.experiment == "fig4":
        epochs = prof.get("experiments", {}).get("fig4", {}).get("epochs", epochs)
    n_way = ep["n_way"]
    tasks = cell.params.get("tasks", ep["tasks"])
    per_ep = epochs * (n_way * shots * 3 + n_way * n_query)
    return tasks * per_ep


def artifact_passes(prof: dict, methods: set[str]) -> float:
    """Image passes of the shared artifacts, roughly, from the methods' cost hooks: the ancestor (the
    collective model, `Method.ancestor_passes`, counted once: the methods needing it share it), then
    each profile section `[methods.<name>]` that is a selected method's own or its family's, once
    (`Method.base_training_passes` of the section with the variant's registered overrides; a section
    several selected methods read costs what the most expensive of them makes of it)."""
    entries = {m: registry.entry(m) for m in sorted(methods)}
    total = max((e.factory.ancestor_passes(prof) for e in entries.values() if hasattr(e.factory, "ancestor_passes")),
                default=0.0)
    sections: dict[str, float] = {}
    for m, e in entries.items():
        if not hasattr(e.factory, "base_training_passes"):
            continue
        for name in dict.fromkeys((m, e.family)):
            if name in prof.get("methods", {}):
                cost = e.factory.base_training_passes({**prof["methods"][name], **e.options})
                sections[name] = max(sections.get(name, 0.0), cost)
    for name in prof.get("methods", {}):  # in the profile's order, as before
        total += sections.get(name, 0.0)
    return total
