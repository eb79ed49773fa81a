"""How long the `paper` profile's Table 3 would take on a device, extrapolated from a few timed units.

    python -m bench.cost device --device cuda                  # docs/evidence/paper_cost.md + .json (sized for < 6 min on an H100)
    python -m bench.cost device --device cpu --scale 0.01      # the paper's widths on a CPU: ~9 min on 1 thread
    python -m bench.cost device --device cpu --profile smoke --scale 0.05 --data-shape 40,20,10   # ~15 s

`python -m bench run --profile paper --experiment table3 --method all` trains every artifact the
Table 3 methods read (the collective model, meta-trained and pre-trained backbones) and then runs
their episodes. Running it to learn its cost is the expensive way; this script times a few units of
each expensive part through the project's own code paths and multiplies by the units the run needs:

- collective model: SGD steps of `ContinualLearner.learn` (the loop `train_collective` runs) at the
  initial widths and at the final widths after every scheduled Net2Wider step; the step time of each
  task is interpolated linearly in the network's MACs between the two, times tasks x epochs x steps,
  times the distinct collective runs the Table 3 learngene variants read (`artifact_group`);
- episodes of every Table 3 method (`bench.cell_env.run_episodes`, the cell's own path: stacked on
  CUDA where the method stacks), at each Table 3 shot, times tasks x seeds; per-episode training
  epochs are timed in full at --scale 1 (at a smaller scale: two shorter runs, extrapolated linearly);
- meta-training (every method whose settings have `meta_iterations`: ProtoNet, MatchingNet, MAML,
  FOMAML, Proto-MAML, DeepEMD) and pre-training (settings with `pretrain_epochs`: fine-tuning's linear
  and cosine backbones; DeepEMD shares the linear one): each method's own `prepare` with the iteration
  count (pre-training: images per class, one epoch) shrunk, at two counts; seconds per unit = the
  slope, and the intercept (network build, BN recalibration, saving) is added once.

What a method costs is read from its settings' fields and its cost hooks (`Method.requires`,
`Method.episode_epochs_field`), never from its name.

No dataset is needed: the images are `tasks.datasets.make_synthetic`'s, in the real data's shape
(tiny-imagenet-100 at 32 px by default: 100 classes, 500 train + 50 test images per class, the
seeded 64/16/20 class split of `tasks.splits`). Method costs do not depend on pixel content (the
EMD solver's pivots aside). The result is an extrapolation: one process, one cell after another;
it leaves out process start-up, decoding the real dataset, writing results, and the collective
model's per-task evaluation (< 1% of its training passes).

A component whose library is missing is skipped with a note, not a crash (`Method.requires`: MAML,
FOMAML and Proto-MAML need learn2learn, DeepEMD needs POT); a method module that does not import at
all (`methods.deepemd` imports `ot` at its top) is left out of the registry, with a row saying so.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import importlib
import io
import json
import math
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import methods
from bench import profiles
from bench.atomic import atomic_write_text
from bench.cell_env import Env, RunSpec, resolve_device, run_episodes
from bench.cost.breakdown import repo_relative
from bench.experiments.selection import methods_for
from bench.usage import cpu_name
from methods import registry
from methods.artifacts import ArtifactCache
from methods.stacked import StackedEpisodes

#: tiny-imagenet-100: classes, train and test images per class.
REAL_SHAPE = (100, 500, 50)
#: Cheap `prepare` options for timing episodes (an episode's cost does not depend on how well the
#: artifact was trained), each applied when the method's settings have that field; meta_iterations is
#: only ever lowered.
CHEAP_PREPARE = {"meta_iterations": 1, "bn_recalibration_episodes": 1, "pretrain_epochs": 1,
                 "pretrain_images_per_class": 1}


# --------------------------------------------------------------------------- plumbing


def missing_libraries(names: list[str]) -> dict[str, str]:
    """Method -> why it cannot run here: a module of its `Method.requires` does not import."""
    out, tried = {}, {}
    for name in names:
        for module in registry.entry(name).factory.requires:
            if module not in tried:
                try:
                    with contextlib.redirect_stderr(io.StringIO()):  # gym's deprecation banner
                        importlib.import_module(module)
                    tried[module] = ""
                except Exception as exc:  # ImportError, or a broken install (learn2learn vs numpy 2)
                    tried[module] = f"skipped: `import {module}` failed ({type(exc).__name__}: {exc})"
            if tried[module]:
                out[name] = tried[module]
    return out


def load_registry() -> dict[str, str]:
    """Load the method registry, leaving out a method module that does not import (`methods.deepemd`
    imports POT at its top, and the registry treats that as an error); module -> why."""
    dropped = {}
    if not registry._loaded:
        for mod in registry.METHOD_MODULES:
            try:
                with contextlib.redirect_stderr(io.StringIO()):
                    importlib.import_module(mod)
            except ImportError as exc:
                dropped[mod] = f"skipped: module {mod} does not import ({type(exc).__name__}: {exc})"
        registry.METHOD_MODULES = tuple(m for m in registry.METHOD_MODULES if m not in dropped)
    registry.names()
    return dropped


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU: {cpu_name()} ({torch.get_num_threads()} torch threads)"


def fit_line(k1: float, t1: float, k2: float, t2: float) -> tuple[float, float]:
    """(seconds per unit, fixed seconds) through two timings; the mean when noise makes the slope <= 0."""
    slope = (t2 - t1) / (k2 - k1) if k2 != k1 else 0.0
    if slope <= 0:
        return t2 / k2, 0.0
    return slope, max(0.0, t2 - slope * k2)


@dataclass
class Row:
    key: str                 # stable id: collective, episodes:<method>, meta:<method>, pretrain:<head>, prepare:<method>
    component: str
    timed: str = ""
    unit: str = ""
    sec_per_unit: float | None = None
    units: float | None = None    # in paper Table 3
    seconds: float | None = None  # extrapolated
    note: str = ""
    status: str = "ok"       # ok | skipped | error


class Ctx:
    """What every component reads: the real profile, the timing environment, the scale."""

    def __init__(self, args: argparse.Namespace, profile: dict, env: Env, table3: list[str], tmp: Path):
        self.args, self.profile, self.env, self.table3, self.tmp = args, profile, env, table3, tmp
        self.device = env.device
        self.episodes = profiles.episode_settings(profile)
        self.n_artifacts = len(self.episodes.artifact_seeds())  # artifacts built once per artifact seed
        self.source = env.source(0)

    def n(self, base: float, minimum: int = 1) -> int:
        """`base` units at --scale 1, scaled."""
        return max(minimum, round(base * self.args.scale))

    def timed(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        sync(self.device)
        t0 = time.perf_counter()
        out = fn()
        sync(self.device)
        return time.perf_counter() - t0, out

    def settings(self, name: str, options: dict | None = None) -> Any:
        """The method's settings from the real profile (plus `options`)."""
        return profiles.method_settings(self.profile, name, options)

    def timed_prepare(self, name: str, options: dict) -> float:
        """Seconds of the method's own `prepare` (what `Env.prepared` calls) with `options`, in a fresh
        artifact cache, so it builds and never loads."""
        settings = profiles.method_settings(self.env.spec.profile, name, options)
        m = methods.get(name, self.device)
        d = Path(tempfile.mkdtemp(dir=self.tmp))
        try:
            dt, _ = self.timed(lambda: m.prepare(self.source, settings, ArtifactCache(d)))
        finally:
            shutil.rmtree(d, ignore_errors=True)
        return dt

    def prepare_line(self, name: str, options: Callable[[int], dict], k1: int, k2: int,
                     units: Callable[[int], int] = lambda k: k) -> tuple[float, float]:
        """(seconds per unit, fixed seconds) of `prepare` with `options(k)`, k = k1 and k2 (after a k=1
        warm-up); `units(k)`: the units that option value means (default: k itself)."""
        self.timed_prepare(name, options(1))
        t1 = self.timed_prepare(name, options(k1))
        t2 = self.timed_prepare(name, options(k2))
        return fit_line(units(k1), t1, units(k2), t2)


