"""The learngene method (Wang, Geng et al., AAAI 2022) and the functions the experiments layer calls.

Registered methods (all one class; `methods.get(name, device, **overrides)` accepts every option):
- `learngene`: top-3 learngene from the checkpoint after `learngene_task`, EWC λ from the profile
  (1000 in every shipped profile), fresh front and head per episode.
- `learngene-ewc0`, `learngene-ewc5000`: λ = 0 (what the released code effectively ran) / 5000.
- `learngene-openworld`: the learngene of the collective model *after* the open-world stage
  (recognised open-world classes learnt incrementally), for Table 2's reconstructed protocol.
- `learngene-front`, `learngene-middle`, `learngene-top-uniform`: Figure 6b, learngene taken at
  that position from the uniform-width collective network (no widening).
- `learngene-official`: the released code's behaviour: double softmax, no EWC penalty, weights
  carried over from one target task to the next.

Options (overrides): `ewc_lambda`, `checkpoint` (collective task index, Figure 6a), `inherit_position`
(top/middle/front/int), `inherit_blocks`, `uniform` (Figure 6b network), `open_world`,
`faithful_softmax`, `head` (task_local/class_incremental), `reuse_across_tasks`,
`fisher_estimator` (empirical/sampled/exact), `fisher_samples`. Unset options fall back to the
profile's `[methods.learngene]` then `[individual]`; collective knobs come from `[collective]`.

Plain functions (each returns tidy rows or a cached artifact; all share one cached collective model
per configuration through `ArtifactCache`):
- `collective_artifact(source, profile, cache, device, *, uniform=False, faithful_softmax=None,
  head=None) -> dict`: the trained collective model (final state, checkpoints, tasks, ρ, R).
- `rho_rows(source, profile, cache, device, *, uniform=False, per_epoch=False) -> list[dict]`:
  Figure 3 heat-map data: task, layer (1..13), mode (signed/abs), sigma, rho [, epoch].
- `rank_layers_by_trend(rows, mode="signed", early_frac=1/3) -> list[dict]`: layers ranked by
  "large, then steadily small".
- `accuracy_rows(source, profile, cache, device) -> list[dict]`: R[t, i] of the collective run
  plus one summary row (average accuracy, forgetting, BWT).
- `open_world_artifact(...)`, `open_world_rows(source, profile, cache, device) -> list[dict]`:
  open-world detection metrics and the incremental stage's accuracy/forgetting (Table 2).
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from methods.backbones import count_params
from methods.base import EpisodeData, EpisodeResult, Method, SourceData, method_profile
from methods.learngene.collective import train_collective
from methods.learngene.ewc import EWCPenalty, fisher_diagonal
from methods.learngene.inherit import build_individual, extract_learngene, gene_param_names
from methods.learngene.openworld import continual_metrics, open_world_stage
from methods.registry import register
from methods.scratch import episode_generator
from methods.training import train_supervised
from tasks.continual import continual_tasks

ARTIFACT_VERSION = 1
# [collective] keys that do not change the trained collective model (so they stay out of its cache key)
_NOT_IN_KEY = {"open_world_threshold", "open_world_min_flagged", "rho_mode"}


def _ccfg(profile: Mapping[str, Any]) -> dict[str, Any]:
    cfg = dict(profile.get("collective", {}))
    missing = [k for k in ("width", "tasks", "epochs", "batch_size", "lr", "momentum", "weight_decay",
                           "widen_until", "learngene_task", "sigma") if k not in cfg]
    if missing:
        raise KeyError(f"profile section [collective] lacks {', '.join(missing)}")
    return cfg


def _keep(profile: Mapping[str, Any], cfg: Mapping[str, Any]) -> list[int]:
    fig6 = profile.get("experiments", {}).get("fig6", {})
    keep = {int(cfg["learngene_task"]), *map(int, cfg.get("checkpoints", [])), *map(int, fig6.get("checkpoints", []))}
    return sorted(k for k in keep if 0 <= k < int(cfg["tasks"]))


def _pool(source: SourceData, cfg: Mapping[str, Any]) -> list[int]:
    pool = cfg.get("continual_pool", "base")
    if pool == "base":
        return source.base_ids
    if pool == "base+open":
        return source.base_ids + source.open_ids
    raise ValueError(f"unknown continual_pool '{pool}'; use base or base+open")


def _setup(source: SourceData, profile: Mapping[str, Any], uniform: bool, faithful_softmax: bool | None,
           head: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The collective run's resolved settings and its cache key."""
    cfg = _ccfg(profile)
    fs = bool(cfg.get("faithful_softmax", False)) if faithful_softmax is None else bool(faithful_softmax)
    hd = head or cfg.get("head", "task_local")
    uw = int(profile.get("experiments", {}).get("fig6", {}).get("uniform_width", 256)) if uniform else None
    run = {"cfg": cfg, "faithful_softmax": fs, "head": hd, "uniform_width": uw, "keep": _keep(profile, cfg)}
    key = {"version": ARTIFACT_VERSION, "source": source.fingerprint(), "faithful_softmax": fs, "head": hd,
           "uniform_width": uw, "keep": run["keep"],
           "collective": {k: v for k, v in sorted(cfg.items()) if k not in _NOT_IN_KEY}}
    return run, key


