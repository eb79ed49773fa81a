"""`python -m bench`: run the grid, rebuild reports, list what exists.

Every user mistake ends in one line on stderr (what is wrong and how to fix it) and exit code 2,
before any work is done or anything is written.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from bench import profiles as profiles_mod
from bench.errors import UsageError
from bench.executors import EXECUTORS, check_executor, run_cells
from bench.experiments import EXPERIMENT_NAMES, get_experiment
from bench.runner import Cell, Env, RunSpec, cell_config, env_for, resolve_device
from bench.store import ResultsStore
from tasks.errors import DataError

EPILOG = """examples:
  python -m bench run --method all --profile smoke --dataset synthetic      # a 2-minute demo, no data needed
  python -m bench run --method scratch,learngene --dataset tiny-imagenet --data-dir ../shared/data
  python -m bench run --method all --profile quick --dry-run                 # the grid and its estimated cost
  python -m bench report --results-dir results                               # rebuild tables/figures only
  python -m bench list methods
"""


def _positive(name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got '{text}'") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {value}")
        return value
    return parse


def _sizes(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        out.append(_positive("--image-size")(part.strip()))
    return out


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse's default prints usage too)
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m bench", description="learngene-bench: learngene vs few-shot baselines, reproducibly.",
                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run (or resume) the grid of cells, then write tables and figures",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    r.add_argument("--method", default="all", help="all, or comma-separated names (see `list methods`)")
    r.add_argument("--experiment", default="all", help=f"all, or comma-separated: {', '.join(EXPERIMENT_NAMES)}")
    r.add_argument("--dataset", default="auto", help="auto (first real dataset in the data dir, else CIFAR-100 download), "
                   "tiny-imagenet, cifar100, mini-imagenet, imagefolder, synthetic")
    r.add_argument("--profile", default="quick", help="smoke, quick, paper, or a path to a .toml file (default: quick)")
    r.add_argument("--data-dir", type=Path, default=None, help="where datasets live (default: $BENCH_DATA_DIR, "
                   "else ~/.cache/learngene-bench/data)")
    r.add_argument("--results-dir", type=Path, default=Path("results"), help="results store (default: ./results)")
    r.add_argument("--split", type=Path, default=None, help="a JSON class split (base/open_world/novel lists)")
    r.add_argument("--seeds", type=_positive("--seeds"), default=None, help="seeds per cell (profile default)")
    r.add_argument("--tasks", type=_positive("--tasks"), default=None, help="episodes per seed (profile default)")
    r.add_argument("--image-size", type=_sizes, default=None, help="pixels, or a comma list (profile default)")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto (cuda if present)")
    r.add_argument("--executor", default="serial", choices=EXECUTORS, help="serial (default), process, ray")
    r.add_argument("--workers", type=_positive("--workers"), default=None, help="workers for process/ray")
    r.add_argument("--threads", type=_positive("--threads"), default=None,
                   help="torch threads per cell (default: all cores for serial, cores // workers for process/ray); "
                   "CPU numbers depend on it, so pass the same value to compare executors exactly")
    r.add_argument("--ray-address", default=None, help="join an existing Ray cluster (e.g. 10.0.0.1:6379)")
    r.add_argument("--dry-run", action="store_true", help="print the grid of cells and its estimated cost; run nothing")
    r.add_argument("--no-report", action="store_true", help="skip writing tables/figures at the end")

    rep = sub.add_parser("report", help="rebuild tables, figures and runs.csv from stored results only")
    rep.add_argument("--results-dir", type=Path, default=Path("results"))

    ls = sub.add_parser("list", help="list methods, experiments, datasets or profiles")
    ls.add_argument("what", choices=["methods", "experiments", "datasets", "profiles"])
    return p


# ---------------------------------------------------------------------------------------------- list


def cmd_list(args) -> int:
    if args.what == "methods":
        import methods

        for name, desc in methods.describe().items():
            print(f"{name:20s} {desc}")
    elif args.what == "experiments":
        for name in EXPERIMENT_NAMES:
            print(f"{name:10s} {get_experiment(name).DESCRIPTION}")
    elif args.what == "datasets":
        from tasks.datasets import DATASETS

        print(f"{'auto':15s} the first real dataset found in the data dir, else CIFAR-100 (downloaded)")
        for name, info in DATASETS.items():
            print(f"{name:15s} {info.description}")
    else:
        for name in profiles_mod.profile_names():
            prof = profiles_mod.load_profile(name)
            print(f"{name:20s} {prof.get('description', '')}")
    return 0


# ---------------------------------------------------------------------------------------------- run


def _select(value: str, valid: list[str], what: str) -> list[str]:
    if value == "all":
        return list(valid)
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in chosen if v not in valid]
    if bad or not chosen:
        raise UsageError(f"unknown {what} '{','.join(bad) or value}'; valid {what}s: all, {', '.join(valid)}")
    return chosen


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _data_dir(arg: Path | None) -> Path:
    from tasks.datasets import default_data_dir

    return (arg or default_data_dir()).expanduser()


def plan(args, profile: dict, size: int, method_names: list[str], experiments: list[str],
         data_dir: Path, store: ResultsStore) -> tuple[RunSpec, list[tuple[Cell, dict]], Env]:
    """Load the data (validating it), build the grid for one image size, and the config of each cell."""
    spec = RunSpec(dataset=args.dataset_resolved, data_dir=str(data_dir), image_size=size,
                   profile=profiles_mod.resolve(profile, size, args.seeds, args.tasks),
                   results_dir=str(store.root), device=resolve_device(args.device),
                   split_file=str(args.split) if args.split else None, threads=getattr(args, "threads", None))
    env = env_for(spec)  # the serial executor reuses this environment instead of loading the data again
    _validate_shots(env, spec.profile)
    data_id = env.data.extra.get("checksum", env.data.source or env.data.name)
    grid = []
    for name in experiments:
        for cell in get_experiment(name).cells(spec, method_names):
            grid.append((cell, cell_config(cell, spec, data_id, env.split.to_json())))
    return spec, grid, env


def _validate_shots(env: Env, profile: dict) -> None:
    """Fail before any work if a class has fewer images than the profile's shots/queries need."""
    from bench.experiments import fig4
    from tasks.episodes import sample_episodes

    ep = env.episodes
    checks = [("novel", k) for k in ep.shots] + [("open_world", ep.open_world_shots)]
    if fig4.NAME in profile.get("experiments", {}):
        f4 = profiles_mod.experiment_settings(profile, fig4.NAME, fig4.Settings)
        checks += [("novel", k) for k in (*f4.sample_sizes, f4.shots)]
    for pool, shots in checks:
        sample_episodes(env.data, env.split.ids(env.data, pool), ep.n_way, shots, ep.queries_per_class(), 1, 0)


