"""`python -m bench`: run the grid, rebuild reports, list what exists.

Every user mistake ends in one line on stderr (what is wrong and how to fix it) and exit code 2,
before any work is done or anything is written.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from bench import profiles as profiles_mod
from bench.atomic import atomic_write_text
from bench.errors import UsageError
from bench.executors import EXECUTORS, check_executor, run_cells
from bench.experiments import EXPERIMENT_NAMES, get_experiment
from bench.lock import ResultsLock
from bench.runner import Cell, Env, RunSpec, cell_config, env_for, resolve_device
from bench.store import ResultsStore
from bench.usage import cpu_seconds, peak_rss_mib
from tasks.errors import DataError

EPILOG = """examples:
  python -m bench run --method all --profile smoke --dataset synthetic      # a 2-minute demo, no data needed
  python -m bench run --method scratch,learngene --dataset tiny-imagenet --data-dir ../shared/data
  python -m bench run --method all --profile quick --dry-run                 # the grid and its estimated cost
  python -m bench report --results-dir results                               # rebuild tables/figures only
  python -m bench list methods --plugin path/to/my_method.py              # your own method, no fork
  python -m bench compare learngene scratch --results-dir results          # paired difference, with verdict
"""

PLUGIN_HELP = ("load a method from a .py file or an importable module (path.py[:Class] or module[:Class]); "
               "repeatable. Installed packages register through the entry point group learngene_bench.methods")


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


def _queries(text: str) -> int | str:
    return "all" if text == "all" else _positive("--queries")(text)


def _sizes(text: str, flag: str = "--image-size") -> list[int]:
    out = []
    for part in text.split(","):
        out.append(_positive(flag)(part.strip()))
    return out


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        # No abbreviations: `--meth` must not silently mean `--method`, or a future flag could change
        # what an old command line does.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

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
    r.add_argument("--shots", type=lambda t: _sizes(t, "--shots"), default=None, help="Table 3 shots per class, e.g. 5,10 (profile default)")
    r.add_argument("--queries", type=_queries, default=None, help="query images per class, or all (profile default)")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto (cuda if present)")
    r.add_argument("--executor", default="serial", choices=EXECUTORS, help="serial (default), process, ray")
    r.add_argument("--workers", type=_positive("--workers"), default=None, help="workers for process/ray")
    r.add_argument("--threads", type=_positive("--threads"), default=None,
                   help="torch threads per cell (default: all cores for serial, cores // workers for process/ray); "
                   "CPU numbers depend on it, so pass the same value to compare executors exactly")
    r.add_argument("--ray-address", default=None, help="join an existing Ray cluster (e.g. 10.0.0.1:6379)")
    r.add_argument("--dry-run", action="store_true", help="print the grid of cells and its estimated cost; run nothing")
    r.add_argument("--no-report", action="store_true", help="skip writing tables/figures at the end")
    r.add_argument("--wait", action="store_true", help="if another run holds the results directory, wait for it "
                   "instead of exiting")
    r.add_argument("--plugin", action="append", default=[], metavar="SPEC", help=PLUGIN_HELP)

    rep = sub.add_parser("report", help="rebuild tables, figures and runs.csv from stored results only")
    rep.add_argument("--results-dir", type=Path, default=Path("results"))
    rep.add_argument("--wait", action="store_true", help="if a run holds the results directory, wait for it")
    rep.add_argument("--reference", default="learngene", help="the method the forest plot compares every other "
                     "method to (default: learngene)")

    cmp = sub.add_parser("compare", help="paired difference of two methods over the episodes both ran, with verdict")
    cmp.add_argument("a", help="a method name (e.g. your plugin's)")
    cmp.add_argument("b", help="the method to compare it with (e.g. learngene)")
    cmp.add_argument("--results-dir", type=Path, default=Path("results"))
    cmp.add_argument("--experiment", default="table3", choices=["table3", "table2"],
                     help="whose accuracy to pair (default: table3, novel classes)")

    ls = sub.add_parser("list", help="list methods, experiments, datasets or profiles")
    ls.add_argument("what", choices=["methods", "experiments", "datasets", "profiles"])
    ls.add_argument("--plugin", action="append", default=[], metavar="SPEC", help=PLUGIN_HELP)
    return p


# ---------------------------------------------------------------------------------------------- list


def cmd_list(args) -> int:
    if args.what == "methods":
        import methods
        from methods.plugins import BUILTIN, origin

        for name, desc in methods.describe().items():
            where = origin(name)
            print(f"{name:22s} {'built-in' if where == BUILTIN else 'plugin':9s} {desc}"
                  + ("" if where == BUILTIN else f" [{where}]"))
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


def _spec(args, profile: dict, size: int, data_dir: Path, store: ResultsStore) -> RunSpec:
    return RunSpec(dataset=args.dataset_resolved, data_dir=str(data_dir), image_size=size,
                   profile=profiles_mod.resolve(profile, size, args.seeds, args.tasks,
                                                shots=getattr(args, "shots", None),
                                                queries=getattr(args, "queries", None)),
                   results_dir=str(store.root), device=resolve_device(args.device),
                   split_file=str(args.split) if args.split else None, threads=getattr(args, "threads", None),
                   plugins=tuple(getattr(args, "plugin_specs", ())))


def _cells(spec: RunSpec, method_names: list[str], experiments: list[str]) -> list[Cell]:
    return [cell for name in experiments for cell in get_experiment(name).cells(spec, method_names)]


def plan(args, profile: dict, size: int, method_names: list[str], experiments: list[str],
         data_dir: Path, store: ResultsStore) -> tuple[RunSpec, list[tuple[Cell, dict]], Env]:
    """Load the data (validating it), build the grid for one image size, and the config of each cell."""
    spec = _spec(args, profile, size, data_dir, store)
    env = env_for(spec)  # the serial executor reuses this environment instead of loading the data again
    _validate_shots(env, spec.profile, experiments)
    data_id = env.data.extra.get("checksum", env.data.source or env.data.name)
    split = env.split.to_json()
    grid = [(cell, cell_config(cell, spec, data_id, split)) for cell in _cells(spec, method_names, experiments)]
    return spec, grid, env


def _validate_shots(env: Env, profile: dict, experiments=EXPERIMENT_NAMES) -> None:
    """Fail before any work if a class has fewer images than the selected experiments' shots/queries need."""
    from bench.datacheck import check_class_sizes, needs
    from tasks.episodes import sample_episodes

    ep = env.episodes
    n_query = ep.queries_per_class()
    reqs = needs(profile, experiments, n_query)
    check_class_sizes(env.data, env.split, reqs, ep.n_way)  # names the short classes and what fits
    for r in reqs:  # the sampler's own checks (e.g. fewer classes than ways)
        sample_episodes(env.data, env.split.ids(env.data, r.pool), ep.n_way, r.shots, n_query, 1, 0)


