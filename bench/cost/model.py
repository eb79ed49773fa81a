"""Predicted seconds of each cell and of each artifact build, and the wall time of a grid on N workers.

Why recorded times: a FLOP count misses data movement and Python overhead on these small networks and
was 5x off; a cell's time on this machine class is already measured (each episode's `wall_s` row in
runs.csv, and each row's base training in docs/evidence/cost.md). The basis, in order of preference:

- episodes: the mean recorded seconds per episode of (experiment, method, shots) in the target store's
  runs.csv, else in `reference.json` (committed, from results/runs.csv), else of (experiment, method),
  else of (method, shots) in another experiment, else of the method in any experiment; times the
  episodes the cell plans. A profile that trains the same networks as a recorded one (the study and
  quick) is priced by that one's records too (`bench.cost.estimate.equivalent_profile`). A method with no record at
  all falls back to the MAC model (`bench.cost.macs`), and the estimate says so.
- artifact builds: the methods' recorded base training (`reference.json`, from docs/evidence/cost.md; a
  store's cells carry it too: cell wall_s minus its episodes), summed per artifact group
  (`Method.artifact_group`), paid by the first of the group's cells a worker takes; nothing for a group
  a finished cell of the store already built (its artifact is cached).
- a cell's settings options (another width, another collective run): the records of the cell without
  them times `Method.cost_ratio` (FLOP ratios of the individual network and of the collective run).
- another CPU: every recorded second is scaled by a few-second calibration (a fixed forward/backward
  workload timed now against its time on the reference CPU).

The schedule is simulated as the process pool runs it: a free worker takes the next cell in
`bench.schedule.ArtifactAwareQueue`'s order; the first cell of a group builds its artifact, and a
later cell of that group taken while the build runs elsewhere waits on the artifact lock.
"""
from __future__ import annotations

import csv
import heapq
import json
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bench.cell_env import Cell

REFERENCE = Path(__file__).with_name("reference.json")
#: Fixed costs of a run outside its cells: loading the data in the driver and in each worker, and the
#: report at the end (measured on the reference machine: about 12 s, 10 s and 10 s).
RUN_OVERHEAD_S = 35.0


@dataclass
class CellCost:
    """Predicted seconds of one cell: its episodes, and the build of its artifact group (paid by the
    first of the group's cells a worker takes; a later one taken during the build waits for it)."""
    episodes_s: float
    build_key: Hashable
    build_s: float
    basis: str  # "recorded", "recorded (other shots)", "recorded (other experiment)" or "MAC model"


@dataclass
class Recorded:
    """Recorded per-episode seconds by (experiment, method, shots) and build seconds by method."""
    episode_s: dict[tuple[str, str, str], float] = field(default_factory=dict)
    build_s: dict[str, float] = field(default_factory=dict)
    store_builds: set[str] = field(default_factory=set)
    """Methods whose build seconds are the store's own (`cell_prepare_s` rows), not the reference's."""
    source: str = ""
    cpu: str = ""
    calibration_s: float | None = None


def _shots_key(v) -> str:
    try:
        return str(int(float(v)))
    except (TypeError, ValueError):
        return ""


