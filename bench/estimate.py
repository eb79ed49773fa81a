"""`--dry-run`: the grid of cells and a rough compute estimate, before spending any of it.

The estimate counts multiply-accumulates of conv/linear layers (measured with forward hooks on the
real backbones) times the image passes each cell implies (forward+backward = 3 forwards). It
ignores data movement and Python overhead, so read it as an order of magnitude; the assumed
throughputs are stated in the output.
"""
from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from bench.cell_env import Cell, Env, RunSpec
from bench.profiles import episode_settings
from methods import registry
from methods.backbones import CollectiveNet, IndividualNet
from methods.settings import MIN_IMAGE_SIZE

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


def describe_grid(spec: RunSpec, grid: list[tuple[Cell, dict]], todo: list[tuple[Cell, dict]], env: Env) -> str:
    prof = spec.profile
    n_query = episode_settings(prof).queries_per_class() or 50  # "all": Tiny-ImageNet's 50 test images per class
    ind_macs = macs(IndividualNet(5, spec.image_size, prof.get("individual", {}).get("width", 1.0)), spec.image_size)
    # below the collective network's minimum no method needing it can be in the grid
    col_macs = (macs(CollectiveNet(64, spec.image_size, width=prof.get("collective", {}).get("width", 1.0)),
                     spec.image_size) if spec.image_size >= MIN_IMAGE_SIZE["collective"] else 0)
    counts = Counter((c.experiment, c.method) for c, _ in grid)
    pending = Counter((c.experiment, c.method) for c, _ in todo)
    lines = [f"dry run: {spec.dataset} at {spec.image_size} px, profile {prof.get('name')}, device {spec.device}",
             f"{'experiment':10s} {'method':20s} {'cells':>6s} {'to run':>7s}"]
    for (exp, m), n in sorted(counts.items()):
        lines.append(f"{exp:10s} {m:20s} {n:6d} {pending[(exp, m)]:7d}")
    passes = sum(cell_passes(c, prof, n_query) for c, _ in todo)
    methods = {c.method for c, _ in todo}
    art = artifact_passes(prof, methods) if todo else 0.0
    flop = 2 * (passes * ind_macs + art * col_macs)
    lines += [f"total: {len(grid)} cells, {len(todo)} to run",
              f"estimated compute: {flop / 1e12:.1f} TFLOP ({passes:.3g} episode image-passes x {ind_macs / 1e6:.1f} MMAC, "
              f"{art:.3g} artifact image-passes x {col_macs / 1e6:.1f} MMAC)",
              f"estimated time: {flop / 1e12 / CPU_TFLOPS / 3600:.2f} h on a 2-core CPU (~{CPU_TFLOPS} TFLOP/s), "
              f"{flop / 1e12 / GPU_TFLOPS / 60:.1f} min on one H100 (~{GPU_TFLOPS} TFLOP/s effective); "
              "order-of-magnitude only"]
    return "\n".join(lines)