def cmd_run(args) -> int:
    """Validate everything (arguments, GPU, data, shots) for every image size, then create and lock
    the results directory, then run. Nothing is written before the last check has passed."""
    import methods
    from bench import validate

    check_executor(args.executor)
    profile = profiles_mod.load_profile(args.profile)
    method_names = validate.unique(_select(args.method, methods.names(), "method"), "--method")
    experiments = validate.unique(_select(args.experiment, list(EXPERIMENT_NAMES), "experiment"), "--experiment")
    if args.dataset != "auto":
        from tasks.datasets import dataset_names

        if args.dataset not in dataset_names():
            raise UsageError(f"unknown dataset '{args.dataset}'; choose one of: {', '.join(dataset_names())}")
    if args.image_size:  # the command line's sizes first: their message names the flag and the allowed range
        validate.check_image_sizes(args.image_size, from_profile=False)
        for size in args.image_size:
            validate.check_collective_size(size, method_names)
    # The whole profile is checked before anything is written (one line naming file, section, key).
    sizes = profiles_mod.validate(profile, profiles_mod.profile_path(args.profile), args.image_size, method_names,
                                  {n: getattr(get_experiment(n), "Settings", None) for n in EXPERIMENT_NAMES})
    validate.check_image_sizes(sizes, from_profile=not args.image_size)
    if not (args.executor == "ray" and args.ray_address):  # a joined cluster's GPUs are checked by the executor
        validate.check_device(args.device)
    store = ResultsStore(args.results_dir)
    if args.results_dir.exists() and not args.results_dir.is_dir():
        raise UsageError(f"--results-dir {args.results_dir} is a file, not a folder; pass a folder")
    data_dir = _data_dir(args.data_dir)
    source = validate.data_dir_source(args.data_dir)
    if args.dataset == "synthetic":
        args.dataset_resolved = "synthetic"
    else:
        args.dataset_resolved = validate.resolve_dataset(args.dataset, data_dir, source, args.dry_run)
    for size in sizes:  # cheap checks of every size before any data is loaded
        spec = _spec(args, profile, size, data_dir, store)
        validate.check_collective_size(size, {c.method for c in _cells(spec, method_names, experiments)})
    # Loading the data is the last check (corrupt files, too few images per class); environments are
    # rebuilt from the decode cache when a run has several sizes, so only one is held at a time.
    plans = [plan(args, profile, size, method_names, experiments, data_dir, store)[:2] for size in sizes]
    if args.dry_run:
        from bench.estimate import describe_grid

        for spec, grid in plans:
            todo = [(c, cfg) for c, cfg in grid if not store.is_done(cfg)]
            _note_synthetic(spec, profile)
            _note_derived_split(store, spec, env_for(spec), write=False)
            print(describe_grid(spec, grid, todo, env_for(spec)))
        return 0
    store.check_writable()  # the first write: create the results directory
    lock = ResultsLock(store.root).acquire(wait=getattr(args, "wait", False), purpose=_command())
    try:
        _run_plans(args, store, profile, plans)
        if not args.no_report:
            return _report(Path(args.results_dir))
    finally:
        lock.release()
    return 0