# --------------------------------------------------------------------------- (1) the collective model


def plan_steps(k: int, n_avail: int, batch: int) -> tuple[int, int, int]:
    """(epochs, images, SGD steps) that give about `k` steps of batch `batch` on at most `n_avail` images."""
    per_epoch = math.ceil(n_avail / batch)
    if k <= per_epoch:
        n = min(n_avail, k * batch)
        return 1, n, math.ceil(n / batch)
    epochs = math.ceil(k / per_epoch)
    n = min(n_avail, math.ceil(k / epochs) * batch)
    return epochs, n, epochs * math.ceil(n / batch)


def collective_row(ctx: Ctx) -> Row:
    from bench.cost.macs import macs
    from methods.backbones import COLLECTIVE_POOL_AFTER, CollectiveNet
    from methods.learngene import stages
    from methods.learngene.collective import ContinualLearner, initial_widths, widen, widening_schedule
    from methods.training import derived_seed

    cs = profiles.collective_settings(ctx.profile)
    groups: dict[Any, list[str]] = {}
    for m in ctx.table3:
        if registry.facts(m).needs_ancestor:
            e = registry.entry(m)
            groups.setdefault(e.factory.artifact_group(e.family, ctx.settings(m)), []).append(m)
    runs = len(groups) * ctx.n_artifacts
    src, data, size = ctx.source, ctx.source.data, ctx.source.data.image_size
    tasks = stages._tasks(src, cs)
    n_out = stages._n_outputs(src, cs, cs.head)
    schedule = widening_schedule(cs.schedule, cs.widen_until, cs.width, len(tasks))
    all_ops = [op for t in sorted(schedule) for op in schedule[t]]
    bs = cs.batch_size

    def new_net(device: torch.device | str) -> CollectiveNet:
        torch.manual_seed(derived_seed(0, "collective", "init"))
        return CollectiveNet(n_out, size, widths=initial_widths(cs, None), width=cs.width,
                             softmax_output=cs.faithful_softmax, pool_after=COLLECTIVE_POOL_AFTER).to(device)

    # MACs per image of each task's network (on the CPU): the interpolation's abscissa
    net, g, mac = new_net("cpu"), torch.Generator().manual_seed(0), []
    current = macs(net, size)
    for t in range(len(tasks)):
        for conv, add in schedule.get(t, ()):
            widen(net, conv, add, g)
        if schedule.get(t):
            current = macs(net, size)
        mac.append(current)
    del net

    k1 = ctx.n(8)
    k2 = k1 + ctx.n(80)
    pick = torch.Generator().manual_seed(0)

    def step_seconds(widened: bool) -> tuple[float, float]:
        learner = ContinualLearner(new_net(ctx.device), data, cs, device=ctx.device, seed=0, head=cs.head,
                                   class_index=stages._class_index(src))
        if widened:
            for conv, add in all_ops:
                widen(learner.net, conv, add, learner.widen_generator)

        def run(i: int, k: int) -> tuple[float, int]:
            task = tasks[i % len(tasks)]
            epochs, n_img, steps = plan_steps(k, len(task.train_idx), bs)
            keep = torch.randperm(len(task.train_idx), generator=pick)[:n_img]
            sub = dataclasses.replace(task, train_idx=task.train_idx[keep], train_labels=task.train_labels[keep],
                                      test_idx=task.test_idx[:5], test_labels=task.test_labels[:5])
            learner.cfg = dataclasses.replace(cs, epochs=epochs)
            dt, _ = ctx.timed(lambda: learner.learn(sub))
            return dt, steps

        run(0, 1)  # warm-up
        t1, s1 = run(1, k1)
        t2, s2 = run(2, k2)
        return fit_line(s1, t1, s2, t2)[0]

    s0 = step_seconds(False)
    s1 = step_seconds(True) if all_ops else s0
    m0, m1 = mac[0], max(mac)

    def step_at(t: int) -> float:
        return s0 if m1 == m0 else s0 + (s1 - s0) * (mac[t] - m0) / (m1 - m0)

    steps = [cs.epochs * math.ceil(len(t.train_idx) / bs) for t in tasks]
    per_run = sum(n * step_at(t) for t, n in enumerate(steps))
    units = runs * sum(steps)
    names = "; ".join(", ".join(ms) for ms in groups.values())
    per_epoch = sorted(set(math.ceil(len(t.train_idx) / bs) for t in tasks))
    note = (f"{runs} run(s) ({names}) x {len(tasks)} tasks x {cs.epochs} epochs x "
            f"{'/'.join(map(str, per_epoch))} steps of batch {bs}; step {1e3 * s0:.2f} ms at the initial widths, "
            f"{1e3 * s1:.2f} ms after all {len(all_ops)} Net2Wider steps, interpolated in MACs per task "
            f"({m0 / 1e6:.0f} -> {m1 / 1e6:.0f} MMAC/image)")
    if len(groups) > 1:
        note += "; every run timed as the first (the double-softmax run differs by one softmax)"
    return Row("collective", "collective model: continual training", f"2 x ({k1} + {k2}) SGD steps (initial, final widths)",
               "SGD step", per_run * runs / units if units else 0.0, units, per_run * runs, note)