def store_times(runs_csv: Path, group: tuple[str, int, str] | None = None,
                to_reference: Callable[[str | None], float] | None = None
                ) -> tuple[dict[tuple[str, str, str], float], dict[str, float]]:
    """A runs.csv's recorded times, of one (dataset, image size, profile) `group` when given: mean
    seconds per episode by (experiment, method, shots) (its `wall_s` rows), and each method's largest
    preparation (its `cell_prepare_s` rows: an artifact build, or the wait for one: the method's recorded
    build). `to_reference(cpu)` converts a cell's seconds to the reference CPU's, by the CPU class its
    preparation row names (None: not recorded)."""
    from bench.collect import PREPARE_METRIC

    walls: dict[tuple[tuple[str, str, str], str], list[float]] = defaultdict(lambda: [0.0, 0])
    preps: dict[str, tuple[str, float]] = {}
    cpus: dict[str, str] = {}
    with open(runs_csv, newline="") as fh:
        for r in csv.DictReader(fh):
            metric = r.get("metric")
            if metric not in ("wall_s", PREPARE_METRIC):
                continue
            if group and (r.get("dataset"), _shots_key(r.get("image_size")), r.get("profile")) != (
                    group[0], str(group[1]), group[2]):
                continue
            cell = r.get("cell") or ""
            if metric == "wall_s":
                t = walls[((r["experiment"], r["method"], _shots_key(r.get("shots"))), cell)]
                t[0] += float(r["value"])
                t[1] += 1
            else:
                key = cell or f"row{len(preps)}"
                preps[key] = (r["method"], float(r["value"]))
                if r.get("cpu"):
                    cpus[key] = r["cpu"]

    def factor(cell: str) -> float:
        return to_reference(cpus.get(cell)) if to_reference else 1.0

    tot: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for (key, cell), (sec, n) in walls.items():
        tot[key][0] += sec * factor(cell)
        tot[key][1] += n
    builds: dict[str, float] = {}
    for cell, (method, sec) in preps.items():
        builds[method] = max(builds.get(method, 0.0), sec * factor(cell))
    return {k: sec / n for k, (sec, n) in tot.items() if n}, builds


def episode_seconds(runs_csv: Path, group: tuple[str, int, str] | None = None) -> dict[tuple[str, str, str], float]:
    """`store_times`' seconds per episode alone."""
    return store_times(runs_csv, group)[0]


def prepare_seconds(runs_csv: Path, group: tuple[str, int, str] | None = None) -> dict[str, float]:
    """`store_times`' recorded builds alone."""
    return store_times(runs_csv, group)[1]


def load_recorded(group: tuple[str, int, str], store_root: Path | None = None, reference: Path = REFERENCE,
                  build_passes: Callable[[str], float] | None = None, alias: str | None = None,
                  to_reference: Callable[[str | None], float] | None = None) -> Recorded:
    """The reference table's times when it was recorded for `group` (dataset, image size, profile
    name), else none; with the per-episode times of that group in `store_root`'s runs.csv over them
    (a store written on this machine is the best record of its own cells). A method's recorded build
    is scaled by its hooks' image passes now over those recorded (`build_passes(method)`; a budget
    changed since), where both are known. `alias`: another profile whose records stand for this one's
    (it trains the same networks: `equivalent_profile`); its times come first, this profile's own over them."""
    ref = json.loads(reference.read_text())
    rec = Recorded(source="no record", cpu=ref["cpu"], calibration_s=ref.get("calibration_s"))
    names = {group[2], alias} - {None}
    if (ref["dataset"], ref["image_size"]) == tuple(group[:2]) and ref["profile"] in names:
        rec.episode_s = {tuple(k.split("|")): v for k, v in ref["episode_s"].items()}
        rec.build_s = dict(ref["build_s"])
        rec.source = "bench/cost/reference.json"
        for m, then in ref.get("build_passes", {}).items():
            now = build_passes(m) if build_passes else 0.0
            if then > 0 and now > 0 and m in rec.build_s:
                rec.build_s[m] *= now / then
    runs = store_root / "runs.csv" if store_root else None
    if runs is not None and runs.is_file():
        own, builds = store_times(runs, (*group[:2], alias), to_reference) if alias else ({}, {})
        own_here, builds_here = store_times(runs, group, to_reference)
        own.update(own_here)
        builds.update(builds_here)
        if own:
            rec.episode_s.update(own)
            rec.source = f"{runs}'s episodes, builds from {rec.source}"
        if builds:
            rec.build_s.update(builds)
            rec.store_builds |= set(builds)
            rec.source += f" and the store's recorded preparations ({len(builds)} methods)"
    return rec