def _command() -> str:
    return "python -m bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _note_synthetic(spec: RunSpec, profile: dict) -> None:
    if spec.dataset == "synthetic":
        print(f"note: synthetic {spec.image_size}px profile={profile['name']} uses SYNTHETIC procedural images; "
              "its numbers say nothing about real data", file=sys.stderr)


def _run_plans(args, store: ResultsStore, profile: dict, plans: list[tuple[RunSpec, list[tuple[Cell, dict]]]]) -> None:
    """Run every size's grid under the results lock: which cells are done is read only now, so two
    runs never compute the same cell."""
    command = _command()
    # The code version is read before any work, so the record names the code that ran.
    code = {"commit": _git("rev-parse", "--short", "HEAD"),
            # results files written by earlier runs are not code changes
            "dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "--", ":/", ":(top,exclude)results"))}
    for spec, grid in plans:
        t0, cpu0 = time.time(), cpu_seconds()
        size = spec.image_size
        for _, cfg in grid:
            if store.has_marker(cfg) and not store.is_done(cfg):
                d = store.cell_dir(cfg)
                print(f"warning: cell {d.relative_to(store.root)} ({cfg['experiment']}/{cfg['method']}) is damaged "
                      f"({store.damage(d)}); computing it again", file=sys.stderr)
        todo = [(c, cfg) for c, cfg in grid if not store.is_done(cfg)]
        label = f"{spec.dataset} {size}px profile={profile['name']}"
        _note_synthetic(spec, profile)
        _note_derived_split(store, spec, env_for(spec), write=True)
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
        _record_run(store, spec, command, code, time.time() - t0, done_now, len(grid) - len(todo),
                    cpu_seconds() - cpu0)


def _note_derived_split(store: ResultsStore, spec: RunSpec, env: Env, write: bool) -> None:
    """A user's own folder without a split file gets a seeded division: say so, and save it as a file
    the user can edit and pass back with --split."""
    if env.data.synthetic or not env.split.source.startswith("seeded"):
        return
    s = env.split
    path = store.root / "meta" / f"split_{spec.dataset}_{spec.image_size}px.json"
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(s.to_json(), indent=1))
    print(f"note: no split file for {spec.dataset}: derived a seeded division ({len(s.base)} base / "
          f"{len(s.open_world)} open-world / {len(s.novel)} novel classes)"
          + (f", saved to {path}; edit it and pass --split FILE to choose your own" if write else ""), file=sys.stderr)