def _tasks(source: SourceData, cfg: Mapping[str, Any]):
    return continual_tasks(source.data, _pool(source, cfg), int(cfg["tasks"]), int(cfg.get("classes_per_task", 5)),
                           cfg.get("images_per_class"), cfg.get("test_per_class"), seed=source.seed)


def _class_index(source: SourceData) -> dict[int, int]:
    return {c: i for i, c in enumerate(source.base_ids + source.open_ids)}


def _n_outputs(source: SourceData, cfg: Mapping[str, Any], head: str) -> int:
    if head == "class_incremental":
        return len(source.base_ids) + len(source.open_ids)
    return int(cfg.get("head_classes") or len(_pool(source, cfg)))


def collective_artifact(source: SourceData, profile: Mapping[str, Any], cache: Any, device: torch.device | str,
                        *, uniform: bool = False, faithful_softmax: bool | None = None,
                        head: str | None = None) -> dict[str, Any]:
    """The trained collective model for this data and profile, built once and cached."""
    run, key = _setup(source, profile, uniform, faithful_softmax, head)
    cfg = run["cfg"]

    def build() -> dict[str, Any]:
        t0 = time.perf_counter()
        art = train_collective(source.data, _tasks(source, cfg), cfg, device=torch.device(device), seed=source.seed,
                               n_outputs=_n_outputs(source, cfg, run["head"]), uniform_width=run["uniform_width"],
                               faithful_softmax=run["faithful_softmax"], head=run["head"],
                               class_index=_class_index(source), keep=run["keep"])
        art["train_s"] = time.perf_counter() - t0
        return art

    return cache.get_or_build("learngene-collective", key, build)


def open_world_artifact(source: SourceData, profile: Mapping[str, Any], cache: Any, device: torch.device | str,
                        *, faithful_softmax: bool | None = None, head: str | None = None) -> dict[str, Any]:
    """The open-world stage run on the cached collective model (detection metrics, new tasks, final state)."""
    run, key = _setup(source, profile, False, faithful_softmax, head)
    cfg = run["cfg"]
    thr = cfg.get("open_world_threshold", "tune")
    okey = {**key, "threshold": thr, "min_flagged": int(cfg.get("open_world_min_flagged", 1))}
    if not source.open_ids:
        raise ValueError("the class split has no open-world classes; the open-world stage needs some")

    def build() -> dict[str, Any]:
        art = collective_artifact(source, profile, cache, device, faithful_softmax=faithful_softmax, head=head)
        return open_world_stage(source.data, art, _tasks(source, cfg), source.open_ids, cfg,
                                device=torch.device(device), seed=source.seed, class_index=_class_index(source),
                                threshold=thr if thr == "tune" else float(thr),
                                min_flagged=int(cfg.get("open_world_min_flagged", 1)))

    return cache.get_or_build("learngene-openworld", okey, build)


# --------------------------------------------------------------------------- tidy rows for experiments


def rho_rows(source: SourceData, profile: Mapping[str, Any], cache: Any, device: torch.device | str, *,
             uniform: bool = False, per_epoch: bool = False) -> list[dict[str, Any]]:
    """ρ_{l,t} rows (Figure 3): task (0-based), layer (1-based), mode, sigma, rho [, epoch]."""
    art = collective_artifact(source, profile, cache, device, uniform=uniform)
    rows = []
    for r in art["rho"]:
        base = {"dataset": source.dataset or source.data.name, "task": r["task"], "layer": r["layer"],
                "mode": r["mode"], "sigma": r["sigma"]}
        if per_epoch:
            rows.extend({**base, "epoch": e, "rho": v} for e, v in enumerate(r["per_epoch"]))
        else:
            rows.append({**base, "rho": r["rho"]})
    return rows