def planned_episodes(cell: Cell, profile: dict) -> int:
    """Episodes a cell runs: the cell's own `tasks`, else its experiment section's (`tasks`, or
    `curve_tasks` for learning curves), else [episodes] tasks."""
    exp = profile.get("experiments", {}).get(cell.experiment, {})
    return int(cell.params.get("tasks") or exp.get("tasks") or exp.get("curve_tasks")
               or profile["episodes"]["tasks"])


def group_builds(cells: Iterable[Cell], rec: Recorded, group_of: Callable[[Cell], Hashable],
                 method_groups: dict[str, Hashable]) -> dict[Hashable, float]:
    """Recorded build seconds of each artifact group (`Method.artifact_group`: cells of one group wait
    for one build): the sum of its grid methods' recorded base trainings, or at least the largest of
    any method of the group (`method_groups`: every registered method's group), since which of a
    group's methods recorded the shared build (e.g. the collective model) is an accident of order."""
    grid_methods: dict[Hashable, set[str]] = defaultdict(set)
    for c in cells:
        grid_methods[group_of(c)].add(c.method)
    out = {}
    for g, ms in grid_methods.items():
        kin_methods = ms | {m for m, mg in method_groups.items() if mg == g}
        stored = [rec.build_s[m] for m in kin_methods if m in rec.store_builds]
        if stored:  # each of the group's methods recorded the one build (or its wait for it): not a sum
            out[g] = max(stored)
            continue
        own = sum(rec.build_s.get(m, 0.0) for m in ms)
        kin = max((rec.build_s.get(m, 0.0) for m in kin_methods), default=0.0)
        out[g] = max(own, kin)
    return out


def cell_costs(cells: list[Cell], profile: dict, rec: Recorded, group_of: Callable[[Cell], Hashable],
               method_groups: dict[str, Hashable], scale: float = 1.0,
               fallback: Callable[[Cell], tuple[float, float]] | None = None,
               reference_of: Callable[[Cell], Cell] | None = None,
               ratio: Callable[[Cell, Cell], tuple[float, float | None]] | None = None) -> dict[int, CellCost]:
    """Predicted cost of each cell (keyed by id). `fallback(cell)` gives (episode s, build s) from the
    MAC model for a method with no record; `scale` converts reference-CPU seconds to this CPU's.

    A cell is priced by the records of its reference cell (`reference_of`, default: the cell without its
    settings options, which the records are of; `bench.cost.estimate` also takes a recorded kin method
    for a method with no record), times `ratio(cell, reference)`: (episodes, build) cost of the one over
    the other (`Method.cost_ratio`: another width, another collective run, another ancestor). A cell
    whose artifact group is not its reference's builds what the reference's group recorded, times the
    build ratio (or, when the ratio is None, what its own group recorded)."""
    refs = {id(c): (reference_of or _without_options)(c) for c in cells}
    builds = group_builds([*cells, *refs.values()], rec, group_of, method_groups)
    by_em: dict[tuple[str, str], list[float]] = defaultdict(list)
    by_m: dict[str, list[float]] = defaultdict(list)
    by_ms: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (e, m, k), v in rec.episode_s.items():
        by_em[(e, m)].append(v)
        by_m[m].append(v)
        by_ms[(m, k)].append(v)

    def per_episode(key: tuple[str, str, str]) -> tuple[float | None, str]:
        if key in rec.episode_s:
            return rec.episode_s[key], "recorded"
        if by_em.get(key[:2]):
            return sum(by_em[key[:2]]) / len(by_em[key[:2]]), "recorded (other shots)"
        if by_ms.get(key[1:]):  # the same shots in another experiment (Figure 4's 100 shots are not alike)
            return sum(by_ms[key[1:]]) / len(by_ms[key[1:]]), "recorded (other experiment)"
        if by_m.get(key[1]):
            return sum(by_m[key[1]]) / len(by_m[key[1]]), "recorded (other experiment)"
        return None, "MAC model"

    out = {}
    for c in cells:
        ref = refs[id(c)]
        per, basis = per_episode((ref.experiment, ref.method, _shots_key(ref.params.get("shots"))))
        if ref.method != c.method and per is not None:
            basis = f"{basis}, of {ref.method}"
        n = planned_episodes(c, profile)
        ep_ratio, build_ratio = ratio(c, ref) if ratio and ref is not c else (1.0, 1.0)
        g, g0 = group_of(c), group_of(ref)
        build = builds.get(g, 0.0) if g == g0 or build_ratio is None else builds.get(g0, 0.0) * build_ratio
        build_ratio = 1.0 if build_ratio is None else build_ratio
        if per is None and fallback is not None:
            ep, mac_build = fallback(c)
            out[id(c)] = CellCost(ep * ep_ratio, g, max(mac_build * build_ratio, build * scale), basis)
            continue
        out[id(c)] = CellCost((per or 0.0) * n * scale * ep_ratio, g, build * scale, basis)
    return out