# --------------------------------------------------------------------------- (2) episodes


def episode_row(ctx: Ctx, name: str) -> Row:
    real = ctx.settings(name)
    opts: dict[str, Any] = {k: min(v, getattr(real, k)) if k == "meta_iterations" else v
                            for k, v in CHEAP_PREPARE.items() if hasattr(real, k)}
    field = registry.entry(name).factory.episode_epochs_field
    total_epochs = int(getattr(real, field)) if field else 0
    ep = ctx.episodes
    n_eps = min(ep.tasks, ctx.n(ctx.args.episodes))

    def per_episode(epochs: int | None) -> dict[int, float]:
        o = {**opts, **({field: epochs} if field else {})}
        run_episodes(ctx.env, name, "novel", ep.shots[0], 0, 1, options=o, curve=False)  # warm-up (+ prepare)
        out = {}
        for k in ep.shots:
            dt, _ = ctx.timed(lambda k=k: run_episodes(ctx.env, name, "novel", k, 0, n_eps, options=o, curve=False))
            out[k] = dt / n_eps
        return out

    e1 = ctx.n(total_epochs) if field else None
    if field and 0 < e1 < total_epochs:
        e2 = min(total_epochs, e1 + ctx.n(total_epochs))
        t1, t2 = per_episode(e1), per_episode(e2)
        per = {}
        for k in ep.shots:
            slope, fixed = fit_line(e1, t1[k], e2, t2[k])
            per[k] = fixed + slope * total_epochs
        epochs_txt = f" at {e1} and {e2} of {total_epochs} {field.replace('_', ' ')}, extrapolated"
    else:
        per = per_episode(total_epochs if field else None)
        epochs_txt = f" ({total_epochs} {field.replace('_', ' ')})" if field else ""
    reps = ep.tasks * ep.seeds
    units = reps * len(ep.shots)
    seconds = sum(per[k] * reps for k in ep.shots)
    timed = " + ".join(f"{n_eps} x {k}-shot" for k in ep.shots) + " episodes" + epochs_txt
    note = ", ".join(f"{k}-shot {per[k]:.3g} s" for k in ep.shots)
    note += f"; {ep.tasks} tasks x {ep.seeds} seed(s) per shot, {ep.queries} queries per class"
    if ctx.device.type == "cuda" and issubclass(registry.entry(name).factory, StackedEpisodes) and ep.tasks > n_eps:
        note += f"; timed {n_eps} at once, a cell stacks up to 16"
    return Row(f"episodes:{name}", f"{name}: Table 3 episodes", timed, "episode", seconds / units, units, seconds, note)


