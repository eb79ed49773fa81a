"""The order in which a pool of workers takes cells, so no worker idles on an artifact lock.

Why: cells that need the same trained artifact (the collective model, meta-trained weights, a
pre-trained backbone) serialise on its file lock. Handed out in grid order, the second learngene
cell waits minutes for the first one's collective model while its core sits idle (a quick 32 px run
used 1.36 of 2 cores). `ArtifactAwareQueue` gives a free worker, in this order of preference:

1. a cell whose artifact group has nothing in flight and has not finished yet: start a new build
   early, so long builds overlap with other work instead of forming the tail; the longest predicted
   build first (`build_s`, from `bench.cost`), so a 30-minute build does not start last;
2. a cell whose group has finished a cell (its artifact exists: no waiting);
3. any other cell (its group's build is in flight on another worker: it waits on the lock, which
   is no worse than idling).

Which cells run on which worker never changes a number (every cell is a function of its config).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping

from bench.cell_env import Cell, RunSpec, cell_options
from methods import registry


def artifact_group(spec: RunSpec, cell: Cell) -> Hashable:
    """(the method's artifact group, the artifact seed): what `Env.prepared` would build or load."""
    from bench.profiles import episode_settings, method_settings

    e = registry.entry(cell.method)
    group = e.factory.artifact_group(e.family, method_settings(spec.profile, cell.method, cell_options(cell)))
    return group, episode_settings(spec.profile).artifact_seed_for(int(cell.params.get("seed", 0)))


class ArtifactAwareQueue:
    """Pending cells, handed out by `take()` in the order described in the module docstring."""

    def __init__(self, cells: Iterable[Cell], group_of: Callable[[Cell], Hashable],
                 build_s: Mapping[Hashable, float] | None = None):
        self._pending = list(cells)
        self._group = {id(c): group_of(c) for c in self._pending}
        self._build_s = dict(build_s or {})
        self._ready: set[Hashable] = set()
        self._in_flight: Counter = Counter()

    def __len__(self) -> int:
        return len(self._pending)

    def _first(self, ok: Callable[[Hashable], bool]) -> Cell | None:
        for i, c in enumerate(self._pending):
            if ok(self._group[id(c)]):
                return self._pending.pop(i)
        return None

    def _longest_new_build(self) -> Cell | None:
        """The first pending cell of the unstarted group with the longest predicted build."""
        best = None
        for i, c in enumerate(self._pending):
            g = self._group[id(c)]
            if g not in self._ready and not self._in_flight[g] and (
                    best is None or self._build_s.get(g, 0.0) > self._build_s.get(self._group[id(self._pending[best])], 0.0)):
                best = i
        return None if best is None else self._pending.pop(best)

    def take(self) -> Cell | None:
        """The next cell for a free worker (None when nothing is pending)."""
        cell = (self._longest_new_build()
                or self._first(lambda g: g in self._ready)
                or (self._pending.pop(0) if self._pending else None))
        if cell is not None:
            self._in_flight[self._group[id(cell)]] += 1
        return cell

    def finished(self, cell: Cell) -> None:
        g = self._group[id(cell)]
        self._in_flight[g] -= 1
        self._ready.add(g)