def _without_options(cell: Cell) -> Cell:
    """The cell as it would be without its settings options (what the records are of)."""
    if not cell.params.get("method_options"):
        return cell
    return Cell(cell.experiment, cell.method, {k: v for k, v in cell.params.items() if k != "method_options"})


@dataclass
class Schedule:
    """The simulated run: its makespan and, per artifact build, (key, cell label, start s, seconds)."""
    makespan_s: float
    builds: list[tuple[Hashable, str, float, float]]
    busy_s: float


def simulate(cells: list[Cell], costs: dict[int, CellCost], workers: int,
             group_of: Callable[[Cell], Hashable], built: set[Hashable] = frozenset()) -> Schedule:
    """List-schedule `cells` on `workers` as `bench.executors.run_process` hands them out (the
    artifact-aware queue; a worker takes a cell the moment it is free). `built`: builds already done."""
    from bench.schedule import ArtifactAwareQueue

    queue = ArtifactAwareQueue(cells, group_of, {cc.build_key: cc.build_s for cc in costs.values()})
    done_at: dict[Hashable, float] = {k: 0.0 for k in built}  # build key -> when its artifact exists
    running: list[tuple[float, int, Cell]] = []  # (finish, sequence, cell)
    builds: list[tuple[Hashable, str, float, float]] = []
    idle, now, busy, seq = max(1, workers), 0.0, 0.0, 0
    while True:
        while idle and (cell := queue.take()) is not None:
            cc = costs[id(cell)]
            if cc.build_key in done_at:  # built, or being built by another worker: wait on its lock
                start = max(now, done_at[cc.build_key])
            else:
                done_at[cc.build_key] = start = now + cc.build_s
                if cc.build_s > 0:
                    builds.append((cc.build_key, cell.label(), now, cc.build_s))
            busy += start + cc.episodes_s - now
            seq += 1
            heapq.heappush(running, (start + cc.episodes_s, seq, cell))
            idle -= 1
        if not running:
            return Schedule(now, builds, busy)
        now, _, cell = heapq.heappop(running)
        queue.finished(cell)
        idle += 1


def calibrate(repeats: int = 5) -> float:
    """Seconds of a fixed workload: forward+backward of the width-0.25 individual network on a batch
    of 64 32-px images, one torch thread (as each of two pool workers on two cores), best of `repeats`."""
    import torch

    from methods.backbones import IndividualNet

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        net = IndividualNet(5, 32, 0.25)
        x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 5, (64,))
        best = float("inf")
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            for _ in range(10):
                net.zero_grad()
                torch.nn.functional.cross_entropy(net(x), y).backward()
            best = min(best, time.perf_counter() - t0)
        return best
    finally:
        torch.set_num_threads(threads)


def cpu_share(seconds: float = 0.3) -> float:
    """The share of one core this process gets now: CPU seconds over wall seconds of a busy loop.

    The calibration times a workload in wall seconds, so on a machine busy with other work it measures
    the contention, not the CPU (a dry-run beside a running grid calibrated at 22.8 s, not 0.35 s, and
    predicted 33x too long). A share well below 1 says so; the load average lags by a minute and would
    still count a run that has just ended."""
    t0, c0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        pass
    return (time.process_time() - c0) / (time.perf_counter() - t0)
