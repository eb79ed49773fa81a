"""Which mini-batch policy should the support-set trainers use? Measured on *validation* classes.

Runs `scratch` (the support-set trainer whose recipe learngene shares) on seeded 5-way episodes of
the open-world classes, which the suite uses as validation classes (never the novel classes), with
every test image of a class as a query, for each `last_batch` policy of `methods.training`, and
writes a markdown table with paired differences to the paper's recipe ("keep").

    python scripts/last_batch_probe.py --profile quick --image-size 32 --tasks 10 --seeds 2 \
        --out docs/evidence/last_batch.md
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cell_env import Env, RunSpec, run_episodes  # noqa: E402
from bench.profiles import load_profile, resolve  # noqa: E402
from bench.stats import mean_ci95  # noqa: E402
from methods.training import LAST_BATCH_POLICIES  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--shots", default="10,20")
    ap.add_argument("--dataset", default="tiny-imagenet")
    ap.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR", "../shared/data"))
    ap.add_argument("--out", default="docs/evidence/last_batch.md")
    args = ap.parse_args()
    profile = resolve(load_profile(args.profile), image_size=args.image_size)
    profile["episodes"]["queries"] = "all"
    env = Env(RunSpec(args.dataset, args.data_dir, args.image_size, profile, "/tmp/last-batch-probe"))
    rows = []
    t0 = time.perf_counter()
    for policy in LAST_BATCH_POLICIES:
        for shots in [int(s) for s in args.shots.split(",")]:
            for seed in range(args.seeds):
                for r in run_episodes(env, "scratch", "open_world", shots, seed, args.tasks,
                                      options={"last_batch": policy}):
                    if r["metric"] == "accuracy":
                        rows.append({"policy": policy, "shots": shots, "seed": seed, "episode": r["episode"],
                                     "acc": 100 * r["value"]})
    d = pd.DataFrame(rows)
    lines = ["# Mini-batch policy of the support-set trainers (validation classes)\n",
             f"`python scripts/last_batch_probe.py --profile {args.profile} --image-size {args.image_size} "
             f"--tasks {args.tasks} --seeds {args.seeds}`: scratch, {args.dataset} open-world (validation) "
             f"classes, 5-way, every test image as a query, {args.tasks} tasks x {args.seeds} seeds per cell, "
             f"batch {profile['individual']['batch_size']}, {profile['individual']['epochs']} epochs. "
             f"± = half-width of the 95 % Student-t CI over episodes; Δ is paired with `keep` on the same "
             f"episodes. {time.perf_counter() - t0:.0f} s.\n",
             "| policy | shots | accuracy % | Δ vs keep (paired) |", "|---|---|---|---|"]
    for (policy, shots), g in d.groupby(["policy", "shots"], sort=False):
        m, hw, _ = mean_ci95(g.acc.to_numpy())
        ref = d[(d.policy == "keep") & (d.shots == shots)].set_index(["seed", "episode"]).acc
        diff = (g.set_index(["seed", "episode"]).acc - ref).to_numpy()
        dm, dhw, _ = mean_ci95(diff) if policy != "keep" else (np.nan, np.nan, 0)
        delta = "—" if policy == "keep" else f"{dm:+.2f} ± {dhw:.2f}"
        lines.append(f"| {policy} | {shots} | {m:.2f} ± {hw:.2f} | {delta} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
