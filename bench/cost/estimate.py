"""`--dry-run`'s estimate and `bench run`'s live ETA, both from `bench.cost.model`.

Why one model for both: the old dry run counted FLOPs (5x off) and the progress bar extrapolated its
first cells, which carry the artifact builds (it said 4 h 45 min for a 42-min run). Here both read the
recorded seconds of this machine class, simulate the pool's schedule, and show each artifact build as
a step of its own; during a run the ETA is the simulated rest of the schedule times the observed
ratio of actual to predicted episode seconds.
"""
from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Hashable
from pathlib import Path

from bench.cell_env import Cell, RunSpec
from bench.cost.model import (
    REFERENCE,
    RUN_OVERHEAD_S,
    CellCost,
    calibrate,
    cell_costs,
    cpu_share,
    load_recorded,
    simulate,
)
from bench.usage import usable_cores


def pool_workers(executor: str, workers: int | None, threads: int | None, n_cells: int) -> int:
    """Cells run at once by an executor: serial 1; process/ray as `bench.executors.pool_shape`."""
    if executor == "serial":
        return 1
    from bench.executors import pool_shape

    return pool_shape(workers, max(1, n_cells), threads)[0]


def _method_groups(spec: RunSpec) -> dict[str, Hashable]:
    """Every registered method's artifact group, so a group's shared build is known even when the
    method that recorded it is not in the grid."""
    import methods
    from bench.schedule import artifact_group

    out = {}
    for m in methods.names():
        try:
            out[m] = artifact_group(spec, Cell("table3", m, {}))
        except Exception:  # noqa: BLE001 - a method whose settings need a cell's options: no kin build
            continue
    return out


def _mac_fallback(spec: RunSpec):
    """(episode s, build s) of a cell from the MAC model, for a method with no recorded time."""
    from bench.cost import macs
    from bench.profiles import episode_settings
    from methods.backbones import IndividualNet

    prof = spec.profile
    n_query = episode_settings(prof).queries_per_class() or 50
    ind = macs.macs(IndividualNet(5, spec.image_size, prof.get("individual", {}).get("width", 1.0)), spec.image_size)
    per_s = 2 * ind / ((macs.CPU_TFLOPS if spec.device == "cpu" else macs.GPU_TFLOPS) * 1e12)

    def fallback(cell: Cell) -> tuple[float, float]:
        return (macs.cell_passes(cell, prof, n_query) * per_s, macs.artifact_passes(prof, {cell.method}) * per_s)
    return fallback


def built_groups(spec: RunSpec, store_root: Path | None, group_of, profiles: set[str | None]) -> set[Hashable]:
    """The artifact groups (with their artifact seed) of the store's finished cells of this dataset and
    image size under `profiles` (this one, and one that trains the same networks), when the store
    still holds its artifact cache: their builds are done, so a cell of theirs only loads them."""
    if store_root is None or not any((Path(store_root) / "artifacts").glob("*")):
        return set()
    from bench.store import ResultsStore

    out: set[Hashable] = set()
    for _, config in ResultsStore(store_root).intact():
        if (config.get("dataset"), config.get("image_size")) != (spec.dataset, spec.image_size) or \
                config.get("profile", {}).get("name") not in profiles:
            continue
        try:
            out.add(group_of(Cell(config["experiment"], config["method"], config.get("params", {}))))
        except Exception:  # noqa: BLE001 - a cell of a method since removed or renamed: no group
            continue
    return out


#: Top-level profile keys that change no network a cell trains (their cells' times are alike).
NOT_TRAINING = ("name", "description", "experiments")


def equivalent_profile(profile: dict) -> str | None:
    """The built-in profile this one equals outside `NOT_TRAINING` (and the image size, which a record
    is grouped by anyway), whose recorded times then stand for its own: the study profile is quick's
    networks with more experiments, so quick's base trainings and episodes price its cells."""
    from bench.profiles import load_profile, profile_names

    def trains(p: dict) -> dict:
        out = {k: v for k, v in p.items() if k not in NOT_TRAINING}
        out["data"] = {k: v for k, v in out.get("data", {}).items() if k != "image_size"}
        return out

    mine = trains(profile)
    for name in profile_names():
        if name != profile.get("name") and trains(load_profile(name)) == mine:
            return name
    return None


