"""The budget rule, measured: does doubling a method's base-training budget still move its accuracy?

`python -m bench.budget --method protonet,finetune --profile quick --image-size 32` trains each method
at its profile budget (1x) and at `--factor` times it, evaluates both on the same seeded 5-way
episodes of the **open-world classes, which serve as validation classes** (the novel classes that
Table 3 reports are never touched), and writes `docs/evidence/budgets.md` (+ `budgets.csv`): accuracy at
1x and 2x, their paired difference with its 95 % CI, the base-training wall time of each, and whether
the method has converged by the rule "doubling the budget moves 5-way accuracy by < 1 point".

Why a separate module and not an experiment of `bench run`: budgets are chosen *before* the grid
runs, on other classes, and their evidence is a table of its own, not a cell of Table 3.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench.cell_env import Env, RunSpec, run_episodes
from bench.errors import UsageError
from bench.profiles import load_profile, resolve
from bench.stats import mean_ci95
from bench.usage import cpu_name
from methods.registry import UnknownMethodError
from methods.registry import facts as method_facts
from tasks.errors import DataError

#: The pool budgets are chosen on. Never "novel": that is what the tables report.
VALIDATION_POOL = "open_world"
#: Moving less than this (accuracy points) when the budget doubles counts as converged.
CONVERGED_POINTS = 1.0


@dataclass(frozen=True)
class Knob:
    """Where a method family's base-training budget lives in a profile."""

    section: tuple[str, ...]
    key: str


def knob_for(method: str, profile: dict | None = None) -> Knob:
    """The knob that sets `method`'s budget in `profile`: the one the method declares
    (`MethodFacts.budget_knob`: meta-training iterations, pre-training epochs, the collective model's
    epochs per task, or, for scratch, which has no base training, its support-set epochs), unless the
    profile's own section for the method (a variant section such as `[methods.protomaml]`) sets that
    key, which then wins: doubling the family's value would leave the variant's budget unchanged and
    read as converged."""
    path = method_facts(method).budget_knob
    if len(path) < 2:
        raise UsageError(f"method '{method}' declares no budget knob (its class's `budget_knob`, e.g. "
                         "(\"methods\", \"protonet\", \"meta_iterations\")), so its budget cannot be measured")
    knob = Knob(tuple(path[:-1]), path[-1])
    own = (profile or {}).get("methods", {}).get(method, {})
    if knob.section[:1] == ("methods",) and knob.key in own:
        return Knob(("methods", method), knob.key)
    return knob


def _get(profile: dict, knob: Knob) -> float:
    node = profile
    for part in knob.section:
        node = node.get(part, {})
    if knob.key not in node:
        raise UsageError(f"the profile has no [{'.'.join(knob.section)}] {knob.key}; add it to measure its budget")
    return node[knob.key]


def with_budget(profile: dict, knob: Knob, value: float) -> dict:
    """A copy of `profile` with the knob set to `value`."""
    out = copy.deepcopy(profile)
    node = out
    for part in knob.section:
        node = node.setdefault(part, {})
    node[knob.key] = value
    return out


def measure(spec: RunSpec, method: str, factor: float, shots: list[int], seeds: int, tasks: int) -> list[dict]:
    """Episode rows for `method` at 1x and `factor`x its budget, on validation episodes."""
    knob = knob_for(method, spec.profile)
    base = _get(spec.profile, knob)
    rows = []
    for scale in (1.0, factor):
        value = type(base)(round(base * scale)) if isinstance(base, int) else base * scale
        env = Env(replace(spec, profile=with_budget(spec.profile, knob, value)))
        t0 = time.perf_counter()
        for seed in range(seeds):
            env.prepared(method, seed)
        prep_s = time.perf_counter() - t0
        for k in shots:
            for seed in range(seeds):
                for r in run_episodes(env, method, VALIDATION_POOL, k, seed, tasks):
                    if r["metric"] == "accuracy":
                        rows.append({"method": method, "knob": f"[{'.'.join(knob.section)}] {knob.key}",
                                     "scale": scale, "budget": value, "shots": k, "seed": seed,
                                     "episode": r["episode"], "acc": 100 * r["value"], "prepare_s": prep_s})
    return rows


def with_base_budget(d: pd.DataFrame) -> pd.DataFrame:
    """Rows tagged with the 1x budget of their measurement, so that successive doublings of one method
    (2200 -> 4400, then 4400 -> 8800) stay separate steps of the rule."""
    return d.assign(budget_base=(d.budget / d.scale).round(6))


def summarise(d: pd.DataFrame, factor: float) -> pd.DataFrame:
    out = []
    for (method, _, k), g in with_base_budget(d).groupby(["method", "budget_base", "shots"], sort=False):
        one = g[g.scale == 1.0].set_index(["seed", "episode"])
        two = g[g.scale == factor].set_index(["seed", "episode"])
        diff = (two.acc - one.acc).dropna().to_numpy()
        m1, h1, n = mean_ci95(one.acc)
        m2, h2, _ = mean_ci95(two.acc)
        dm, dh, _ = mean_ci95(diff)
        out.append({"method": method, "knob": g.knob.iloc[0], "shots": k, "budget_1x": one.budget.iloc[0],
                    "budget_2x": two.budget.iloc[0], "acc_1x": m1, "ci_1x": h1, "acc_2x": m2, "ci_2x": h2,
                    "delta": dm, "delta_ci": dh, "n": n, "prepare_s_1x": one.prepare_s.iloc[0],
                    "prepare_s_2x": two.prepare_s.iloc[0], "converged": bool(abs(dm) < CONVERGED_POINTS)})
    return pd.DataFrame(out)