def cmd_run(args) -> int:
    import methods

    check_executor(args.executor)
    profile = profiles_mod.load_profile(args.profile)
    method_names = _select(args.method, methods.names(), "method")
    experiments = _select(args.experiment, list(EXPERIMENT_NAMES), "experiment")
    data_dir = _data_dir(args.data_dir)
    if args.dataset != "auto":
        from tasks.datasets import dataset_names

        if args.dataset not in dataset_names():
            raise UsageError(f"unknown dataset '{args.dataset}'; choose one of: {', '.join(dataset_names())}")
        args.dataset_resolved = args.dataset
    else:
        from tasks.datasets import resolve_auto

        args.dataset_resolved = resolve_auto(data_dir)
    # The whole profile is checked before anything is written (one line naming file, section, key).
    sizes = profiles_mod.validate(profile, profiles_mod.profile_path(args.profile), args.image_size, method_names,
                                  {n: getattr(get_experiment(n), "Settings", None) for n in EXPERIMENT_NAMES})
    store = ResultsStore(args.results_dir)
    if not args.dry_run:
        store.check_writable()
    command = "python -m bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    # The code version is read before any work, so the record names the code that ran.
    code = {"commit": _git("rev-parse", "--short", "HEAD"),
            # results files written by earlier runs are not code changes
            "dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ":/", ":(top,exclude)results"))}
    for size in sizes:
        t0 = time.time()
        spec, grid, env = plan(args, profile, size, method_names, experiments, data_dir, store)
        todo = [(c, cfg) for c, cfg in grid if not store.is_done(cfg)]
        label = f"{spec.dataset} {size}px profile={profile['name']}"
        if env.data.synthetic:
            print(f"note: {label} uses SYNTHETIC procedural images; its numbers say nothing about real data",
                  file=sys.stderr)
        if args.dry_run:
            from bench.estimate import describe_grid

            print(describe_grid(spec, grid, todo, env))
            continue
        print(f"{label}: {len(grid)} cells, {len(grid) - len(todo)} already done, {len(todo)} to run "
              f"(device {spec.device}, executor {args.executor})", file=sys.stderr)
        configs = {id(c): cfg for c, cfg in todo}
        bar = tqdm(total=len(todo), desc=f"cells {size}px", unit="cell", disable=not todo)
        done_now = 0
        for cell, result in run_cells(args.executor, spec, [c for c, _ in todo], args.workers, args.ray_address):
            store.write(configs[id(cell)], result)
            done_now += 1
            bar.set_postfix_str(cell.label()[:60])
            bar.update()
        bar.close()
        _record_run(store, spec, command, code, time.time() - t0, done_now, len(grid) - len(todo))
    if args.dry_run:
        return 0
    if not args.no_report:
        return cmd_report(argparse.Namespace(results_dir=args.results_dir))
    return 0


def _record_run(store: ResultsStore, spec: RunSpec, command: str, code: dict, wall: float, ran: int,
                skipped: int) -> None:
    meta_dir = store.root / "meta"
    meta_dir.mkdir(parents=True, exist_ok=True)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rec = {"dataset": spec.dataset, "image_size": spec.image_size, "profile": spec.profile.get("name"),
           "command": command, **code,
           "artifact_seed": profiles_mod.episode_settings(spec.profile).artifact_seed,
           "device": spec.device, "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "wall_s": round(wall, 1),
           "cells_run": ran, "cells_skipped": skipped, "peak_rss_mib_driver": round(peak_kb / 1024, 1),
           "cpu_count": os.cpu_count()}
    with open(meta_dir / "runs.jsonl", "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    prof_path = meta_dir / f"profile_{spec.dataset}_{spec.image_size}px_{spec.profile.get('name')}.json"
    prof_path.write_text(json.dumps(spec.profile, indent=1, sort_keys=True))


# ---------------------------------------------------------------------------------------------- report


def cmd_report(args) -> int:
    from bench.collect import collect, write_runs_csv
    from bench.report import ReportContext

    results_dir = Path(args.results_dir)
    if not results_dir.exists():
        raise UsageError(f"no results in {results_dir}; run `python -m bench run` first or pass --results-dir")
    df = collect(results_dir)
    if df.empty:
        raise UsageError(f"no finished cells in {results_dir}; run `python -m bench run` first")
    write_runs_csv(df, results_dir)
    ctx = ReportContext.for_dir(results_dir)
    written = []
    for name in EXPERIMENT_NAMES:
        sub = df[df.experiment == name]
        if not sub.empty:
            written += get_experiment(name).report(sub, ctx)
    from bench.summary import write_summary

    written.append(write_summary(df, ctx))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list(args)
        if args.command == "report":
            return cmd_report(args)
        return cmd_run(args)
    except (UsageError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:  # registry lookups (UnknownMethodError) carry a full sentence
        if type(exc).__name__ == "UnknownMethodError":
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("interrupted: finished cells are kept; run the same command again to resume", file=sys.stderr)
        return 130
