"""Profiles: TOML files holding every knob a method or experiment reads (smoke, quick, paper).

A profile is validated against the settings dataclasses (`methods.settings`, and the experiments'
own `Settings`) before any work, and turned into those settings here, once. The resolved profile
(after command-line overrides) and each cell's resolved method settings are stored with every
result, so every number can be traced to its settings, defaults included.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from methods import registry
from methods.settings import (
    CollectiveSettings,
    ComputeSettings,
    EpisodeSettings,
    IndividualSettings,
    SettingsError,
    build,
    check_image_size,
)

PROFILE_DIR = Path(__file__).parent / "profiles"


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_profile(name_or_path: str) -> dict[str, Any]:
    """A profile by name (bench/profiles/<name>.toml) or by path to a TOML file."""
    path = Path(name_or_path)
    if not (path.suffix == ".toml" and path.exists()):
        path = PROFILE_DIR / f"{name_or_path}.toml"
    if not path.exists():
        raise UsageError(f"unknown profile '{name_or_path}'; choose one of: {', '.join(profile_names())} "
                         "(or pass a path to a .toml file)")
    try:
        prof = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"profile {path} is not valid TOML ({exc})") from exc
    prof.setdefault("name", path.stem)
    return prof


def resolve(profile: dict[str, Any], image_size: int | None = None, seeds: int | None = None,
            tasks: int | None = None, shots: list[int] | None = None,
            queries: int | str | None = None, artifact_seed: int | str | None = None) -> dict[str, Any]:
    """Apply command-line overrides; returns a new dict (the one stored with results)."""
    prof = copy.deepcopy(profile)
    if image_size is not None:
        prof.setdefault("data", {})["image_size"] = image_size
    if seeds is not None:
        prof.setdefault("episodes", {})["seeds"] = seeds
    if tasks is not None:
        prof.setdefault("episodes", {})["tasks"] = tasks
    if shots is not None:
        prof.setdefault("episodes", {})["shots"] = list(shots)
    if queries is not None:
        prof.setdefault("episodes", {})["queries"] = queries
    if artifact_seed is not None:
        prof.setdefault("episodes", {})["artifact_seed"] = artifact_seed
    return prof


# ---------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class DataSettings:
    """`[data]`: image sizes and the synthetic dataset's shape."""

    image_size: int = field(default=32, metadata={"gt": 0})
    """Pixels (--image-size overrides)."""
    image_sizes: tuple[int, ...] | None = None
    """Several image sizes, each its own grid (--image-size overrides)."""
    synthetic: dict | None = None
    """Options of the synthetic dataset (num_classes, train_per_class, test_per_class)."""


@dataclass(frozen=True)
class ExecutorSettings:
    """`[executor]`: resources of distributed executors."""

    cell_memory_mb: int = field(default=4096, metadata={"gt": 0})
    """Memory each Ray task declares."""


TOP_LEVEL = {"name", "description", "data", "episodes", "individual", "collective", "methods", "experiments",
             "executor", "compute"}
SECTIONS: dict[str, type] = {"data": DataSettings, "episodes": EpisodeSettings, "individual": IndividualSettings,
                             "collective": CollectiveSettings, "executor": ExecutorSettings,
                             "compute": ComputeSettings}


def profile_path(name_or_path: str) -> Path:
    """The file a profile name or path refers to (for messages)."""
    path = Path(name_or_path)
    return path if path.suffix == ".toml" and path.exists() else PROFILE_DIR / f"{name_or_path}.toml"


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(sorted(options))}"


def _check(profile: dict[str, Any], cli_sizes: list[int] | None, method_names: list[str],
           experiments: dict[str, type | None]) -> list[int]:
    """The image sizes to run, or SettingsError for the first bad key or value (see `validate`)."""
    for key, value in profile.items():
        if key not in TOP_LEVEL:
            raise SettingsError("top level", key, "unknown section" + _did_you_mean(key, sorted(TOP_LEVEL)))
        if key in ("name", "description"):
            if not isinstance(value, str):
                raise SettingsError("top level", key, f"must be a string, got {value!r}")
        elif not isinstance(value, dict):
            raise SettingsError(key, "", f"must be a table [{key}], got {value!r}")
    for section, cls in SECTIONS.items():
        build(cls, [(section, profile.get(section, {}))])
    data = build(DataSettings, [("data", profile.get("data", {}))])
    image_sizes = cli_sizes or list(data.image_sizes or [data.image_size])
    families = registry.families()
    for family, values in profile.get("methods", {}).items():
        if family not in families:
            _check_variant_section(family, values, families)
        elif families[family] is not None:
            build(families[family], [(f"methods.{family}", values)])
    for name, values in profile.get("experiments", {}).items():
        if name not in experiments:
            raise SettingsError("experiments", name, "unknown experiment" + _did_you_mean(name, list(experiments)))
        if experiments[name] is not None:
            build(experiments[name], [(f"experiments.{name}", values)])
    for name in method_names:  # the merged settings of every selected method (variants included)
        method_settings(profile, name)
    backbones = {"individual"}
    if any(registry.facts(n).needs_ancestor for n in method_names):
        backbones.add("collective")
    for size in image_sizes:
        for backbone in sorted(backbones):
            check_image_size(size, backbone, "data" if not cli_sizes else "--image-size", "image_size")
    return image_sizes