# --------------------------------------------------------------------------- (3, 4, 6) meta-training


#: Settings fields that say what one meta-iteration is, when the method has them.
META_DESCRIPTION = ("meta_batch", "n_way", "train_way", "meta_way", "train_shots", "meta_shots", "train_queries",
                    "meta_queries", "inner_steps_train", "first_order")


def recalibration_line(ctx: Ctx, name: str) -> tuple[float, float, int, int]:
    """(seconds per BN-recalibration episode, fixed seconds, r1, r2) of a metric learner's `prepare`
    with no meta-training and r1, r2 recalibration episodes."""
    r1 = ctx.n(5)
    r2 = r1 + ctx.n(20)
    slope, fixed = ctx.prepare_line(name, lambda r: {"meta_iterations": 0, "bn_recalibration_episodes": r}, r1, r2)
    return slope, fixed, r1, r2


def meta_row(ctx: Ctx, name: str) -> Row:
    """Meta-training: `prepare` at two iteration counts (the metric learners' BN recalibration, a
    count of base episodes of its own, timed apart and added)."""
    real = ctx.settings(name)
    if real.meta_iterations == 0:
        return Row(f"meta:{name}", f"{name}: meta-training", "-", "meta-iteration", 0.0, 0, 0.0,
                   "no meta-training in this profile (meta_iterations = 0)")
    pretrains = hasattr(real, "pretrain_epochs")  # meta-training after a pre-training (DeepEMD): a stand-in one
    extra: dict[str, Any] = {"pretrain_epochs": 1, "pretrain_images_per_class": 1} if pretrains else {}
    metric = hasattr(real, "bn_recalibration_episodes")
    if metric:
        extra["bn_recalibration_episodes"] = 0
    k1 = ctx.n(5)
    k2 = k1 + ctx.n(30)
    slope, fixed = ctx.prepare_line(name, lambda k: {**extra, "meta_iterations": k}, k1, k2)
    units = real.meta_iterations * ctx.n_artifacts
    seconds = slope * units + fixed * ctx.n_artifacts
    timed = f"{k1} and {k2} meta-iterations (slope)"
    what = "meta-iteration (" + ", ".join(f"{k} {getattr(real, k)}" for k in META_DESCRIPTION if hasattr(real, k)) + ")"
    note = f"one unit = one {what}; + {fixed:.2f} s once (build, "
    note += "a 1-epoch stand-in pre-training, save)" if pretrains else "save)"
    if metric:
        r_slope, _, r1, r2 = recalibration_line(ctx, name)
        recal = r_slope * real.bn_recalibration_episodes * ctx.n_artifacts
        seconds += recal
        timed += f"; BN recalibration at {r1} and {r2} episodes"
        note += (f"; + {recal:.2f} s BN recalibration ({real.bn_recalibration_episodes} base episodes x "
                 f"{r_slope:.3g} s)")
    return Row(f"meta:{name}", f"{name}: meta-training", timed, "meta-iteration", slope, units, seconds, note)


