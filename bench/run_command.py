"""`python -m bench run`: validate everything, then create and lock the results directory, then run
the grid of cells and record the run (`meta/runs.jsonl`).

Why its own module: the command is most of the CLI's logic (the order of checks that guarantees
nothing is written before the last one passes); `bench/cli.py` keeps the parser and dispatch.
"""
from __future__ import annotations

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
from bench.cell_env import Cell, Env, RunSpec, cell_config, env_for, key_profile, resolve_device
from bench.errors import UsageError
from bench.executors import check_executor, run_cells
from bench.experiments import EXPERIMENT_NAMES, get_experiment
from bench.lock import ResultsLock
from bench.report_command import report_dir
from bench.store import ResultsStore
from bench.usage import cpu_class, cpu_seconds, peak_rss_mib, usable_cores
from methods.plugins import PluginError


def _select(value: str, valid: list[str], what: str, all_names: list[str] | None = None,
            keywords: tuple[str, ...] = ("all",)) -> list[str]:
    """`keywords` are the group names the flag also takes (listed first in the error, so a user sees them)."""
    if value == "all":
        return list(valid if all_names is None else all_names)
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in chosen if v not in valid]
    if bad or not chosen:
        raise UsageError(f"unknown {what} '{','.join(bad) or value}'; valid {what}s: "
                         f"{', '.join([*keywords, *valid])}")
    return chosen


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


#: The project's shared data folder, relative to the repository (the layout of the machines this
#: benchmark was built on); the Makefile relies on the CLI's rule instead of having its own.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_dir_rule(arg: Path | None) -> tuple[Path, str | None]:
    """The data directory and where it was named. The one rule, for the CLI and `make` alike:
    `--data-dir`, else `$BENCH_DATA_DIR`, else `../shared/data` next to the repository when it holds
    anything, else the user cache (`~/.cache/learngene-bench/data`)."""
    from tasks.datasets import default_data_dir

    if arg is not None:
        return Path(arg).expanduser(), "--data-dir"
    if os.environ.get("BENCH_DATA_DIR"):
        return Path(os.environ["BENCH_DATA_DIR"]).expanduser(), "BENCH_DATA_DIR"
    if SHARED_DATA.is_dir() and any(SHARED_DATA.iterdir()):
        return SHARED_DATA, None
    return default_data_dir().expanduser(), None


def _data_dir(arg: Path | None) -> Path:
    return data_dir_rule(arg)[0]


