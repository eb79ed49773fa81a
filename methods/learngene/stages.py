"""The two cached stages learngene inherits from: the collective model's continual training
(`collective_artifact`) and its open-world stage (`open_world_artifact`).

Why a module of their own: Table 2, Table 3, Figures 3, 4 and 6 all read one collective model per
configuration, so building and caching it is separate from the `Method` that inherits from it and
from the experiments that report on it. The cache key is the `CollectiveSettings` fields that change
the trained network, plus the data and the variant's choices (double softmax, head, uniform width).
"""
from __future__ import annotations

import time
from typing import Any

import torch

from methods.base import SourceData
from methods.learngene.collective import train_collective
from methods.learngene.openworld import open_world_stage
from methods.settings import CollectiveSettings, to_json
from tasks.continual import ContinualTask, continual_tasks

ARTIFACT_VERSION = 3


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
        art = train_collective(source.data, _tasks(source, s), to_json(s), device=torch.device(device),
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
        return open_world_stage(source.data, art, _tasks(source, s), source.open_ids, to_json(s),
                                device=torch.device(device), seed=source.seed, class_index=_class_index(source),
                                threshold=thr if thr == "tune" else float(thr), min_flagged=s.open_world_min_flagged)

    return cache.get_or_build("learngene-openworld", okey, build)
