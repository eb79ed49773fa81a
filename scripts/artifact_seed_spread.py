"""How much a method's accuracy depends on its base training's seed (`bench run --artifact-seed`).

    python -m bench run --method protonet --experiment table3 --artifact-seed 1 --results-dir DIR1
    python scripts/artifact_seed_spread.py --method protonet --store results-dir-seed0 --store DIR1 ...

Why: a profile with an integer `artifact_seed` trains each base model (meta-training, pre-training,
the collective model) once and shares it across episode seeds, so a table's ± covers episodes and
per-episode initialisation but not base training. Re-running with other artifact seeds into their
own results directories and comparing the same episodes (paired by seed, shots and episode index)
measures that missing variance. `--versus METHOD --versus-store DIR` adds each store's paired gap to
a method that has no base training (scratch), which is the learngene verdict's form.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stats import mean_ci95  # noqa: E402
from bench.store import ResultsStore  # noqa: E402


def accuracies(store: Path, method: str, experiment: str) -> tuple[dict[tuple[int, int, int], float], str]:
    """{(shots, seed, episode): accuracy %} of the method's current cells in a results directory, and
    the artifact seed(s) those cells record (one pass over the store)."""
    out: dict[tuple[int, int, int], float] = {}
    seeds: set[str] = set()
    current, _ = ResultsStore(store).iter_current()
    for cfg, result in current:
        if cfg["method"] != method or cfg["experiment"] != experiment:
            continue
        seeds.add(str(cfg["profile"].get("episodes", {}).get("artifact_seed")))
        p = cfg["params"]
        for r in result["rows"]:
            if r.get("metric") == "accuracy":
                out[(int(p["shots"]), int(p["seed"]), int(r["episode"]))] = 100 * float(r["value"])
    return out, ",".join(sorted(seeds)) or "?"


def paired(a: dict, b: dict, shots: int) -> tuple[float, float, int]:
    keys = sorted(k for k in set(a) & set(b) if k[0] == shots)
    return mean_ci95(np.array([b[k] - a[k] for k in keys]))


def report(method: str, experiment: str, stores: list[Path], versus: str | None, versus_store: Path | None) -> str:
    read = [accuracies(s, method, experiment) for s in stores]
    accs = [a for a, _ in read]
    for s, a in zip(stores, accs, strict=True):
        if not a:
            raise SystemExit(f"error: {s} holds no {experiment} cells of {method}; run it there first")
    ref = accuracies(versus_store, versus, experiment)[0] if versus and versus_store else None
    if versus and not ref:
        raise SystemExit(f"error: {versus_store} holds no {experiment} cells of {versus}")
    shots = sorted({k[0] for k in accs[0]})
    head = ["artifact seed", "results dir"] + [f"{k}-shot" for k in shots] + \
           [f"Δ vs first, {k}-shot (paired)" for k in shots] + \
           ([f"{method} − {versus}, {k}-shot (paired)" for k in shots] if ref else [])
    lines = [f"| {' | '.join(head)} |", "|" + "---|" * len(head)]
    means: dict[int, list[float]] = {k: [] for k in shots}
    for s, (a, artifact_seed) in zip(stores, read, strict=True):
        cells = [artifact_seed, f"`{s}`"]
        for k in shots:
            m, h, n = mean_ci95(np.array([v for key, v in a.items() if key[0] == k]))
            means[k].append(m)
            cells.append(f"{m:.2f} ± {h:.2f} (n={n})")
        for k in shots:
            m, h, n = paired(accs[0], a, k)
            cells.append("–" if s == stores[0] else f"{m:+.2f} ± {h:.2f} (n={n})")
        if ref:
            for k in shots:
                m, h, n = paired(ref, a, k)
                cells.append(f"{m:+.2f} ± {h:.2f} (n={n})")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for k in shots:
        if len(means[k]) > 1:
            m, half, n = mean_ci95(np.array(means[k]))
            lines.append(f"- {k}-shot, mean over {n} base-training seeds: {m:.2f} ± {half:.2f} (95 % Student-t "
                         f"CI over the seeds' means; SD between seeds {np.std(means[k], ddof=1):.2f})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", required=True)
    ap.add_argument("--experiment", default="table3")
    ap.add_argument("--store", type=Path, action="append", required=True,
                    help="a results directory holding one artifact seed's cells (repeat; the first is the reference)")
    ap.add_argument("--versus", default=None, help="a method without base training to pair against (e.g. scratch)")
    ap.add_argument("--versus-store", type=Path, default=None, help="the results directory holding --versus")
    args = ap.parse_args(argv)
    missing = [str(s) for s in args.store + ([args.versus_store] if args.versus_store else []) if not (s / "cells").is_dir()]
    if missing:
        print(f"error: no results directory at {', '.join(missing)}; pass directories `bench run` wrote", file=sys.stderr)
        return 2
    if bool(args.versus) != bool(args.versus_store):
        print("error: --versus and --versus-store go together", file=sys.stderr)
        return 2
    print(report(args.method, args.experiment, args.store, args.versus, args.versus_store), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