def _spec(args, profile: dict, size: int, data_dir: Path, store: ResultsStore) -> RunSpec:
    return RunSpec(dataset=args.dataset_resolved, data_dir=str(data_dir), image_size=size,
                   profile=profiles_mod.resolve(profile, size, args.seeds, args.tasks,
                                                shots=getattr(args, "shots", None),
                                                queries=getattr(args, "queries", None),
                                                artifact_seed=getattr(args, "artifact_seed", None)),
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
    from bench.usage import cap_torch_threads

    cap_torch_threads()  # the driver (and the serial executor) never oversubscribe a container's CPU quota
    check_executor(args.executor)
    if args.ray_address and args.executor != "ray":
        raise UsageError(f"--ray-address joins a Ray cluster, but --executor is {args.executor}; "
                         "add --executor ray, or drop --ray-address")
    profile = profiles_mod.load_profile(args.profile)
    for section in REQUIRED_SECTIONS:  # a profile without them would run built-in defaults under its name
        if not isinstance(profile.get(section), dict):
            raise UsageError(f"profile {profiles_mod.profile_path(args.profile)} has no [{section}] section; every "
                             f"profile sets {', '.join(f'[{s}]' for s in REQUIRED_SECTIONS)} (copy them from "
                             "bench/profiles/smoke.toml)")
    method_names = validate.unique(_select(args.method, methods.names(), "method", methods.names_in_all(),
                                           keywords=("all", "checks"))
                                   if args.method != "checks" else methods.names_not_in_all(), "--method")
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
    data_dir, source = data_dir_rule(args.data_dir)
    if args.dataset == "synthetic":
        args.dataset_resolved = "synthetic"
    else:
        args.dataset_resolved = validate.resolve_dataset(args.dataset, data_dir, source, args.dry_run)
    if args.results_dir is None:
        args.results_dir = default_results_dir(profile["name"], args.dataset_resolved)
    store = ResultsStore(args.results_dir)
    if args.results_dir.exists() and not args.results_dir.is_dir():
        raise UsageError(f"--results-dir {args.results_dir} is a file, not a folder; pass a folder")
    for size in sizes:  # cheap checks of every size before any data is loaded
        spec = _spec(args, profile, size, data_dir, store)
        validate.check_collective_size(size, {c.method for c in _cells(spec, method_names, experiments)})
    # Loading the data is the last check (corrupt files, too few images per class); environments are
    # rebuilt from the decode cache when a run has several sizes, so only one is held at a time.
    plans = [plan(args, profile, size, method_names, experiments, data_dir, store)[:2] for size in sizes]
    if args.dry_run:
        from bench.cost.estimate import describe_grid

        done = store.done_dirs_after_rekey(key_profile)
        for spec, grid in plans:
            todo = [(c, cfg) for c, cfg in grid if store.cell_dir(cfg) not in done]
            _note_synthetic(spec, profile)
            _note_derived_split(store, spec, env_for(spec), write=False)
            print(describe_grid(spec, grid, todo, args.executor, args.workers, getattr(args, "threads", None),
                                store.root))
        return 0
    store.check_writable()  # the first write: create the results directory
    lock = ResultsLock(store.root).acquire(wait=getattr(args, "wait", False), purpose=_command())
    try:
        if moved := store.rekey(key_profile):
            print(f"note: {moved} stored cells moved to the current cell key (their numbers are unchanged)",
                  file=sys.stderr)
        _run_plans(args, store, profile, plans)
        if not args.no_report:
            report_dir(Path(args.results_dir))
    finally:
        lock.release()
    print(f"results: {args.results_dir} (python -m bench report --results-dir {args.results_dir}; "
          f"python -m bench compare A B --results-dir {args.results_dir})", file=sys.stderr)
    return 0


#: Sections every profile must set: without them a run would use built-in defaults under the profile's name.
REQUIRED_SECTIONS = ("episodes", "individual")


def default_results_dir(profile_name: str, dataset: str) -> Path:
    """Where a run writes without --results-dir. Only the quick profile on real data writes into
    ./results, the committed store that `make run` regenerates; every other run (smoke, paper, your
    own profile file, synthetic data) defaults to ./runs/<dataset>_<profile>/ (git-ignored), so no
    command erases or changes the committed results unless it is pointed at them. And even then a
    report keeps other (dataset, size, profile) groups' rows, tables and figures
    (`bench.collect.merged`)."""
    if profile_name == "quick" and dataset != "synthetic":
        return Path("results")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{dataset}_{profile_name}")
    return Path("runs") / safe


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
        # A live bar on a terminal; in a log (not a TTY) one plain line per finished cell, no `\r` updates.
        # The ETA is the cost model's (bench.cost), not tqdm's rate: the first cells carry artifact builds.
        tty = sys.stderr.isatty()
        pending = [c for c, _ in todo]
        progress = _progress(args, spec, pending, store)
        bar = tqdm(total=len(todo), desc=f"cells {size}px", unit="cell", disable=not (todo and tty),
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
        done_now, started = 0, time.monotonic()
        try:
            builds = progress.plan.build_seconds() if progress is not None else None
            for cell, result in run_cells(args.executor, spec, list(pending), args.workers, args.ray_address, builds):
                store.write(configs[id(cell)], result)
                pending.remove(cell)
                done_now += 1
                note, eta = _tick(progress, cell, result, bool(pending))
                if tty:
                    if note:
                        bar.write(note, file=sys.stderr)
                    bar.set_postfix_str(f"{eta}, {cell.label()[:50]}", refresh=False)
                    bar.update()
                else:
                    if note:
                        print(note, file=sys.stderr)
                    # the elapsed time beside each ETA, so a log shows how well the ETA held
                    elapsed = int(time.monotonic() - started)
                    print(f"[{done_now}/{len(todo)}] {elapsed // 60}:{elapsed % 60:02d} elapsed, {size}px "
                          f"{cell.label()}" + (f" - {eta}" if eta else ""), file=sys.stderr)
        except PluginError as exc:
            cell_label = _failed_cell(exc, pending)
            log = _log_failure(store, cell_label, exc)
            raise PluginError(f"{exc}; cell {cell_label} not stored, the {done_now} cells finished before it are "
                              f"kept (traceback in {log}, or rerun with --debug)", exc.method) from exc
        finally:
            bar.close()
        _record_run(store, spec, command, code, time.time() - t0, done_now, len(grid) - len(todo),
                    cpu_seconds() - cpu0, getattr(progress, "initial_s", None))


def _progress(args, spec: RunSpec, cells: list[Cell], store: ResultsStore):
    """The cost model's live ETA for `cells` (bench.cost.estimate.Progress), its planned artifact builds
    printed as steps first; None when there is nothing to run or the model cannot be built (the run
    itself never depends on it)."""
    if not cells:
        return None
    from bench.cost.estimate import Progress, pool_workers

    try:
        progress = Progress(spec, cells, pool_workers(args.executor, args.workers, getattr(args, "threads", None),
                                                      len(cells)), store.root)
        for line in progress.steps():
            print(line, file=sys.stderr)
        return progress
    except Exception as exc:  # noqa: BLE001 - an estimate must never stop a run
        print(f"note: no ETA ({type(exc).__name__}: {exc})", file=sys.stderr)
        return None


def _tick(progress, cell: Cell, result: dict, more: bool) -> tuple[str | None, str]:
    """(a build message or None, the ETA text) after a finished cell; never raises into the run."""
    if progress is None:
        return None, ""
    try:
        note = progress.finished(cell, result)
        return note, progress.postfix() if more else ""
    except Exception as exc:  # noqa: BLE001 - an estimate must never stop a run
        return f"note: ETA unavailable ({type(exc).__name__}: {exc})", ""


def _log_failure(store: ResultsStore, cell_label: str, exc: BaseException) -> Path:
    """Append the full traceback of a failed cell to `<results>/cells/failures.log` (git-ignored with
    the cells), so the one-line error can stay one line."""
    import traceback

    log = store.cells_dir / "failures.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {cell_label}\n")
        fh.write("".join(traceback.format_exception(exc)))
    return log


def _failed_cell(exc: PluginError, pending: list[Cell]) -> str:
    """The cell a plugin failed in: the first unfinished cell of its method (exact for the serial executor)."""
    mine = [c for c in pending if c.method == exc.method]
    return mine[0].label() if mine else "(unknown)"


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
                skipped: int, cpu: float, estimated: float | None = None) -> None:
    meta_dir = store.root / "meta"
    meta_dir.mkdir(parents=True, exist_ok=True)
    rec = {"dataset": spec.dataset, "image_size": spec.image_size, "profile": spec.profile.get("name"),
           "command": command, **code,
           "artifact_seed": profiles_mod.episode_settings(spec.profile).artifact_seed,
           "device": spec.device, "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "wall_s": round(wall, 1),
           "cells_run": ran, "cells_skipped": skipped, "cpu_s": round(cpu, 1),
           # CPU seconds per wall second: 2.0 = both cores of a 2-core machine busy the whole run
           "cpu_per_wall": round(cpu / wall, 2) if wall > 0 else None, **peak_rss_mib(),
           "cpu_count": usable_cores(), "cpu": cpu_class(),  # a wall time means little without its CPU
           # the cost model's estimate at the start (what --dry-run says), so every run checks the ETA
           "estimated_s": round(estimated, 1) if estimated else None}
    with open(meta_dir / "runs.jsonl", "a") as fh:  # append-only log: one line per run, fsynced
        fh.write(json.dumps(rec) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    prof_path = meta_dir / f"profile_{spec.dataset}_{spec.image_size}px_{spec.profile.get('name')}.json"
    atomic_write_text(prof_path, json.dumps(spec.profile, indent=1, sort_keys=True))
