"""`python -m bench.cost breakdown | reference | device ...`: the cost reports.

    python -m bench.cost breakdown --results-dir DIR [--out docs/evidence/cost.md]   # per-row cost of a store's cells
    python -m bench.cost reference --results-dir DIR                           # refresh bench/cost/reference.json
    python -m bench.cost device --device cuda                                  # the paper profile's Table 3 on a device

(`--dry-run` of `python -m bench run` prints the estimate of a grid; it reads reference.json.)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.atomic import atomic_write_text


def _has_cells(results_dir: Path) -> bool:
    """Whether `results_dir` is a store with cells (both commands read them); else one line on stderr."""
    if (results_dir / "cells").is_dir():
        return True
    print(f"error: {results_dir} holds no cells; pass the results directory a `bench run` wrote", file=sys.stderr)
    return False


def _breakdown(argv: list[str]) -> int:
    from bench.cost.breakdown import breakdown, to_markdown

    ap = argparse.ArgumentParser(prog="python -m bench.cost breakdown",
                                 description="what each (experiment, method) of a store cost, in worker-minutes")
    ap.add_argument("--results-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=None, help="write the markdown here (default: print only)")
    args = ap.parse_args(argv)
    if not _has_cells(args.results_dir):
        return 2
    import methods

    rows, superseded = breakdown(args.results_dir)
    text = to_markdown(rows, superseded, args.results_dir, set(methods.names_in_all()))
    if args.out:
        atomic_write_text(args.out, text)
    print(text)
    return 0


def _reference(argv: list[str]) -> int:
    """Write the dry run's reference table from a store this machine wrote: seconds per episode from its
    runs.csv, each method's base training from its cells, the calibration workload's time now."""
    from bench.cost.breakdown import breakdown, repo_relative
    from bench.cost.estimate import _build_passes
    from bench.cost.model import REFERENCE, calibrate, episode_seconds
    from bench.profiles import load_profile, resolve
    from bench.usage import cpu_class

    ap = argparse.ArgumentParser(prog="python -m bench.cost reference", description=_reference.__doc__)
    ap.add_argument("--results-dir", type=Path, required=True)
    ap.add_argument("--dataset", default="tiny-imagenet")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--out", type=Path, default=REFERENCE)
    args = ap.parse_args(argv)
    if not _has_cells(args.results_dir):
        return 2
    rows, _ = breakdown(args.results_dir)
    build: dict[str, float] = {}
    for r in rows:
        if r["base_training_s"] >= 1:
            build[r["method"]] = max(build.get(r["method"], 0.0), r["base_training_s"])
    prof = resolve(load_profile(args.profile), args.image_size)
    group = (args.dataset, args.image_size, args.profile)
    ref = {"source": f"`python -m bench.cost reference --results-dir {repo_relative(args.results_dir)}`: its "
                     "runs.csv's episode wall_s rows and its cells' largest preparation per method",
           "dataset": args.dataset, "image_size": args.image_size, "profile": args.profile, "cpu": cpu_class(),
           "calibration_s": round(calibrate(), 3),
           "build_s": {k: round(v) for k, v in sorted(build.items())},
           "build_passes": {k: float(f"{_build_passes(prof, k):.4g}") for k in sorted(build)},
           "episode_s": {"|".join(k): round(v, 3) for k, v in
                         sorted(episode_seconds(args.results_dir / "runs.csv", group).items())}}
    atomic_write_text(args.out, json.dumps(ref, indent=1) + "\n")
    print(f"wrote {repo_relative(args.out)}: {len(ref['episode_s'])} episode times, {len(build)} builds")
    return 0


def _device(argv: list[str]) -> int:
    from bench.cost import device

    return device.main(argv)


COMMANDS = {"breakdown": _breakdown, "reference": _reference, "device": _device}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