def recorded_kin(method: str, recorded: set[str]) -> str | None:
    """The recorded method nearest `method` by class (its own class first, then each base class in
    method-resolution order), of the same family, with the fewest registered overrides: whose times
    price a method with none of its own (a study variant of learngene, a probe of another ancestor)."""
    from methods import registry

    entry = registry.entry(method)
    for base in entry.factory.__mro__:
        kin = [n for n in sorted(recorded) if n in registry.names() and registry.entry(n).factory is base
               and registry.entry(n).family == entry.family]
        if kin:
            return min(kin, key=lambda n: len(registry.entry(n).options))
    return None


def _reference_cells(rec) -> Callable[[Cell], Cell]:
    """A cell's reference for pricing: itself without its options (what the records are of), as its
    `recorded_kin` when its own method has no record."""
    from bench.cost.model import _without_options

    recorded = {m for _, m, _ in rec.episode_s}

    def reference(cell: Cell) -> Cell:
        plain = _without_options(cell)
        if cell.method in recorded:
            return plain
        kin = recorded_kin(cell.method, recorded)
        return Cell(plain.experiment, kin, plain.params) if kin else plain
    return reference


def _cost_ratio(spec: RunSpec) -> Callable[[Cell, Cell], tuple[float, float | None]]:
    """A cell's (episodes, build) cost over its reference cell's, by the cell's method's hook
    (`Method.cost_ratio`: the individual's width, the collective run's planned FLOPs, the ancestor)."""
    from bench.cell_env import cell_options
    from bench.profiles import method_settings
    from methods import registry

    def ratio(cell: Cell, ref: Cell) -> tuple[float, float | None]:
        mine = method_settings(spec.profile, cell.method, cell_options(cell))
        theirs = method_settings(spec.profile, ref.method, cell_options(ref))
        if type(mine) is not type(theirs):
            return 1.0, 1.0
        return registry.entry(cell.method).factory.cost_ratio(mine, theirs, spec.image_size)
    return ratio


#: Below this share of a core (CPU over wall seconds of a busy loop) the calibration measured contention.
BUSY_SHARE = 0.8


class CostPlan:
    """Predicted costs of a list of cells on this machine, and what they rest on."""

    def __init__(self, spec: RunSpec, cells: list[Cell], store_root: Path | None = None):
        from bench.schedule import artifact_group
        from bench.usage import cpu_class

        self.spec, self.cells = spec, cells
        # the records are CPU times: a GPU run gets the MAC model at a GPU's throughput
        group = (spec.dataset, spec.image_size, spec.profile.get("name") if spec.device == "cpu" else None)
        self.alias = equivalent_profile(spec.profile)
        cpu = cpu_class()
        ref = json.loads(REFERENCE.read_text())
        self.scale, self.cpu_note = 1.0, "no calibration (not a CPU run, or the record has no calibration time)"
        # Calibrated on the record's CPU class too: two 2-core "AMD EPYC (AVX512)" hosts ran the workload in
        # 0.82 s and 0.69 s, and the uncalibrated start estimate of `make run` on the faster was +39 %.
        if spec.device == "cpu" and ref.get("calibration_s"):
            now = calibrate()
            self.scale = now / ref["calibration_s"]
            same = "the same CPU class as" if cpu == ref["cpu"] else f"CPU {cpu},"
            self.cpu_note = (f"{same} the record's {ref['cpu']}: recorded seconds x {self.scale:.2f} "
                             f"(calibration workload {now:.2f} s here, {ref['calibration_s']:.2f} s there; "
                             "a store's cells recorded on this CPU class are taken as they are)")
            share = cpu_share()
            if share < BUSY_SHARE:
                self.cpu_note += (f"; WARNING: this machine is busy (this process got {share:.0%} of a core "
                                  "while calibrating), so the estimate assumes that load lasts: for the "
                                  "idle machine's estimate, run --dry-run when nothing else is running")

        def to_reference(recorded_on: str | None) -> float:
            """A store cell's seconds in the reference CPU's: those of this CPU class are divided by the
            scale the estimate multiplies by again; any other (or unknown) class is taken as the reference."""
            return 1.0 / self.scale if recorded_on == cpu else 1.0

        self.rec = load_recorded(group, store_root, build_passes=lambda m: _build_passes(spec.profile, m),
                                 alias=self.alias, to_reference=to_reference)
        self.group_of = lambda c: artifact_group(spec, c)
        self.costs: dict[int, CellCost] = cell_costs(cells, spec.profile, self.rec, self.group_of,
                                                     _method_groups(spec), self.scale, _mac_fallback(spec),
                                                     _reference_cells(self.rec), _cost_ratio(spec))
        # a group a finished cell of this store built is in its artifact cache: loading it costs no build
        self.built = built_groups(spec, store_root, self.group_of, {spec.profile.get("name"), self.alias})
        for k, cc in self.costs.items():
            if cc.build_key in self.built:
                self.costs[k] = dataclasses.replace(cc, build_s=0.0)

    def build_seconds(self) -> dict[Hashable, float]:
        """Predicted seconds of each artifact group's build: the pool starts the longest first."""
        return {cc.build_key: cc.build_s for cc in self.costs.values()}

    def basis(self) -> str:
        cached = {self.costs[id(c)].build_key for c in self.cells} & self.built
        note = (f"; {len(cached)} artifact group{'s' if len(cached) > 1 else ''} already built in the store's cache "
                "(a finished cell of theirs): not charged") if cached else ""
        return self._basis() + note

    def _basis(self) -> str:
        n = Counter(self.costs[id(c)].basis for c in self.cells)
        mac = sorted({c.method for c in self.cells if self.costs[id(c)].basis == "MAC model"})
        if not self.rec.episode_s:
            s = self.spec
            return (f"basis: no recorded times for {s.dataset} at {s.image_size} px, profile "
                    f"{s.profile.get('name')} (neither the store's runs.csv nor bench/cost/reference.json): "
                    f"MAC model for every cell, an order of magnitude only (~{_tflops(s.device)} TFLOP/s on "
                    f"{s.device})")
        return (f"basis: recorded times of a 2-core {self.rec.cpu} run ({self.rec.source}): seconds per episode "
                f"by (experiment, method, shots) x the episodes each cell plans "
                f"({', '.join(f'{v} cells {k}' for k, v in sorted(n.items()) if k != 'MAC model')}), and each "
                f"artifact group's recorded base training; {self.cpu_note}"
                + (f"; no record, MAC model (order of magnitude, ~{_tflops(self.spec.device)} TFLOP/s): "
                   f"{', '.join(mac)}" if mac else ""))