def rank_layers_by_trend(rows: list[dict[str, Any]], mode: str = "signed", early_frac: float = 1 / 3) -> list[dict[str, Any]]:
    """Rank layers by the paper's learngene signal: ρ large early, then steadily small.

    early = mean ρ over the first `early_frac` of tasks, late = mean over the rest, late_std = its
    spread; score = (early − late) / (late_std + 1e-3). Highest score first; `rank` starts at 1.
    """
    by_layer: dict[int, list[tuple[int, float]]] = {}
    for r in rows:
        if r["mode"] == mode and "epoch" not in r:
            by_layer.setdefault(int(r["layer"]), []).append((int(r["task"]), float(r["rho"])))
    out = []
    for layer, vals in by_layer.items():
        vals.sort()
        rho = np.array([v for _, v in vals])
        cut = max(1, int(round(len(rho) * early_frac)))
        early, late = float(rho[:cut].mean()), rho[cut:] if len(rho) > cut else rho[-1:]
        drop = early - float(late.mean())
        out.append({"layer": layer, "mode": mode, "early": early, "late": float(late.mean()),
                    "late_std": float(late.std()), "drop": drop, "score": drop / (float(late.std()) + 1e-3)})
    out.sort(key=lambda r: -r["score"])
    for i, r in enumerate(out):
        r["rank"] = i + 1
    return out


def accuracy_rows(source: SourceData, profile: Mapping[str, Any], cache: Any,
                  device: torch.device | str) -> list[dict[str, Any]]:
    """The collective run's R[t, i] (after_task t, task i, acc) and a summary row (kind='summary')."""
    art = collective_artifact(source, profile, cache, device)
    rows: list[dict[str, Any]] = [{"kind": "R", "after_task": t, "task": i, "acc": a}
                                  for t, row in enumerate(art["R"]) for i, a in enumerate(row)]
    rows.append({"kind": "summary", **continual_metrics(art["R"]), "train_s": art.get("train_s")})
    return rows


def open_world_rows(source: SourceData, profile: Mapping[str, Any], cache: Any,
                    device: torch.device | str) -> list[dict[str, Any]]:
    """Table 2 support: one 'detection' row (AUROC, FPR@95 both conventions, AUPR-in/out, closed-set
    accuracy, OSCR, thresholded accuracy) and 'incremental' rows (before/after learning the recognised
    classes: average accuracy, forgetting, BWT; the base tasks' average accuracy after)."""
    ow = open_world_artifact(source, profile, cache, device)
    ds = source.dataset or source.data.name
    rows: list[dict[str, Any]] = [{"dataset": ds, "kind": "detection", "positive": "open-world", **ow["metrics"],
                                   "recognised": len(ow["recognised"]), "new_tasks": len(ow["new_tasks"])}]
    for stage in ("before", "after"):
        rows.append({"dataset": ds, "kind": "incremental", "stage": stage, **ow["continual"][stage],
                     "forgetting_def": "mean_i max_{t<T} R[t,i] - R[T,i]", "n_tasks": len(ow["R"]) if stage == "after"
                     else len(ow["R"]) - len(ow["new_tasks"])})
    rows[-1]["base_avg_acc_after"] = ow["continual"]["base_avg_acc_after"]
    return rows


# --------------------------------------------------------------------------- the Method


@register("learngene", "Learngene: inherit the collective model's top-3 blocks, train with the EWC retain loss")
@register("learngene-ewc0", "Learngene with λ=0 (no retain loss; what the released code effectively ran)",
          family="learngene", ewc_lambda=0.0)
@register("learngene-ewc1000", "Learngene with λ=1000", family="learngene", ewc_lambda=1000.0)
@register("learngene-ewc5000", "Learngene with λ=5000", family="learngene", ewc_lambda=5000.0)
@register("learngene-openworld", "Learngene from the collective model after learning recognised open-world classes",
          family="learngene", open_world=True)
@register("learngene-front", "Learngene from the front 3 blocks of the uniform collective network (Fig. 6b)",
          family="learngene", uniform=True, inherit_position="front")
@register("learngene-middle", "Learngene from the middle 3 blocks of the uniform collective network (Fig. 6b)",
          family="learngene", uniform=True, inherit_position="middle")
@register("learngene-top-uniform", "Learngene from the top 3 blocks of the uniform collective network (Fig. 6b)",
          family="learngene", uniform=True, inherit_position="top")
