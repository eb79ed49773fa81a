"""Where a learngene is inherited from: the table of ancestors (`ANCESTORS`), each a builder that
returns one documented `AncestorState`, and the two cached stages the built-in ancestors read: the
collective model's continual training (`collective_artifact`) and its open-world stage
(`open_world_artifact`).

Why a module of their own: Table 2, Table 3, Figures 3, 4 and 6 all read one collective model per
configuration, so building and caching it is separate from the `Method` that inherits from it and
from the experiments that report on it. The cache key is the `CollectiveSettings` fields that change
the trained network, plus the data and the variant's choices (double softmax, head, and the uniform
width when the ancestor is "continual-uniform").

A new ancestor is one builder function and one entry in `ANCESTORS` (tests/test_ancestors.py adds a
random-weight one); `LearngeneSettings.ancestor` accepts the table's keys. Issue 22's controls
(`joint`, `pretrained-individual`, `random`) are built in `controls.py`.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from methods.backbones import scaled
from methods.base import SourceData
from methods.learngene.collective import initial_widths, train_collective
from methods.learngene.collective_facts import ancestor_facts, planned_joint_flops, planned_training_flops
from methods.learngene.controls import joint_artifact, random_artifact, random_bn_artifact, trunk_entry
from methods.learngene.openworld import open_world_stage
from methods.pretrain import pretrained_backbone
from methods.settings import CollectiveSettings, LearngeneSettings, to_json
from tasks.continual import ContinualTask, continual_tasks

ARTIFACT_VERSION = 3


def collective_passes(profile: Mapping[str, Any]) -> float:
    """Image passes of the collective model's continual training in `profile` (the dry-run estimate's
    ancestor cost): tasks x epochs x 5 classes x images, forward+backward, the wider net ~2.5x MACs."""
    col = profile.get("collective", {})
    if not col:
        return 0.0
    return col["tasks"] * col["epochs"] * 5 * col["images_per_class"] * 3 * 2.5


def _pool(source: SourceData, s: CollectiveSettings) -> list[int]:
    return source.base_ids + source.open_ids if s.continual_pool == "base+open" else source.base_ids


def _tasks(source: SourceData, s: CollectiveSettings) -> list[ContinualTask]:
    return continual_tasks(source.data, _pool(source, s), s.tasks, s.classes_per_task, s.images_per_class,
                           s.test_per_class, seed=source.seed)


def _class_index(source: SourceData) -> dict[int, int]:
    return {c: i for i, c in enumerate(source.base_ids + source.open_ids)}


def _n_outputs(source: SourceData, s: CollectiveSettings, head: str) -> int:
    if head == "class_incremental":
        return len(source.base_ids) + len(source.open_ids)
    return int(s.head_classes or len(_pool(source, s)))


def collective_key(s: CollectiveSettings) -> str:
    """The collective run these settings train, as a short readable name ("collective width 0.25, 21 x 10
    epochs, #1a2b3c4d": the hash covers every field that changes the trained network): part of a learngene
    variant's artifact group, so cells of different collective runs (the scale trend's widths and
    epochs) are scheduled, and shown in a run's steps, as different builds."""
    fields = {k: v for k, v in to_json(s).items() if k not in CollectiveSettings.NOT_IN_KEY}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:8]
    return f"collective width {s.width:g}, {s.tasks} x {s.epochs} epochs, #{digest}"


