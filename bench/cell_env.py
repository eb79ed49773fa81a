"""Cells and the environment a cell runs in.

A `RunSpec` is everything a worker needs to rebuild its environment (dataset, split, profile,
device, results dir); it is plain data so it travels to process and Ray workers. A `Cell` is one
unit of work (experiment x method x parameters x seed); its full config, hashed, names its
directory in the store. `Env` is the worker-side state: the loaded ImageSet, the class split, the
artifact cache and the prepared methods, built once per process. `run_episodes` is a cell's episode
loop in that environment. (Named for what it holds; choosing and executing cells is `bench.run_command`,
`bench.cells` and the executors.)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import methods
from bench import profiles
from methods.artifacts import ArtifactCache
from methods.base import EpisodeData, SourceData
from methods.plugins import fingerprint as plugin_fingerprint
from methods.plugins import load_plugin
from methods.settings import to_json
from methods.training import set_compute
from tasks.datasets import load_dataset
from tasks.episodes import sample_episodes
from tasks.imageset import ImageSet
from tasks.splits import ClassSplit, resolve_split


@dataclass(frozen=True)
class RunSpec:
    dataset: str
    data_dir: str
    image_size: int
    profile: dict
    results_dir: str
    device: str = "cpu"
    split_file: str | None = None
    threads: int | None = None
    plugins: tuple[str, ...] = ()  # --plugin specs, loaded again in each worker process

    @property
    def cache_dir(self) -> Path:
        return Path(self.results_dir) / "artifacts"


@dataclass(frozen=True)
class Cell:
    experiment: str
    method: str
    params: dict = field(default_factory=dict)

    def label(self) -> str:
        bits = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()) if k != "method_options")
        return f"{self.experiment}/{self.method}[{bits}]"


def resolve_device(name: str) -> str:
    """'auto' -> cuda when available, else cpu."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


class Env:
    """Worker-side state built once per process from a RunSpec."""

    def __init__(self, spec: RunSpec):
        self.spec = spec
        for plugin in spec.plugins:
            load_plugin(plugin)
        if spec.threads:
            torch.set_num_threads(spec.threads)
        set_compute(profiles.compute_settings(spec.profile))  # [compute]: every loop of this process
        self.device = torch.device(resolve_device(spec.device))
        synth = spec.profile.get("data", {}).get("synthetic")
        self.data: ImageSet = load_dataset(spec.dataset, Path(spec.data_dir), spec.image_size,
                                           synthetic_options=synth)
        self.split: ClassSplit = resolve_split(self.data, Path(spec.split_file) if spec.split_file else None)
        self.cache = ArtifactCache(spec.cache_dir)
        self.episodes = profiles.episode_settings(spec.profile)
        self.collective = profiles.collective_settings(spec.profile)
        self._methods: dict[Any, Any] = {}

    def source(self, seed: int) -> SourceData:
        return SourceData(self.data, self.split, self.episodes.artifact_seed_for(seed), dataset=self.spec.dataset)

    def prepared(self, name: str, seed: int, options: dict | None = None):
        """The method with its settings (plus a cell's `options`), prepared on base classes (from the
        artifact cache when it ran before)."""
        settings = profiles.method_settings(self.spec.profile, name, options)
        key = (name, self.episodes.artifact_seed_for(seed), repr(settings))
        if key not in self._methods:
            m = methods.get(name, self.device)
            m.prepare(self.source(seed), settings, self.cache)
            self._methods[key] = m
        return self._methods[key]


_ENVS: dict[str, Env] = {}


def env_for(spec: RunSpec) -> Env:
    key = repr(asdict(spec))
    if key not in _ENVS:
        _ENVS.clear()  # one environment per worker process at a time: datasets are large
        _ENVS[key] = Env(spec)
    return _ENVS[key]


def cell_options(cell: Cell) -> dict:
    """The settings fields a cell overrides: its `method_options` (a checkpoint, Figure 4's epochs)."""
    return dict(cell.params.get("method_options") or {})