@register("learngene-official", "The released code's behaviour: double softmax, EWC off, weights leak across tasks, 4-image last batch",
          family="learngene", faithful_softmax=True, ewc_lambda=0.0, reuse_across_tasks=True, last_batch="keep")
class Learngene(Method):
    """Learngene: a fresh individual model per episode = new random front + inherited learngene + new head."""

    records_curve = True

    def _cfg(self, profile: Mapping[str, Any]) -> dict[str, Any]:
        cfg = method_profile(profile, "learngene")
        cfg.setdefault("ewc_lambda", 1000.0)
        cfg.setdefault("fisher_samples", 128)
        cfg.setdefault("fisher_estimator", "empirical")
        cfg.setdefault("inherit_position", "top")
        cfg.setdefault("inherit_blocks", 3)
        cfg.setdefault("reuse_across_tasks", False)
        cfg.update({k: v for k, v in self.options.items() if v is not None})
        return cfg

    def prepare(self, source: SourceData, profile: Mapping[str, Any], cache: Any) -> None:
        cfg = self._cfg(profile)
        ccfg = _ccfg(profile)
        self.image_size = source.data.image_size
        if cfg.get("open_world"):
            art = open_world_artifact(source, profile, cache, self.device,
                                      faithful_softmax=cfg.get("faithful_softmax"), head=cfg.get("head"))
            entry, where = art["final"], "after open-world stage"
        else:
            art = collective_artifact(source, profile, cache, self.device, uniform=bool(cfg.get("uniform")),
                                      faithful_softmax=cfg.get("faithful_softmax"), head=cfg.get("head"))
            t = int(cfg.get("checkpoint", ccfg["learngene_task"]))
            if str(t) in art["checkpoints"]:
                entry = art["checkpoints"][str(t)]
            elif t == int(ccfg["tasks"]) - 1:
                entry = art["final"]
            else:
                raise ValueError(f"no collective checkpoint after task {t}; kept: {sorted(map(int, art['checkpoints']))} "
                                 f"(add it to [collective].checkpoints or [experiments.fig6].checkpoints)")
            where = f"task {t}"
        self.gene = extract_learngene(entry, int(cfg["inherit_blocks"]), cfg["inherit_position"])
        self.gene_source = where
        self._carry: torch.nn.Module | None = None

    def run_episode(self, episode: EpisodeData, profile: Mapping[str, Any]) -> EpisodeResult:
        cfg = self._cfg(profile)
        t0 = time.perf_counter()
        g = episode_generator(episode.seed, episode.index)
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
        if episode.index == 0:
            # A run's sequence of target tasks starts at episode 0: the official leak carries weights
            # from task to task *within* that sequence, never from another cell run in this process.
            self._carry = None
        if cfg["reuse_across_tasks"] and self._carry is not None:
            model = self._carry  # the official leak (spec §3.3): start from the previous task's weights
        else:
            model = build_individual(self.gene, episode.n_way, self.image_size, cfg["width"])
        model.to(self.device)
        lam = float(cfg["ewc_lambda"])
        penalty = None
        if lam > 0:
            names = gene_param_names(model)
            fisher = fisher_diagonal(model, episode.support_x, episode.support_y, names,
                                     n_samples=int(cfg["fisher_samples"]), estimator=cfg["fisher_estimator"],
                                     generator=episode_generator(episode.seed, episode.index, salt=1))
            penalty = EWCPenalty(model, fisher, lam)
        curve = train_supervised(
            model, episode.support_x, episode.support_y, epochs=cfg["epochs"], lr=cfg["lr"],
            momentum=cfg["momentum"], weight_decay=cfg["weight_decay"], batch_size=cfg["batch_size"],
            generator=g, device=self.device, eval_x=episode.query_x, eval_y=episode.query_y,
            crop_padding=cfg.get("crop_padding", 0), last_batch=cfg.get("last_batch", "keep"), extra_loss=penalty)
        if cfg["reuse_across_tasks"]:
            self._carry = model
        extra = {"ewc_lambda": lam, "gene_blocks": [i + 1 for i in self.gene["indices"]],
                 "gene_widths": list(self.gene["widths"]), "gene_source": self.gene_source,
                 "gene_params": sum(p.numel() for p in model.gene.parameters())}
        if penalty is not None:
            extra["ewc_penalty_final"] = float(penalty(model).detach())
        return EpisodeResult(accuracy=curve[-1], curve=curve, wall_s=time.perf_counter() - t0,
                             params=count_params(model), extra=extra)