def _record_run(store: ResultsStore, spec: RunSpec, command: str, code: dict, wall: float, ran: int,
                skipped: int, cpu: float) -> None:
    meta_dir = store.root / "meta"
    meta_dir.mkdir(parents=True, exist_ok=True)
    rec = {"dataset": spec.dataset, "image_size": spec.image_size, "profile": spec.profile.get("name"),
           "command": command, **code,
           "artifact_seed": profiles_mod.episode_settings(spec.profile).artifact_seed,
           "device": spec.device, "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "wall_s": round(wall, 1),
           "cells_run": ran, "cells_skipped": skipped, "cpu_s": round(cpu, 1),
           # CPU seconds per wall second: 2.0 = both cores of a 2-core machine busy the whole run
           "cpu_per_wall": round(cpu / wall, 2) if wall > 0 else None, **peak_rss_mib(),
           "cpu_count": os.cpu_count()}
    with open(meta_dir / "runs.jsonl", "a") as fh:  # append-only log: one line per run, fsynced
        fh.write(json.dumps(rec) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    prof_path = meta_dir / f"profile_{spec.dataset}_{spec.image_size}px_{spec.profile.get('name')}.json"
    atomic_write_text(prof_path, json.dumps(spec.profile, indent=1, sort_keys=True))


# ---------------------------------------------------------------------------------------------- report


def cmd_report(args) -> int:
    """`report` on its own: take the results lock (a run may be writing cells), then rebuild."""
    results_dir = Path(args.results_dir)
    if not results_dir.is_dir():
        raise UsageError(f"no results in {results_dir}; run `python -m bench run` first or pass --results-dir")
    with ResultsLock(results_dir).acquire(wait=getattr(args, "wait", False), purpose="report"):
        return _report(results_dir, getattr(args, "reference", "learngene"))


def _report(results_dir: Path, reference: str = "learngene") -> int:
    """Tables, figures, runs.csv and README from the stored cells; the caller holds the lock.

    Damaged cells stop the report (a table silently missing a cell would be wrong, not partial), and
    outputs of experiments that no longer have rows are removed, not left on disk looking current."""
    from bench.collect import collect, write_runs_csv
    from bench.report import ReportContext, remove_stale_outputs

    damaged = ResultsStore(results_dir).damaged()
    if damaged:
        names = ", ".join(str(d.relative_to(results_dir)) for d, _ in damaged[:5])
        more = f" and {len(damaged) - 5} more" if len(damaged) > 5 else ""
        raise UsageError(f"{len(damaged)} damaged cell(s) in {results_dir}: {names}{more} ({damaged[0][1]}); run the "
                         "same `python -m bench run` again to recompute them, or delete those cell folders")
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
    from bench.forest import write_forest
    from bench.summary import write_summary

    written += write_forest(df, ctx, reference)
    for path in remove_stale_outputs(ctx, written):
        print(f"removed {path} (its experiment has no rows now)", file=sys.stderr)
    written.append(write_summary(df, ctx))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _load_plugins(args) -> None:
    """Load --plugin specs before anything looks a method up; workers get the same specs via RunSpec."""
    from methods.plugins import load_plugin, resolved_spec

    args.plugin_specs = [resolved_spec(s) for s in getattr(args, "plugin", None) or []]
    for spec in args.plugin_specs:
        load_plugin(spec)


def main(argv: list[str] | None = None) -> int:
    from methods.plugins import PluginError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _load_plugins(args)
        if args.command == "list":
            return cmd_list(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "compare":
            from bench.compare import compare

            print("\n".join(compare(args.results_dir, args.a, args.b, args.experiment)))
            return 0
        return cmd_run(args)
    except (UsageError, DataError, PluginError) as exc:
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
