"""The process executor's dispatch order: new artifact builds first, never a second cell of a group
whose build is in flight while other work is pending."""
from __future__ import annotations

from bench.cell_env import Cell, RunSpec
from bench.profiles import load_profile, resolve
from bench.schedule import ArtifactAwareQueue, artifact_group


def _cells(spec: str) -> list[Cell]:
    """'a a b a c' -> cells of methods a, a, b, a, c (group = method name)."""
    return [Cell("t", m, {"seed": 0, "i": i}) for i, m in enumerate(spec.split())]


def test_a_second_cell_of_a_building_group_waits_for_other_work():
    q = ArtifactAwareQueue(_cells("a a a b c"), lambda c: c.method)
    first, second = q.take(), q.take()
    assert (first.method, second.method) == ("a", "b")  # two builds in parallel, not a + a (lock wait)
    q.finished(second)
    assert q.take().method == "c"  # a new build before anything else
    q.finished(first)
    assert [q.take().method for _ in range(2)] == ["a", "a"]  # a's artifact exists now
    assert q.take() is None and len(q) == 0


def test_falls_back_to_a_waiting_cell_when_nothing_else_is_left():
    q = ArtifactAwareQueue(_cells("a a"), lambda c: c.method)
    assert q.take().params["i"] == 0
    assert q.take().params["i"] == 1  # only a's cells are left: take it (it waits on the lock)


def smoke_spec() -> RunSpec:
    return RunSpec("synthetic", "", 32, resolve(load_profile("smoke"), image_size=32), "/tmp/unused")


def test_learngene_variants_share_the_collective_group_and_uniform_ones_do_not():
    spec = smoke_spec()
    group = {m: artifact_group(spec, Cell("table3", m, {"seed": 0}))
             for m in ("learngene", "learngene-ewc0", "learngene-ewc5000", "learngene-openworld",
                       "learngene-front", "learngene-top-uniform", "learngene-official", "protonet", "scratch")}
    assert group["learngene"] == group["learngene-ewc0"] == group["learngene-ewc5000"] == group["learngene-openworld"]
    assert group["learngene-front"] == group["learngene-top-uniform"] != group["learngene"]
    assert group["learngene-official"] != group["learngene"]  # the double-softmax collective run
    assert len({group["learngene"], group["protonet"], group["scratch"]}) == 3


def test_the_longest_predicted_build_starts_first():
    """A free worker starts the unstarted group with the longest predicted build, so a long build
    (the uniform collective network) overlaps with other work instead of starting last."""
    cells = _cells("a1 b1 c1 a2")
    q = ArtifactAwareQueue(cells, lambda c: c.method[0], build_s={"a": 60.0, "b": 900.0, "c": 300.0})
    assert [q.take().method for _ in range(3)] == ["b1", "c1", "a1"]
    plain = ArtifactAwareQueue(_cells("a1 b1 c1 a2"), lambda c: c.method[0])
    assert [plain.take().method for _ in range(3)] == ["a1", "b1", "c1"]  # no predictions: grid order


def test_each_meta_trained_network_is_its_own_group():
    """MAML, first-order MAML and Proto-MAML train three networks, and the floor (random-ncm) trains
    none: sharing a group would serialise independent builds and make the cost model charge the
    floor's cell with ProtoNet's 15-minute build."""
    spec = smoke_spec()
    group = {m: artifact_group(spec, Cell("table3", m, {"seed": 0}))
             for m in ("maml", "fomaml", "protomaml", "protonet", "random-ncm", "matchingnet")}
    assert len(set(group.values())) == len(group)
