"""Mini-batch policies of the shared support-set training loop (the 20-shot short-last-batch defect)."""
from __future__ import annotations

import pytest
import torch

from methods.training import epoch_batches


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_keep_is_the_papers_slicing_of_one_permutation():
    order = torch.randperm(100, generator=_gen())
    batches = epoch_batches(100, 32, _gen(), "keep")
    assert [len(b) for b in batches] == [32, 32, 32, 4]
    assert torch.equal(torch.cat(batches), order)


@pytest.mark.parametrize(("n", "sizes"), [(100, [25, 25, 25, 25]), (50, [25, 25]), (64, [32, 32]),
                                          (70, [24, 23, 23]), (5, [5])])
def test_balanced_has_keeps_step_count_and_no_short_batch(n, sizes):
    batches = epoch_batches(n, 32, _gen(1), "balanced")
    assert [len(b) for b in batches] == sizes
    assert sorted(torch.cat(batches).tolist()) == list(range(n))


def test_drop_discards_only_a_short_last_batch():
    assert [len(b) for b in epoch_batches(100, 32, _gen(), "drop")] == [32, 32, 32]
    assert [len(b) for b in epoch_batches(64, 32, _gen(), "drop")] == [32, 32]
    assert [len(b) for b in epoch_batches(20, 32, _gen(), "drop")] == [20]  # never an empty epoch


def test_each_epoch_is_reshuffled():
    g = _gen(3)
    a, b = epoch_batches(100, 25, g, "balanced"), epoch_batches(100, 25, g, "balanced")
    assert not torch.equal(torch.cat(a), torch.cat(b))


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="last_batch must be one of keep, balanced, drop"):
        epoch_batches(10, 4, _gen(), "ragged")