def _build_passes(profile: dict, method: str) -> float:
    """The method's base-training image passes by its hooks (0 when it is not registered)."""
    from bench.cost import macs

    try:
        return macs.artifact_passes(profile, {method})
    except Exception:  # noqa: BLE001 - a method recorded once and since removed
        return 0.0


def _tflops(device: str) -> float:
    from bench.cost.macs import CPU_TFLOPS, GPU_TFLOPS

    return CPU_TFLOPS if device == "cpu" else GPU_TFLOPS


def hm(seconds: float) -> str:
    """A duration for a reader: seconds under 90 s, else minutes, hours from one hour."""
    if seconds < 90:
        return f"{max(0, round(seconds))} s"
    m = round(seconds / 60)
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"


def describe_grid(spec: RunSpec, grid: list[tuple[Cell, dict]], todo: list[tuple[Cell, dict]], executor: str = "serial",
                  workers: int | None = None, threads: int | None = None, store_root: Path | None = None) -> str:
    """The dry run's text: the grid, each row's predicted worker-minutes, the artifact builds as steps
    of their own on the simulated schedule, the estimated wall time on the run's workers, its basis."""
    prof = spec.profile
    cells = [c for c, _ in todo]
    plan = CostPlan(spec, cells, store_root)
    counts = Counter((c.experiment, c.method) for c, _ in grid)
    pending = Counter((c.experiment, c.method) for c in cells)
    minutes: Counter = Counter()
    for c in cells:
        minutes[(c.experiment, c.method)] += plan.costs[id(c)].episodes_s / 60
    lines = [f"dry run: {spec.dataset} at {spec.image_size} px, profile {prof.get('name')}, device {spec.device}",
             f"{'experiment':10s} {'method':22s} {'cells':>6s} {'to run':>7s} {'episode min':>12s}"]
    for (exp, m), n in sorted(counts.items()):
        lines.append(f"{exp:10s} {m:22s} {n:6d} {pending[(exp, m)]:7d} {minutes[(exp, m)]:12.1f}")
    lines.append(f"total: {len(grid)} cells, {len(todo)} to run")
    if not cells:
        return "\n".join(lines)
    n_workers = pool_workers(executor, workers, threads, len(cells))
    sched = simulate(cells, plan.costs, n_workers, plan.group_of)
    lines.append(f"artifact builds (steps of their own, each in the first cell of its group; start on {n_workers} "
                 f"worker{'s' if n_workers > 1 else ''}):")
    for key, label, start, secs in sched.builds:
        lines.append(f"  build {_group_name(key):40s} {secs / 60:6.1f} min, from {hm(start)}, in {label}")
    episodes = sum(cc.episodes_s for cc in plan.costs.values())
    built = sum(s for *_, s in sched.builds)
    wall = sched.makespan_s + RUN_OVERHEAD_S
    lines.append(f"computed: {episodes / 60:.0f} worker-min of episodes + {built / 60:.0f} of artifact builds")
    lines.append(f"estimated wall time: {hm(wall)} on {n_workers} worker{'s' if n_workers > 1 else ''} "
                 f"(--executor {executor}; list-scheduled as the pool hands cells out, plus {RUN_OVERHEAD_S:.0f} s "
                 "of data loading and report)")
    cores = usable_cores()
    if executor == "serial" and cores > 1:
        alt = simulate(cells, plan.costs, cores, plan.group_of).makespan_s + RUN_OVERHEAD_S
        lines.append(f"  with --executor process ({cores} workers, one per core, as `make run`): {hm(alt)}")
    lines.append(plan.basis())
    return "\n".join(lines)