def key_profile(profile: dict) -> dict:
    """The part of a profile that goes into a cell's key (and its stored config). Left out, so that
    changing them keeps every stored cell they do not affect: the prose `description`; the
    `[methods.*]` sections (a cell stores its own method's resolved `settings`, which hold every
    method key it reads, so raising ProtoNet's budget re-runs only ProtoNet's cells); and
    `[episodes] seeds` (a cell is one seed: adding seeds adds cells and keeps the old ones)."""
    out = {k: v for k, v in profile.items() if k not in ("description", "methods")}
    if "episodes" in out:
        out["episodes"] = {k: v for k, v in out["episodes"].items() if k != "seeds"}
    return out


#: Keys of an `[experiments.<name>]` section that only say how many seeds run: not part of a cell's key.
SEED_COUNTS = ("seeds", "row_seeds")


def cell_config(cell: Cell, spec: RunSpec, data_id: str, split: dict) -> dict:
    """Everything that determines a cell's numbers; its hash names the cell's directory. The cell's
    resolved method settings (defaults included) are stored with it."""
    # Only this experiment's own section, less its numbers of seeds (a cell is one seed): tuning Figure 4
    # must not invalidate Table 3's cells, and giving a row more seeds keeps its stored ones.
    section = spec.profile.get("experiments", {}).get(cell.experiment, {})
    profile = key_profile({**spec.profile, "experiments": {
        cell.experiment: {k: v for k, v in section.items() if k not in SEED_COUNTS}}})
    settings = profiles.method_settings(spec.profile, cell.method, cell_options(cell))
    return {"experiment": cell.experiment, "method": cell.method, "params": cell.params,
            "dataset": spec.dataset, "data_id": data_id, "image_size": spec.image_size,
            "split": split, "profile": profile, "settings": to_json(settings),
            "device_type": torch.device(resolve_device(spec.device)).type,
            **({"plugin": plug} if (plug := plugin_fingerprint(cell.method)) else {})}


#: Episodes handed to `Method.run_episodes` per call (a multiple of the stacks' 16).
EPISODES_PER_CALL = 64


def run_episodes(env: Env, method: str, pool: str, shots: int, seed: int, n_tasks: int | None = None,
                 options: dict | None = None, curve: bool = True) -> list[dict]:
    """Run a method on `n_tasks` seeded episodes from one class pool; tidy rows per episode (and epoch).
    `options` are settings fields of this cell (a checkpoint, Figure 4's epochs). `curve=False` skips
    the per-epoch query evaluation (tables need only the final accuracy, which does not change)."""
    ep = env.episodes
    episodes = sample_episodes(env.data, env.split.ids(env.data, pool), ep.n_way, shots, ep.queries_per_class(),
                               n_tasks or ep.tasks, seed)
    m = env.prepared(method, seed, options)
    # The cell's episodes go to the method together, so it can adapt several at once (scratch and
    # learngene stack them on CUDA), in slices of EPISODES_PER_CALL so their images are not all in
    # memory at once. wall_s is each result's own: its call, or its stack's wall time / the stack size.
    results = []
    for i in range(0, len(episodes), EPISODES_PER_CALL):
        results += m.run_episodes([
            EpisodeData(env.data.images[e.support], e.support_labels, env.data.images[e.query], e.query_labels,
                        e.n_way, e.k_shot, seed, e.index, record_curve=curve)
            for e in episodes[i:i + EPISODES_PER_CALL]])
    rows: list[dict] = []
    for e, res in zip(episodes, results, strict=True):
        wall = res.wall_s
        base = {"episode": e.index, "classes": ",".join(env.data.class_names[c] for c in e.classes)}
        rows.append({**base, "metric": "accuracy", "value": res.accuracy})
        rows.append({**base, "metric": "wall_s", "value": wall})
        rows.append({**base, "metric": "params", "value": res.params})
        for i, acc in enumerate(res.curve or []):
            rows.append({**base, "metric": "curve", "epoch": i + 1, "value": acc})
        for k, v in (res.extra or {}).items():
            if isinstance(v, int | float):
                rows.append({**base, "metric": k, "value": float(v)})
    return rows


def run_cell_episodes(env: Env, cell: Cell, pool: str, n_tasks: int | None = None, curve: bool = True) -> list[dict]:
    """`run_episodes` for a cell whose params hold its shots and seed (and its settings overrides)."""
    return run_episodes(env, cell.method, pool, cell.params["shots"], cell.params["seed"], n_tasks, cell_options(cell),
                        curve=curve)