def _run(source: SourceData, s: CollectiveSettings, uniform: bool, faithful_softmax: bool | None,
         head: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The collective run's resolved choices and its cache key."""
    run = {"faithful_softmax": s.faithful_softmax if faithful_softmax is None else bool(faithful_softmax),
           "head": head or s.head, "uniform_width": s.uniform_width if uniform else None, "keep": s.kept()}
    key = {"version": ARTIFACT_VERSION, "source": source.fingerprint(), **run,
           "collective": {k: v for k, v in to_json(s).items() if k not in CollectiveSettings.NOT_IN_KEY}}
    return run, key


def collective_artifact(source: SourceData, s: CollectiveSettings, cache: Any, device: torch.device | str, *,
                        uniform: bool = False, faithful_softmax: bool | None = None,
                        head: str | None = None) -> dict[str, Any]:
    """The trained collective model for this data and settings, built once and cached: final state,
    checkpoints, tasks, rho rows and the accuracy matrix R (see `collective.train_collective`)."""
    run, key = _run(source, s, uniform, faithful_softmax, head)

    def build() -> dict[str, Any]:
        t0 = time.perf_counter()
        art = train_collective(source.data, _tasks(source, s), s, device=torch.device(device),
                               seed=source.seed, n_outputs=_n_outputs(source, s, run["head"]),
                               uniform_width=run["uniform_width"], faithful_softmax=run["faithful_softmax"],
                               head=run["head"], class_index=_class_index(source), keep=run["keep"])
        art["train_s"] = time.perf_counter() - t0
        return art

    return cache.get_or_build("learngene-collective", key, build)


def checkpoint_entry(art: dict[str, Any], s: CollectiveSettings, task: int) -> dict[str, Any]:
    """The stored collective state after `task` (a kept checkpoint, or the final state after the last task)."""
    if str(task) in art["checkpoints"]:
        return art["checkpoints"][str(task)]
    if task == s.tasks - 1:
        return art["final"]
    raise ValueError(f"no collective checkpoint after task {task}; kept: {sorted(map(int, art['checkpoints']))} "
                     f"(add it to [collective].checkpoints or [experiments.fig6].checkpoints)")


def open_world_artifact(source: SourceData, s: CollectiveSettings, cache: Any, device: torch.device | str, *,
                        faithful_softmax: bool | None = None, head: str | None = None) -> dict[str, Any]:
    """The open-world stage run on the cached collective model (detection metrics, new tasks, final state)."""
    if not source.open_ids:
        raise ValueError("the class split has no open-world classes; the open-world stage needs some")
    _, key = _run(source, s, False, faithful_softmax, head)
    okey = {**key, "threshold": s.open_world_threshold, "min_flagged": s.open_world_min_flagged}

    def build() -> dict[str, Any]:
        art = collective_artifact(source, s, cache, device, faithful_softmax=faithful_softmax, head=head)
        thr = s.open_world_threshold
        return open_world_stage(source.data, art, _tasks(source, s), source.open_ids, s,
                                device=torch.device(device), seed=source.seed, class_index=_class_index(source),
                                threshold=thr if thr == "tune" else float(thr), min_flagged=s.open_world_min_flagged)

    return cache.get_or_build("learngene-openworld", okey, build)


# --------------------------------------------------------------------------- ancestors


@dataclass(frozen=True)
class AncestorState:
    """A trained network a learngene is taken from, as `inherit.extract_learngene` reads it.

    The contract, whatever network it came from: `state` is a state dict whose conv blocks are the
    keys under `blocks.{i}.` (i = 0..len(widths)-1, in forward order), each block a
    `Sequential(conv3x3, BatchNorm2d, ReLU)` ("blocks.{i}.0.weight", "blocks.{i}.0.bias",
    "blocks.{i}.1.weight", ..., "blocks.{i}.1.running_var"), as `backbones.CollectiveNet` names them;
    block 0 reads RGB and block i outputs `widths[i]` channels (so block i reads `widths[i-1]`).
    Other keys (pools, classifier) are ignored.
    """

    state: Mapping[str, torch.Tensor]
    """The network's tensors (CPU), conv blocks under `blocks.{i}.`."""
    widths: tuple[int, ...]
    """Output channels of each conv block, in order."""
    provenance: str
    """Where the blocks come from, stored with every result as `gene_source` ("task 20",
    "after open-world stage")."""
    image_size: int | None = None
    """Image size the network was trained at (None = not known)."""
    pool_after: tuple[int, ...] | None = None
    """Blocks followed by a 2x2 max pool (repeats = several), the last one's included (None = not known):
    where each block ran, for `inherit.gene_resolutions` and `LearngeneSettings.match_resolution`."""
    facts: Callable[[], Mapping[str, float]] | None = field(default=None, compare=False)
    """Numbers about how the ancestor was made, computed on demand (counting FLOPs takes seconds) and
    stored with a scale cell's rows: the continual ancestor's training FLOPs and task accuracies
    (`collective_facts.ancestor_facts`); None for the others."""

    @classmethod
    def of_entry(cls, entry: Mapping[str, Any], provenance: str) -> AncestorState:
        """From a stored collective state (`collective.ContinualLearner.state()`)."""
        pools = entry.get("pool_after")
        return cls(entry["state"], tuple(int(w) for w in entry["widths"]), provenance, entry.get("image_size"),
                   None if pools is None else tuple(int(p) for p in pools))


AncestorBuilder = Callable[[SourceData, LearngeneSettings, Any, torch.device | str], AncestorState]


def _checkpoint_of(source: SourceData, s: LearngeneSettings, cache: Any, device: torch.device | str,
                   uniform: bool) -> AncestorState:
    c = s.collective
    art = collective_artifact(source, c, cache, device, uniform=uniform, faithful_softmax=s.faithful_softmax,
                              head=s.head)
    t = c.learngene_task if s.checkpoint is None else s.checkpoint
    state = AncestorState.of_entry(checkpoint_entry(art, c, t), f"task {t}")
    widths = [scaled(w, c.width) for w in initial_widths(c, c.uniform_width if uniform else None)]
    run = {"R": art["R"], "schedule": art["schedule"],  # what the facts read, not the run's tensors
           "final": {k: art["final"][k] for k in ("image_size", "n_outputs", "fc_width", "pool_after")}}

    def facts() -> dict[str, float]:
        return ancestor_facts(run, [len(task.train_idx) for task in _tasks(source, c)], c.epochs, t, widths)
    return replace(state, facts=facts)


def continual(source: SourceData, s: LearngeneSettings, cache: Any, device: torch.device | str) -> AncestorState:
    """The collective model after task `checkpoint` (default `collective.learngene_task`) of its
    continual training, widened by the paper's Net2Wider schedule (Table 3, Figure 6a)."""
    return _checkpoint_of(source, s, cache, device, uniform=False)


def continual_uniform(source: SourceData, s: LearngeneSettings, cache: Any,
                      device: torch.device | str) -> AncestorState:
    """The same continual training on Figure 6b's uniform network (13 convs of
    `collective.uniform_width` x `collective.width` channels, never widened): another cached run."""
    return _checkpoint_of(source, s, cache, device, uniform=True)


def open_world(source: SourceData, s: LearngeneSettings, cache: Any, device: torch.device | str) -> AncestorState:
    """The collective model after the open-world stage (Table 2): the continual run's final state,
    then the recognised open-world classes learnt as new tasks."""
    art = open_world_artifact(source, s.collective, cache, device, faithful_softmax=s.faithful_softmax, head=s.head)
    return AncestorState.of_entry(art["final"], "after open-world stage")


def continual_passes(source: SourceData, c: CollectiveSettings) -> int:
    """Image passes of the continual training: epochs x the train images of every task."""
    return c.epochs * sum(len(task.train_idx) for task in _tasks(source, c))


def joint(source: SourceData, s: LearngeneSettings, cache: Any, device: torch.device | str) -> AncestorState:
    """The continual run's final architecture trained jointly on every base class (one head, the same
    image passes and `[collective]` optimiser): is it continual learning or the network?"""
    art = joint_artifact(source, s.collective, cache, device, continual_passes(source, s.collective))
    return AncestorState.of_entry(art["final"], f"joint training ({art['log']['epochs']:.2f} epochs)")


def pretrained_individual(source: SourceData, s: LearngeneSettings, cache: Any,
                          device: torch.device | str) -> AncestorState:
    """The fine-tuning baseline's pre-trained individual network (the `finetune` method's linear-head
    artifact, shared, not retrained), its 7 conv blocks as `blocks.0..6`."""
    if s.pretrain.backbone != "individual":
        raise ValueError(f"the pretrained-individual ancestor needs the individual backbone, not {s.pretrain.backbone}")
    encoder, _ = pretrained_backbone(source, s.pretrain, cache, torch.device(device), cosine=False)
    entry = trunk_entry([*encoder.front, *encoder.gene, encoder.pool], source.data.image_size)
    return AncestorState.of_entry(entry, "fine-tuning baseline's pre-training")


def random(source: SourceData, s: LearngeneSettings, cache: Any, device: torch.device | str) -> AncestorState:
    """The continual run's final architecture, randomly initialised and untrained (fresh BN statistics):
    what inheriting is worth without any training, at the same weight scale."""
    return AncestorState.of_entry(random_artifact(source, s.collective, cache)["final"], "random initialisation")


def random_bn(source: SourceData, s: LearngeneSettings, cache: Any, device: torch.device | str) -> AncestorState:
    """The random ancestor with BN running statistics estimated on base-class images (weights untouched):
    is the random ancestor's chance-level probe, and its frozen rows, only its fresh BN statistics?"""
    return AncestorState.of_entry(random_bn_artifact(source, s.collective, cache)["final"],
                                  "random initialisation, BN statistics of base images")


#: Ancestor name (`LearngeneSettings.ancestor`) -> builder; each builder caches what it trains in
#: `cache` keyed by its settings, so building twice with equal settings trains once.
ANCESTORS: dict[str, AncestorBuilder] = {
    "continual": continual,
    "continual-uniform": continual_uniform,
    "open-world": open_world,
    "joint": joint,
    "pretrained-individual": pretrained_individual,
    "random": random,
    "random-bn": random_bn,
}

#: Ancestor name -> the planned training FLOPs of what its builder trains, for the cost model's ratio
#: between two ancestors' builds (`ancestor_build_ratio`); an ancestor not here (another family builds it,
#: or its cost is its own record) is priced by its group's own record.
ANCESTOR_FLOPS: dict[str, Callable[[LearngeneSettings, int], float]] = {
    "continual": lambda s, px: planned_training_flops(s.collective, px),
    "open-world": lambda s, px: planned_training_flops(s.collective, px),  # reuses the continual run
    "joint": lambda s, px: planned_joint_flops(s.collective, px),
    "random": lambda s, px: 0.0,  # an initialisation: nothing trained
    "random-bn": lambda s, px: 0.0,  # and a few forward passes for its BN statistics
}


def ancestor_build_ratio(s: LearngeneSettings, ref: LearngeneSettings, image_size: int) -> float | None:
    """The build of `s`'s ancestor over `ref`'s (1 when both are the same run; None when either has no
    `ANCESTOR_FLOPS`: then its own record prices it)."""
    if (s.ancestor, collective_key(s.collective)) == (ref.ancestor, collective_key(ref.collective)):
        return 1.0
    mine, theirs = ANCESTOR_FLOPS.get(s.ancestor), ANCESTOR_FLOPS.get(ref.ancestor)
    if mine is None or theirs is None:
        return None
    base = theirs(ref, image_size)
    return mine(s, image_size) / base if base > 0 else None


#: Ancestors built from another's collective run (cells are scheduled by the run they wait for).
SHARED_RUN = {"open-world": "continual"}


def ancestor_run(name: str) -> str:
    """The collective run an ancestor waits for: its own, or the one it continues (`SHARED_RUN`)."""
    return SHARED_RUN.get(name, name)
