"""Choose the MAML family's test-time inner steps on the validation classes, as the budget rule does.

    python scripts/maml_test_steps.py --results-dir results --out docs/evidence/maml_test_steps.md

Loads each variant's meta-trained weights from the results directory's artifact cache (trained by
`bench run` with the same profile; `inner_steps_test` is not part of their key), runs seeded 5-way
episodes of the open-world classes (the suite's validation classes; never the novel ones) at 10 and
20 shots with 1, 3, 5 and 10 inner steps, and writes the mean accuracies and the paired 20 − 10 shot
difference. Why a script: the steps are a test-time setting, so no retraining is needed, and the
table is evidence for the profile's `[methods.maml]` / `[methods.protomaml]` values.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cell_env import Env, RunSpec, run_episodes  # noqa: E402
from bench.profiles import load_profile, resolve  # noqa: E402
from bench.stats import mean_ci95  # noqa: E402
from bench.usage import cpu_name  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results-dir", type=Path, default=Path("results"))
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--methods", default="maml,fomaml,protomaml")
    ap.add_argument("--steps", default="1,3,5,10")
    ap.add_argument("--tasks", type=int, default=25)
    ap.add_argument("--out", type=Path, default=Path("docs/evidence/maml_test_steps.md"))
    ap.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR", "../shared/data"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    prof = resolve(load_profile(args.profile), 32)
    env = Env(RunSpec(dataset="tiny-imagenet", data_dir=args.data_dir, image_size=32, profile=prof,
                      results_dir=str(args.results_dir)))
    lines = [
        "# MAML family: test-time inner steps, chosen on the validation classes",
        "",
        f"`python scripts/maml_test_steps.py --results-dir {args.results_dir} --profile {args.profile} "
        f"--tasks {args.tasks}` — {args.tasks} seeded 5-way episodes (seed 0) of the open-world classes (the "
        "validation classes; the novel classes are never used), every test image as a query, the same "
        f"episodes for every row. ± = half-width of the 95 % Student-t CI over episodes. CPU: {cpu_name()}.",
        "",
        "| Method | inner steps at test | 10-shot | 20-shot | 20 − 10 (paired) |",
        "|---|---|---|---|---|",
    ]
    for method in args.methods.split(","):
        for steps in (int(s) for s in args.steps.split(",")):
            acc = {}
            for shots in (10, 20):
                m = env.prepared(method, 0, None)  # meta-trained weights from the cache; steps set below
                m.s = dataclasses.replace(m.s, inner_steps_test=steps)
                rows = run_episodes(env, method, "open_world", shots, 0, args.tasks, None, curve=False)
                acc[shots] = np.array([r["value"] for r in rows if r["metric"] == "accuracy"]) * 100
            cells = [mean_ci95(acc[10])[:2], mean_ci95(acc[20])[:2], mean_ci95(acc[20] - acc[10])[:2]]
            fmt = [f"{m:.2f} ± {h:.2f}" for m, h in cells]
            fmt[2] = ("+" if cells[2][0] >= 0 else "") + fmt[2]
            lines.append(f"| {method} | {steps} | " + " | ".join(fmt) + " |")
            print(lines[-1], flush=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