def recalibration_row(ctx: Ctx, name: str) -> Row:
    """random-ncm's prepare: no meta-training, only BN statistics from base episodes."""
    real = ctx.settings(name)
    slope, fixed, r1, r2 = recalibration_line(ctx, name)
    units = real.bn_recalibration_episodes * ctx.n_artifacts
    return Row(f"prepare:{name}", f"{name}: BN recalibration", f"{r1} and {r2} base episodes (slope)",
               "base episode", slope, units, slope * units + fixed * ctx.n_artifacts,
               f"{real.meta_iterations} meta-iterations; BN statistics over {real.bn_recalibration_episodes} "
               f"{real.train_way}-way base episodes; + {fixed:.2f} s once (build, save)")


# --------------------------------------------------------------------------- (5) pre-training


def pretrain_rows(ctx: Ctx, names: list[str]) -> list[Row]:
    from methods.pretrain import base_training_set, pretrain_key

    groups: dict[str, tuple[str, str, list[str]]] = {}
    for m in names:
        s = ctx.settings(m)
        cosine = bool(getattr(s, "cosine", False))
        key = pretrain_key(ctx.source, s, cosine, getattr(s, "cosine_scale", 10.0),
                           getattr(s, "cosine_weight_norm", False))
        kid = json.dumps(key, sort_keys=True, default=str)
        head = "cosine" if cosine else "linear"
        if kid not in groups:
            groups[kid] = (m, head, [])
        groups[kid][2].append(m)
    rows = []
    n_base = len(ctx.source.base_ids)
    n_train = int(ctx.source.data.counts(0)[ctx.source.base_ids].min())
    for rep, head, users in groups.values():
        s = ctx.settings(rep)
        bs = s.pretrain_batch
        extra = {"meta_iterations": 0} if hasattr(s, "meta_iterations") else {}
        key = f"pretrain:{head}" if not any(r.key == f"pretrain:{head}" for r in rows) else f"pretrain:{head}:{rep}"

        def per_class(steps: int, bs: int = bs) -> int:
            return min(n_train, max(1, math.ceil(steps * bs / n_base)))

        def steps_of(n: int, bs: int = bs) -> int:
            return math.ceil(n_base * n / bs)

        n1 = per_class(ctx.n(40))
        n2 = max(n1 + 1, per_class(steps_of(n1) + ctx.n(400)))
        n2 = min(n2, n_train)
        k1, k2 = steps_of(n1), steps_of(n2)
        slope, fixed = ctx.prepare_line(
            rep, lambda n, extra=extra: {**extra, "pretrain_epochs": 1, "pretrain_images_per_class": n}, n1, n2,
            units=steps_of)
        n_imgs = len(base_training_set(ctx.source, s.pretrain_images_per_class, ctx.source.seed)[0])
        units = s.pretrain_epochs * math.ceil(n_imgs / bs) * ctx.n_artifacts
        seconds = slope * units + fixed * ctx.n_artifacts
        note = (f"{s.pretrain_epochs} epochs x {math.ceil(n_imgs / bs)} steps ({n_imgs} base images, batch {bs}, "
                f"{s.pretrain_optimizer}); read by {', '.join(users)}; + {fixed:.2f} s once")
        rows.append(Row(key, f"pre-training ({head} head)", f"{k1} and {k2} steps (1 epoch, slope)", "SGD step",
                        slope, units, seconds, note))
    return rows


