"""Open-world scoring and metrics against hand-computed values; continual metrics on a known matrix."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.learngene.openworld import (
    continual_metrics,
    is_open,
    openness,
    openworld_metrics,
    oscr,
    tune_threshold,
)


def test_openness_is_one_minus_max_softmax():
    logits = torch.tensor([[10.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    p = openness(logits)
    assert p[1].item() == pytest.approx(2 / 3)
    assert p[0].item() == pytest.approx(1 - np.exp(10) / (np.exp(10) + 2), abs=1e-6)  # float32
    # the faithful model outputs probabilities; Eq. 2 then applies a second softmax (floor 1 - e/(e+N-1))
    probs = torch.tensor([[1.0, 0.0, 0.0]])
    assert openness(probs).item() == pytest.approx(1 - np.e / (np.e + 2))


def test_perfect_separation():
    p_id = np.array([0.05, 0.1, 0.2])
    p_ood = np.array([0.7, 0.8, 0.9, 0.95])
    m = openworld_metrics(p_id, np.array([0, 1, 2]), np.array([0, 1, 2]), p_ood, threshold=0.5)
    assert m["auroc"] == 1.0 and m["aupr_in"] == 1.0 and m["aupr_out"] == 1.0
    assert m["fpr95_idpos"] == 0.0 and m["fpr95_oodpos"] == 0.0
    assert m["oscr"] == pytest.approx(1.0) and m["acc_closed"] == 1.0 and m["acc_open_at_threshold"] == 1.0
    lam = tune_threshold(p_id, p_ood)
    assert not is_open(p_id, lam).any() and is_open(p_ood, lam).all()


def test_hand_computed_metrics():
    p_id = np.array([0.1, 0.4, 0.35, 0.8])
    correct_pred, y = np.array([0, 9, 2, 3]), np.array([0, 1, 2, 3])  # the second known image is misclassified
    p_ood = np.array([0.3, 0.9, 0.7])
    m = openworld_metrics(p_id, correct_pred, y, p_ood, threshold=0.5)
    assert m["auroc"] == pytest.approx(8 / 12)          # 8 of 12 (open, known) pairs ordered correctly
    assert m["fpr95_idpos"] == pytest.approx(2 / 3)     # accept all 4 known (P̂ <= 0.8): 2 of 3 open accepted
    assert m["fpr95_oodpos"] == pytest.approx(3 / 4)    # catch all 3 open (P̂ >= 0.3): 3 of 4 known rejected
    assert m["acc_closed"] == pytest.approx(3 / 4)
    assert m["oscr"] == pytest.approx(0.25 / 3 + 0.5 / 3 + 0.75 / 3)
    # (K+1)-way at λ=0.5: known 0 and 2 accepted and correct, open 0.9 and 0.7 flagged -> 4 of 7
    assert m["acc_open_at_threshold"] == pytest.approx(4 / 7)
    assert m["tpr_open"] == pytest.approx(2 / 3) and m["fpr_open"] == pytest.approx(1 / 4)
    # AUPR-out by hand (AP, open positive): ranks 0.9(+) 0.8(-) 0.7(+) 0.4 0.35 0.3(+) 0.1
    assert m["aupr_out"] == pytest.approx((1 / 3) * (1 + 2 / 3 + 3 / 6))


def test_oscr_ties_and_all_wrong():
    assert oscr(np.array([1.0, 1.0]), np.array([0, 0]), np.array([0.0])) == 0.0
    # a tie between a known and an open sample is one step, i.e. a diagonal segment
    assert oscr(np.array([1.0]), np.array([1]), np.array([1.0])) == pytest.approx(0.5)


def test_continual_metrics_on_hand_matrix():
    R = [[0.9], [0.7, 0.8], [0.6, 0.9, 0.85]]
    m = continual_metrics(R)
    assert m["avg_acc"] == pytest.approx((0.6 + 0.9 + 0.85) / 3)
    assert m["forgetting"] == pytest.approx(((0.9 - 0.6) + (0.8 - 0.9)) / 2)
    assert m["bwt"] == pytest.approx(((0.6 - 0.9) + (0.9 - 0.8)) / 2)
    assert continual_metrics([[0.5]]) == {"avg_acc": 0.5, "forgetting": 0.0, "bwt": 0.0}