def to_markdown(s: pd.DataFrame, commands: list[str], profile: str, factor: float) -> str:
    cpu = cpu_name()
    lines = ["# Base-training budgets (validation classes)", "",
             "; ".join(f"`{c}`" for c in commands) + f" — profile `{profile}`; accuracy (%) on seeded 5-way episodes of the open-world "
             f"classes (the validation classes; novel classes are never used to choose a budget), every "
             f"episode run at 1x and {factor:g}x the budget. ± is the half-width of the 95 % Student-t "
             f"confidence interval over episodes; Δ is paired (same episodes). Converged = |Δ| < "
             f"{CONVERGED_POINTS:g} point. Train s = base-training wall time on this machine ({os.cpu_count()} cores, {cpu}); "
             "a run given `--threads 1` while other jobs shared the machine reads as an upper bound.", "",
             "| Method | budget knob | shots | 1x | acc 1x | 2x | acc 2x | Δ (2x − 1x) | converged | train s 1x / 2x |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in s.itertuples():
        lines.append(f"| {r.method} | {r.knob} | {r.shots} | {r.budget_1x:g} | {r.acc_1x:.2f} ± {r.ci_1x:.2f} | "
                     f"{r.budget_2x:g} | {r.acc_2x:.2f} ± {r.ci_2x:.2f} | {r.delta:+.2f} ± {r.delta_ci:.2f} | "
                     f"{'yes' if r.converged else 'no'} | {r.prepare_s_1x:.0f} / {r.prepare_s_2x:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.budget", description=__doc__.splitlines()[0])
    ap.add_argument("--method", help="comma-separated method names")
    ap.add_argument("--from-csv", type=Path, nargs="+", default=None, metavar="CSV",
                    help="measure nothing: render --out from the rows of earlier runs' CSVs (runs made in parallel)")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--dataset", default="tiny-imagenet")
    ap.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR", "../shared/data"))
    ap.add_argument("--factor", type=float, default=2.0)
    ap.add_argument("--tasks", type=int, default=20, help="validation episodes per seed and shot")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: all cores); 1 when several budget runs share the machine")
    ap.add_argument("--out", type=Path, default=Path("docs/evidence/budgets.md"))
    ap.add_argument("--append", action="store_true",
                    help="keep the other methods' rows already in the --out CSV (measure methods one at a time)")
    args = ap.parse_args(argv)
    if args.from_csv:
        missing = [str(p) for p in args.from_csv if not p.is_file()]
        if missing:
            print(f"error: --from-csv: no such file: {', '.join(missing)}", file=sys.stderr)
            return 2
        d = pd.concat([pd.read_csv(p) for p in args.from_csv], ignore_index=True)
        return _write(d, args, list(dict.fromkeys(d["command"])), args.profile)
    if not args.method:
        print("error: --method is required (or --from-csv to render earlier runs)", file=sys.stderr)
        return 2
    try:
        names = [m for m in args.method.split(",") if m]
        for m in names:
            knob_for(m)
        if args.factor <= 1 or args.tasks < 2 or args.seeds < 1:
            raise UsageError("--factor must be > 1, --tasks >= 2 and --seeds >= 1")
        profile = resolve(load_profile(args.profile), image_size=args.image_size)
        shots = [int(k) for k in profile["episodes"]["shots"]]
        with tempfile.TemporaryDirectory(prefix="bench-budget-") as tmp:  # fresh artifacts: honest wall times
            spec = RunSpec(args.dataset, args.data_dir, args.image_size, profile, tmp, device=args.device,
                           threads=args.threads)
            rows = [r for m in names for r in measure(spec, m, args.factor, shots, args.seeds, args.tasks)]
    except (UsageError, UnknownMethodError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = "python -m bench.budget " + " ".join(argv if argv is not None else sys.argv[1:])
    d = pd.DataFrame(rows).assign(command=command, cpu=cpu_name(), cores=os.cpu_count(), device=args.device)
    csv = args.out.with_suffix(".csv")
    if args.append and csv.exists():  # a re-measured step (method, 1x budget) replaces its old rows
        old, new = with_base_budget(pd.read_csv(csv)), with_base_budget(d)
        steps = set(zip(new.method, new.budget_base, strict=True))
        keep = [step not in steps for step in zip(old.method, old.budget_base, strict=True)]
        d = pd.concat([old[keep].drop(columns="budget_base"), d], ignore_index=True)
    return _write(d, args, list(dict.fromkeys(d["command"].fillna(command))), profile.get("name", args.profile))


def _write(d: pd.DataFrame, args: argparse.Namespace, commands: list[str], profile: str) -> int:
    s = summarise(d, args.factor)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(to_markdown(s, commands, profile, args.factor))
    d.to_csv(args.out.with_suffix(".csv"), index=False)
    print(args.out.read_text())
    return 0 if np.isfinite(s.delta).all() else 1


if __name__ == "__main__":
    sys.exit(main())