# --------------------------------------------------------------------------- the table


def fmt_s(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 1:
        return f"{x:.1f}"
    return f"{x:.3g}"


def fmt_n(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def hours(s: float) -> str:
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min"


def render(result: dict) -> str:
    rows = [Row(**r) for r in result["rows"]]
    lines = [f"# Cost of the `{result['profile']}` profile's Table 3 on {result['device']}", "",
             f"`{result['command']}` (profile `{result['profile']}`), **extrapolated** from timed units: "
             f"`python -m bench.cost device {result['argv']}` on {result['device']} (torch {result['torch']}), "
             f"--scale {result['scale']}, on synthetic images of the real data's shape ({result['data']}), not the "
             "real images. One process, cells one after another; process start-up, decoding the dataset, writing "
             "results and the collective model's per-task evaluation are left out.", "",
             "| component | units timed | seconds per unit | units in paper Table 3 | extrapolated seconds | note |",
             "|---|---|---:|---:|---:|---|"]
    for r in rows:
        if r.status != "ok":
            lines.append(f"| {r.component} | - | - | - | {r.status} | {r.note} |")
            continue
        lines.append(f"| {r.component} | {r.timed} | {fmt_s(r.sec_per_unit)} s / {r.unit} | {fmt_n(r.units)} "
                     f"{r.unit}s | {fmt_s(r.seconds)} | {r.note} |")
    total = result["total_s"]
    left = [r.component for r in rows if r.status != "ok"]
    label = "**total**" + (f" (without: {', '.join(left)})" if left else "")
    lines.append(f"| {label} | | | | **{fmt_s(total)}** | **{hours(total)}** |")
    lines += ["", f"Measured in {result['wall_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def build_profile(args: argparse.Namespace) -> tuple[dict, dict]:
    """(the real profile with the synthetic data's shape, the timing environment's copy: the collective
    model it trains for the learngene episodes shrunk to one step per task up to the learngene's task)."""
    prof = copy.deepcopy(profiles.load_profile(args.profile))
    classes, train, test = (int(v) for v in args.data_shape.split(","))
    prof.setdefault("data", {})["synthetic"] = {"num_classes": classes, "train_per_class": train,
                                                "test_per_class": test}
    env_prof = copy.deepcopy(prof)
    env_prof.pop("experiments", None)  # Figure 6's checkpoints are not Table 3's
    cs = profiles.collective_settings(prof)
    env_prof["collective"] = {**prof.get("collective", {}), "tasks": cs.learngene_task + 1, "epochs": 1,
                              "images_per_class": 1, "test_per_class": 1, "checkpoints": []}
    return prof, env_prof


def plan_jobs(ctx: Ctx, selected: list[str],
              missing: dict[str, str]) -> list[tuple[str, str, Callable[[], list[Row]]]]:
    """(row key, label, job) for every component of the selected Table 3 methods: the collective model
    first, each pre-training before its first reader, each method's base training before its episodes;
    what a method has is read from its settings' fields (`meta_iterations`, `bn_recalibration_episodes`,
    `pretrain_epochs`) and facts (`needs_ancestor`)."""
    jobs: list[tuple[str, str, Callable[[], list[Row]]]] = []
    settings = {m: ctx.settings(m) for m in selected}
    pre = [m for m in selected if hasattr(settings[m], "pretrain_epochs") and m not in missing]
    if any(registry.facts(m).needs_ancestor for m in selected):
        jobs.append(("collective", "collective model: continual training", lambda: [collective_row(ctx)]))
    for m in selected:
        s = settings[m]
        if m in pre and not any(k == "pretrain" for k, _, _ in jobs):
            jobs.append(("pretrain", "pre-training", lambda: pretrain_rows(ctx, pre)))
        if hasattr(s, "meta_iterations"):
            if hasattr(s, "bn_recalibration_episodes") and s.meta_iterations == 0:
                jobs.append((f"prepare:{m}", f"{m}: BN recalibration", lambda m=m: [recalibration_row(ctx, m)]))
            else:
                jobs.append((f"meta:{m}", f"{m}: meta-training", lambda m=m: [meta_row(ctx, m)]))
        jobs.append((f"episodes:{m}", f"{m}: Table 3 episodes", lambda m=m: [episode_row(ctx, m)]))
    return jobs


def measure(args: argparse.Namespace, argv: list[str]) -> dict:
    t_start = time.perf_counter()
    dropped = load_registry()
    prof, env_prof = build_profile(args)
    device = resolve_device(args.device)
    selected = methods_for("table3", registry.names())
    missing = missing_libraries(selected)
    rows: list[Row] = [Row(f"module:{mod}", f"{mod}: its methods", note=why, status="skipped")
                       for mod, why in dropped.items()]
    with tempfile.TemporaryDirectory() as tmp:
        env = Env(RunSpec("synthetic", "", int(prof.get("data", {}).get("image_size", 32)), env_prof, tmp,
                          device=device, threads=args.threads))
        ctx = Ctx(args, prof, env, selected, Path(tmp))
        jobs = plan_jobs(ctx, selected, missing)
        only = [s for s in (args.only or "").split(",") if s]
        for key, label, job in jobs:
            if only and not any(key.startswith(o) for o in only):
                continue
            name = key.split(":", 1)[-1]
            if name in missing:
                rows.append(Row(key, label, note=missing[name], status="skipped"))
            else:
                t0 = time.perf_counter()
                try:
                    rows += job()
                except Exception as exc:  # one broken component must not cost the others' timings
                    traceback.print_exc()
                    rows.append(Row(key, label, note=f"error: {type(exc).__name__}: {exc}", status="error"))
                print(f"[bench.cost device] {key}: {time.perf_counter() - t0:.1f} s "
                      f"(elapsed {time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)
        dev_name = device_name(env.device)
    classes, train, test = (int(v) for v in args.data_shape.split(","))
    total = sum(r.seconds for r in rows if r.status == "ok" and r.seconds is not None)
    return {"device": dev_name, "device_type": torch.device(device).type, "torch": torch.__version__,
            "profile": prof.get("name", args.profile), "scale": args.scale, "argv": recorded_argv(argv),
            "command": f"python -m bench run --profile {args.profile} --experiment table3 --method all",
            "data": f"{classes} classes x ({train} train + {test} test) images at "
                    f"{prof.get('data', {}).get('image_size', 32)} px, split {env.split.source}",
            "rows": [dataclasses.asdict(r) for r in rows], "total_s": total,
            "skipped": [r.key for r in rows if r.status == "skipped"],
            "errors": [r.key for r in rows if r.status == "error"],
            "wall_s": time.perf_counter() - t_start}


def recorded_argv(argv: list[str]) -> str:
    """The arguments as the report records them: paths relative to the repository (an absolute path of
    the machine that measured means nothing to a reader)."""
    out = []
    for a in argv:
        key, eq, value = a.partition("=")
        out.append(f"{key}={repo_relative(value)}" if eq and value.startswith("/") else
                   repo_relative(a) if a.startswith("/") else a)
    return " ".join(out)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.cost device", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto")
    ap.add_argument("--profile", default="paper", help="profile name or .toml path (default: paper)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiplies every timed unit count (steps, iterations, episodes, epochs); <1 for a smoke run")
    ap.add_argument("--episodes", type=int, default=2, help="episodes timed per shot at --scale 1")
    ap.add_argument("--data-shape", default=",".join(map(str, REAL_SHAPE)),
                    help="synthetic classes,train,test images per class (default: tiny-imagenet-100's)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--only", default="", help="comma-separated row-key prefixes (collective, episodes:scratch, "
                    "meta, pretrain, prepare...)")
    ap.add_argument("--out", type=Path, default=Path("docs/evidence/paper_cost.md"))
    args = ap.parse_args(argv)
    if args.scale <= 0:
        ap.error("--scale must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    result = measure(args, argv)
    text = render(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, text)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(result, indent=1))
    print(text)
    return 1 if result["errors"] else 0