def _group_name(key: Hashable) -> str:
    """An artifact group for a reader: its parts without the artifact seed's tuple noise."""
    group, seed = key if isinstance(key, tuple) and len(key) == 2 else (key, None)
    name = "/".join(str(p) for p in group if p is not None) if isinstance(group, tuple) else str(group)
    return name + (f" (seed {seed})" if seed else "")


class Progress:
    """The live ETA of a run: the simulated schedule of the cells not yet finished (their groups'
    builds done once a cell of the group has finished), times the observed ratio of actual to
    predicted seconds of the finished cells' episodes and builds (a prior of 10 predicted minutes at
    ratio 1 keeps the first small cells from swinging it)."""

    PRIOR_S = 600.0

    def __init__(self, spec: RunSpec, cells: list[Cell], workers: int, store_root: Path | None = None):
        self.plan = CostPlan(spec, cells, store_root)
        self.workers, self.pending = workers, list(cells)
        self.built: set[Hashable] = set()
        self.actual, self.predicted = self.PRIOR_S, self.PRIOR_S
        self.initial_s: float | None = None  # the estimate before the first cell (set by `steps`)

    def steps(self) -> list[str]:
        """The planned artifact builds and the first ETA, to print before the run starts."""
        sched = simulate(self.pending, self.plan.costs, self.workers, self.plan.group_of)
        out = [f"artifact build: {_group_name(k)}, predicted {s / 60:.1f} min, in {label}"
               for k, label, _, s in sched.builds]
        self.initial_s = sched.makespan_s + RUN_OVERHEAD_S  # kept in the run record beside the measured wall
        return out + [f"estimated wall time: {hm(self.initial_s)} on {self.workers} "
                      f"worker{'s' if self.workers > 1 else ''}; {self.plan.basis()}"]

    def finished(self, cell: Cell, result: dict) -> str | None:
        """Record a finished cell; a message when it built its group's artifact."""
        self.pending = [c for c in self.pending if c is not cell]
        cc = self.plan.costs[id(cell)]
        episodes = sum(float(r["value"]) for r in result.get("rows", []) if r.get("metric") == "wall_s")
        if cc.episodes_s > 0 and episodes > 0:
            self.actual += episodes
            self.predicted += cc.episodes_s
        if cc.build_key in self.built:
            return None
        self.built.add(cc.build_key)
        prep = float(result.get("wall_s") or 0.0) - episodes
        if cc.build_s > 0 and prep > 0:  # the group's first finished cell is, nearly always, its builder
            self.actual += prep
            self.predicted += cc.build_s
        if cc.build_s > 0 or prep > 60:
            return (f"artifact built: {_group_name(cc.build_key)} with {cell.label()}: preparation "
                    f"{prep / 60:.1f} min (predicted build {cc.build_s / 60:.1f} min)")
        return None

    @property
    def ratio(self) -> float:
        return self.actual / self.predicted

    def eta_s(self) -> float:
        """Seconds left: the rest of the schedule, scaled by the observed ratio, plus the report."""
        rest = simulate(self.pending, self.plan.costs, self.workers, self.plan.group_of, self.built).makespan_s
        return rest * self.ratio + 10.0

    def postfix(self) -> str:
        return f"ETA {hm(self.eta_s())} (cost model x{self.ratio:.2f})"
