"""`python -m bench`: run the grid, rebuild reports, list what exists.

Every user mistake ends in one line on stderr (what is wrong and how to fix it) and exit code 2,
before any work is done or anything is written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import profiles as profiles_mod
from bench.errors import UsageError
from bench.executors import EXECUTORS
from bench.experiments import EXPERIMENT_NAMES, get_experiment
from bench.report_command import cmd_report
from bench.run_command import cmd_run
from tasks.errors import DataError

EPILOG = """examples:
  python -m bench run --method all --profile smoke --dataset synthetic      # a 2-minute demo, no data needed
  # without --results-dir only the quick profile on real data writes ./results (the committed results);
  # every other run writes ./runs/<dataset>_<profile>/
  python -m bench run --method scratch,learngene --dataset tiny-imagenet --profile smoke   # -> runs/tiny-imagenet_smoke
  python -m bench run --method all --profile quick --dry-run                 # the grid and its estimated cost
  python -m bench report --results-dir results                               # rebuild tables/figures only
  python -m bench list methods --plugin path/to/my_method.py              # your own method, no fork
  python -m bench compare learngene scratch --results-dir results          # paired difference, with verdict
"""

PLUGIN_HELP = ("load a method from a .py file or an importable module (path.py[:Class] or module[:Class]); "
               "repeatable. Installed packages register through the entry point group learngene_bench.methods")


#: Upper bounds of count flags: far above any real use, low enough that a typo (an extra digit) cannot
#: plan a grid of millions of hours.
MAXIMA = {"--seeds": 1000, "--tasks": 100_000, "--workers": 4096, "--threads": 4096, "--shots": 10_000,
          "--queries": 100_000, "--image-size": 100_000}


def _positive(name: str, extra: str = ""):
    def parse(text: str) -> int:
        top = MAXIMA.get(name)
        what = f"{name} must be a positive integer{f' up to {top}' if top else ''}{extra}"
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}, got '{text}'") from None
        if value <= 0 or (top and value > top):
            raise argparse.ArgumentTypeError(f"{what}, got {value}")
        return value
    return parse


def _queries(text: str) -> int | str:
    return "all" if text == "all" else _positive("--queries", " or 'all' (every test image)")(text)


def _artifact_seed(text: str) -> int | str:
    if text == "cell":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--artifact-seed must be an integer >= 0 or 'cell', got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"--artifact-seed must be an integer >= 0 or 'cell', got {value}")
    return value


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
        self.exit(2, f"error: {message}{self._suggest(message)} (see {self.prog} --help)\n")

    def _suggest(self, message: str) -> str:
        """'; did you mean --method?' for a misspelt flag (abbreviations are never accepted)."""
        import difflib

        if not message.startswith("unrecognized arguments:"):
            return ""
        flags = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        for sub in self._subparsers._group_actions if self._subparsers else []:
            for p in getattr(sub, "choices", {}).values():
                flags += [o for a in p._actions for o in a.option_strings if o.startswith("--")]
        for word in message.split(":", 1)[1].split():
            if word.startswith("-"):
                close = difflib.get_close_matches(word.split("=")[0], sorted(set(flags)), n=1, cutoff=0.6)
                if close:
                    return f"; did you mean {close[0]}?"
        return ""


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m bench", description="learngene-bench: learngene vs few-shot baselines, reproducibly.",
                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("--debug", action="store_true", help="print the full traceback of a failing plugin or error")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run (or resume) the grid of cells, then write tables and figures",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    r.add_argument("--method", default="all", help="all (the paper's rows), checks (the rows that check the code: recipe checks, the released "
                        "code's behaviour), or comma-separated names (see `list methods`)")
    r.add_argument("--experiment", default="all", help=f"all, or comma-separated: {', '.join(EXPERIMENT_NAMES)}")
    r.add_argument("--dataset", default="auto", help="auto (first real dataset in the data dir, else CIFAR-100 download), "
                   "tiny-imagenet, cifar100, mini-imagenet, imagefolder, synthetic")
    r.add_argument("--profile", default="quick", help="smoke, quick, paper, or a path to a .toml file (default: quick)")
    r.add_argument("--data-dir", type=Path, default=None, help="where datasets live (default: $BENCH_DATA_DIR, "
                   "else ../shared/data beside the repository when it exists, else ~/.cache/learngene-bench/data)")
    r.add_argument("--results-dir", type=Path, default=None, help="results store (default: ./results for the quick "
                   "profile on real data, the committed results; else ./runs/<dataset>_<profile>)")
    r.add_argument("--split", type=Path, default=None, help="a JSON class split (base/open_world/novel lists)")
    r.add_argument("--seeds", type=_positive("--seeds"), default=None, help="seeds per cell (profile default)")
    r.add_argument("--tasks", type=_positive("--tasks"), default=None, help="episodes per seed (profile default)")
    r.add_argument("--artifact-seed", type=_artifact_seed, default=None,
                   help="seed of base training (pre-, meta-, collective training): an integer shared by every "
                   "episode seed, or 'cell' for one per episode seed (profile default). Another value trains "
                   "every base model again, to measure base-training variance: give it its own --results-dir")
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
    rep.add_argument("--reference", default=None, help="the method the forest plot compares every other "
                     "method to (default: learngene); one without Table 3 results is an error")

    cmp = sub.add_parser("compare", help="paired difference of two methods over the episodes both ran, with verdict")
    cmp.add_argument("a", help="a method name (e.g. your plugin's)")
    cmp.add_argument("b", help="the method to compare it with (e.g. learngene)")
    cmp.add_argument("--results-dir", type=Path, default=Path("results"))
    cmp.add_argument("--experiment", default="table3", choices=["table3", "table2"],
                     help="whose accuracy to pair (default: table3, novel classes)")

    ls = sub.add_parser("list", help="list methods, experiments, datasets or profiles")
    ls.add_argument("what", choices=["methods", "experiments", "datasets", "profiles"])
    ls.add_argument("--plugin", action="append", default=[], metavar="SPEC", help=PLUGIN_HELP)
    for sp in (r, rep, cmp, ls):  # `--debug` after the subcommand too (SUPPRESS: absent unless given)
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="print the full traceback behind an error")
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
        if getattr(args, "debug", False):
            import traceback

            traceback.print_exception(exc.__cause__ or exc)
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