def _check_variant_section(name: str, values: dict[str, Any], families: dict[str, type | None]) -> None:
    """A `[methods.<variant>]` section (e.g. `[methods.protomaml]`): its keys are the family's, except
    those the variant fixes (Proto-MAML's `proto`), which would be silently overridden."""
    names = registry.names()
    if name not in names:
        known = sorted(set(families) | set(names))
        if difflib.get_close_matches(name, known, n=1):  # most likely a misspelt built-in: say so
            raise SettingsError("methods", name, "unknown method family or method" + _did_you_mean(name, known))
        # A plugin's own section (e.g. [methods.cosine-frozen]) in a shared profile: it applies when the
        # plugin is loaded (--plugin or installed) and must not break the runs that do not load it.
        print(f"note: profile section [methods.{name}] names no loaded method; it is ignored in this run "
              "(load its plugin with --plugin, or install it)", file=sys.stderr)
        return
    e = registry.entry(name)
    if families.get(e.family) is not None:
        build(families[e.family], [(f"methods.{name}", values)])
    for key in values:
        if key in e.options:
            raise SettingsError(f"methods.{name}", key, f"is fixed by the method {name} (= {e.options[key]!r}); "
                                "use another method name instead")


def validate(profile: dict[str, Any], path: Path | str, cli_sizes: list[int] | None, method_names: list[str],
             experiments: dict[str, type | None]) -> list[int]:
    """Check every section of a profile against its settings class before any work is done: unknown
    keys (with a "did you mean"), wrong types and out-of-range values (and image sizes too small for a
    backbone) become one UsageError naming the file, section and key. `experiments` maps each
    experiment's name to its `Settings` class (None: its section is not checked). Returns the image
    sizes to run (`cli_sizes`, else the profile's)."""
    try:
        return _check(profile, cli_sizes, method_names, experiments)
    except SettingsError as exc:
        raise UsageError(f"profile {path}: {exc}") from None


def collective_settings(profile: dict[str, Any]) -> CollectiveSettings:
    """`[collective]`, plus what Figure 6a needs from the one shared collective run: its checkpoints
    (kept by every variant's run, so they are part of its cache key). Figure 6b's uniform width is a
    cell option of its cells instead (`collective.uniform_width`, see bench.experiments.fig6)."""
    c = build(CollectiveSettings, [("collective", profile.get("collective", {}))])
    fig6 = profile.get("experiments", {}).get("fig6", {})
    checkpoints = tuple(sorted({*c.checkpoints, *map(int, fig6.get("checkpoints", ()))}))
    return dataclasses.replace(c, checkpoints=checkpoints)


@dataclass(frozen=True)
class ExperimentSettings:
    """What every `[experiments.<name>]` section may set; an experiment's `Settings` extends it."""

    seeds: int | None = field(default=None, metadata={"gt": 0})
    """Seeds of this experiment's cells (None = [episodes] seeds)."""
    row_seeds: dict[str, int] = field(default_factory=dict, metadata={"gt": 0})
    """Seeds of the named methods' rows where they differ from `seeds` ({learngene = 3}): a row runs
    the first seeds' episodes, so rows with fewer seeds are paired with the others on those. Sized by
    a power calculation (`python -m bench.power`) so each comparison is decided at the least cost."""

    def seed_range(self, profile: dict[str, Any], method: str | None = None) -> range:
        """The seeds of `method`'s cells (its `row_seeds` entry, else `seeds`, else [episodes] seeds)."""
        if method is not None and method in self.row_seeds:
            return range(self.row_seeds[method])
        return range(self.seeds or episode_settings(profile).seeds)


def experiment_settings(profile: dict[str, Any], name: str, cls: type) -> Any:
    """`[experiments.<name>]` as the experiment's `Settings` dataclass."""
    return build(cls, [(f"experiments.{name}", profile.get("experiments", {}).get(name, {}))])


def row_seed_ranges(profile: dict[str, Any], experiment: str, cls: type, methods: list[str]) -> dict[str, range]:
    """Each of `methods`' seeds in `experiment` (its section's `row_seeds`, else `seeds`), in their order.
    A `row_seeds` entry that names no registered method is refused: a misspelt row would silently run
    at the default."""
    cfg = experiment_settings(profile, experiment, cls)
    known = registry.names()
    for name in cfg.row_seeds:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "see `python -m bench list methods`"
            raise UsageError(f"[experiments.{experiment}] row_seeds names an unknown method '{name}'; {hint}")
    return {m: cfg.seed_range(profile, m) for m in methods}


def rows_by_seed(profile: dict[str, Any], experiment: str, cls: type, methods: list[str]) -> dict[int, list[str]]:
    """Seed -> the methods whose rows run it (in `methods`' order), from `row_seed_ranges`: a row runs
    the first seeds, so every row pairs with the others on the seeds they share."""
    seeds = row_seed_ranges(profile, experiment, cls, methods)
    last = max((len(r) for r in seeds.values()), default=0)
    return {s: [m for m, r in seeds.items() if s in r] for s in range(last)}


def compute_settings(profile: dict[str, Any]) -> ComputeSettings:
    return build(ComputeSettings, [("compute", profile.get("compute", {}))])


def episode_settings(profile: dict[str, Any]) -> EpisodeSettings:
    return build(EpisodeSettings, [("episodes", profile.get("episodes", {}))])


def method_settings(profile: dict[str, Any], name: str, options: dict[str, Any] | None = None) -> Any:
    """The named method's settings: its sections, what the experiments pass (n-way, the collective
    run), the variant's overrides, then a cell's `options`."""
    given = {"n_way": episode_settings(profile).n_way, "collective": collective_settings(profile)}
    return registry.settings_for(name, profile, given=given, options=options)
