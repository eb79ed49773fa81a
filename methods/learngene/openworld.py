"""Open-world recognition with the collective model (Wang et al., AAAI 2022, Eq. 2-3), its metrics,
and the open-world stage that learns the recognised classes.

Scoring rule and metrics are plain functions on arrays, as OpenOOD splits a postprocessor from its
metrics. The openness score is P̂ = 1 − max softmax (Eq. 2; with the official double-softmax network
the outputs are already probabilities, so it is exactly the paper's), an instance is open-world when
P̂ > λ_open (Eq. 3), and λ_open is tuned by Youden's J on held-out data, because the paper's
0.9587/0.9733 assume the double softmax and mean nothing for logits.

Metric conventions (where references differ): AUROC with open-world positive (equal under either
convention); FPR@95 under both conventions (`fpr95_idpos`, Hendrycks: open-world images accepted
when 95 % of known ones are; `fpr95_oodpos`, OpenOOD v1.5: known images rejected when 95 % of
open-world ones are caught); AUPR-in/out as sklearn's step-wise average precision (not OpenOOD's
trapezoid); OSCR; the thresholded (K+1)-way accuracy. Continual metrics: average accuracy =
mean_i R[T, i]; forgetting (Chaudhry, Mammoth) = mean over i < T of max_{t<T} R[t, i] − R[T, i];
BWT = mean over i < T of R[T, i] − R[i, i].

The stage scores known (base test) and open-world (open test) images, splits each half/half into a
tuning and an evaluation part, tunes λ_open (or takes a number) and reports metrics on the
evaluation part; then the open-world classes' *train* pool is the incoming stream: flagged instances
are labelled by the "user" (their true class) and the recognised classes (at least `min_flagged`
flagged images) are learnt as extra 5-class continual tasks, exactly like the base tasks, without
retraining from scratch.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from methods.learngene.collective import ContinualLearner, model_from_state
from methods.settings import CollectiveSettings
from methods.training import derived_seed, predict, rng
from tasks.continual import ContinualTask
from tasks.imageset import TEST_POOL, TRAIN_POOL, ImageSet


def openness(outputs: torch.Tensor) -> torch.Tensor:
    """Eq. 2: P̂ = 1 − max_i softmax(outputs)_i (higher = more likely open-world)."""
    return 1.0 - torch.softmax(outputs.float(), dim=1).max(dim=1).values


def is_open(p_hat: np.ndarray | torch.Tensor, threshold: float) -> np.ndarray:
    """Eq. 3: an instance is open-world when P̂ > λ_open."""
    return np.asarray(p_hat) > threshold


def tune_threshold(p_id: np.ndarray, p_ood: np.ndarray) -> float:
    """λ_open maximising TPR − FPR (open-world positive) on held-out known/open-world scores."""
    y = np.r_[np.zeros(len(p_id)), np.ones(len(p_ood))]
    s = np.r_[p_id, p_ood]
    fpr, tpr, thr = roc_curve(y, s)
    best = int(np.argmax(tpr - fpr))
    t = float(thr[best])
    # roc_curve flags s >= thr; Eq. 3 flags s > λ, so step just below the chosen score.
    return float(np.nextafter(t, -np.inf)) if np.isfinite(t) else float(s.max())


def _fpr_at_tpr(y: np.ndarray, score: np.ndarray, tpr_level: float = 0.95) -> float:
    fpr, tpr, _ = roc_curve(y, score)
    return float(fpr[np.searchsorted(tpr, tpr_level, side="left")])


def oscr(conf_id: np.ndarray, correct_id: np.ndarray, conf_ood: np.ndarray) -> float:
    """Area under CCR(θ) vs FPR(θ): a known sample counts when accepted (conf ≥ θ) *and* correct."""
    conf = np.r_[conf_id, conf_ood]
    is_ood = np.r_[np.zeros(len(conf_id)), np.ones(len(conf_ood))]
    good = np.r_[np.asarray(correct_id, dtype=float), np.zeros(len(conf_ood))]
    order = np.argsort(-conf, kind="stable")
    conf, is_ood, good = conf[order], is_ood[order], good[order]
    last = np.r_[conf[1:] != conf[:-1], True]  # last index of each tie group
    ccr = np.r_[0.0, np.cumsum(good)[last] / max(len(conf_id), 1)]
    fpr = np.r_[0.0, np.cumsum(is_ood)[last] / max(len(conf_ood), 1)]
    return float(np.trapezoid(ccr, fpr))


def openworld_metrics(p_id: np.ndarray, pred_id: np.ndarray, y_id: np.ndarray, p_ood: np.ndarray,
                      threshold: float | None = None) -> dict[str, float]:
    """All open-world metrics from P̂ of known and open-world images (see module docstring)."""
    p_id, p_ood = np.asarray(p_id, float), np.asarray(p_ood, float)
    correct = np.asarray(pred_id) == np.asarray(y_id)
    y_open = np.r_[np.zeros(len(p_id)), np.ones(len(p_ood))]
    s = np.r_[p_id, p_ood]
    out = {
        "auroc": float(roc_auc_score(y_open, s)),
        "fpr95_idpos": _fpr_at_tpr(1 - y_open, -s),
        "fpr95_oodpos": _fpr_at_tpr(y_open, s),
        "aupr_in": float(average_precision_score(1 - y_open, -s)),
        "aupr_out": float(average_precision_score(y_open, s)),
        "acc_closed": float(correct.mean()) if len(correct) else float("nan"),
        "oscr": oscr(-p_id, correct, -p_ood),
        "n_known": int(len(p_id)), "n_open": int(len(p_ood)),
    }
    if threshold is not None:
        flag_id, flag_ood = is_open(p_id, threshold), is_open(p_ood, threshold)
        out.update({
            "threshold": float(threshold),
            "tpr_open": float(flag_ood.mean()), "fpr_open": float(flag_id.mean()),
            # (K+1)-way accuracy: a known image must be accepted and correct, an open one flagged
            "acc_open_at_threshold": float(((~flag_id) & correct).sum() + flag_ood.sum()) / max(len(s), 1),
        })
    return out


def continual_metrics(R: Sequence[Sequence[float]]) -> dict[str, float]:
    """Average accuracy, forgetting (max-based, Chaudhry) and BWT from a lower-triangular R[t][i]."""
    T = len(R) - 1
    if T < 0:
        return {"avg_acc": float("nan"), "forgetting": float("nan"), "bwt": float("nan")}
    last = np.asarray(R[T], float)
    out = {"avg_acc": float(np.nanmean(last))}
    if T == 0:
        out.update(forgetting=0.0, bwt=0.0)
        return out
    forg = [max(R[t][i] for t in range(i, T)) - R[T][i] for i in range(T)]
    bwt = [R[T][i] - R[i][i] for i in range(T)]
    out.update(forgetting=float(np.mean(forg)), bwt=float(np.mean(bwt)))
    return out


# --------------------------------------------------------------------------- the stage


def _halves(idx: torch.Tensor, seed: int, salt: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = idx[torch.randperm(len(idx), generator=rng(seed, "open-world-halves", salt))]
    h = len(perm) // 2
    return perm[:h], perm[h:]


def _known_labels(data: ImageSet, idx: torch.Tensor, tasks: Sequence[ContinualTask], head: str,
                  class_index: Mapping[int, int] | None) -> torch.Tensor:
    """Closed-set label of each known image: its global output (class-incremental head) or, for the
    task-local head, its local label in the most recent task containing the class (the only label the
    shared head can still mean)."""
    if head == "class_incremental":
        assert class_index is not None
        return torch.tensor([class_index[int(c)] for c in data.labels[idx]])
    local: dict[int, int] = {}
    for tk in tasks:
        for pos, c in enumerate(tk.classes):
            local[c] = pos
    return torch.tensor([local[int(c)] for c in data.labels[idx]])


def open_world_stage(data: ImageSet, artifact: Mapping[str, Any], tasks: Sequence[ContinualTask],
                     open_ids: Sequence[int], cfg: CollectiveSettings, *, device: torch.device, seed: int,
                     class_index: Mapping[int, int] | None = None,
                     threshold: float | str = "tune", min_flagged: int = 1) -> dict[str, Any]:
    """Detect open-world classes with the trained collective model, then learn them incrementally.

    Returns {"metrics": dict, "threshold", "recognised": [class names], "new_tasks": [task JSON],
    "R": full accuracy matrix over base + new tasks, "continual": metrics before/after,
    "final": network state after the new tasks}.
    """
    head = artifact["head"]
    k_local = max(len(tk.classes) for tk in tasks)  # task-local labels live on outputs 0..k_local-1
    net = model_from_state(artifact["final"]).to(device)
    known = sorted({c for tk in tasks for c in tk.classes})
    id_idx = torch.cat([data.indices(c, TEST_POOL) for c in known])
    ood_idx = torch.cat([data.indices(c, TEST_POOL) for c in open_ids])
    id_tune, id_eval = _halves(id_idx, seed, 1)
    ood_tune, ood_eval = _halves(ood_idx, seed, 2)

    def score(idx: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        out = predict(net, data.images[idx], device).float().cpu()
        allowed = out if head == "class_incremental" else out[:, :k_local]
        return openness(out).numpy(), allowed.argmax(1).numpy()

    p_id_t, _ = score(id_tune)
    p_ood_t, _ = score(ood_tune)
    lam = tune_threshold(p_id_t, p_ood_t) if threshold == "tune" else float(threshold)
    p_id, pred_id = score(id_eval)
    p_ood, _ = score(ood_eval)
    y_id = _known_labels(data, id_eval, tasks, head, class_index).numpy()
    metrics = openworld_metrics(p_id, pred_id, y_id, p_ood, lam)
    metrics["threshold_rule"] = "youden" if threshold == "tune" else "fixed"

    # incoming stream: the open-world classes' train pool; flagged instances are labelled by the user
    stream = torch.cat([data.indices(c, TRAIN_POOL) for c in open_ids])
    p_stream, _ = score(stream)
    flagged = stream[torch.from_numpy(is_open(p_stream, lam))]
    per_class = {c: flagged[data.labels[flagged] == c] for c in open_ids}
    recognised = [c for c in open_ids if len(per_class[c]) >= min_flagged]
    metrics["stream_flagged_frac"] = float(len(flagged)) / max(len(stream), 1)
    metrics["recognised_classes"] = len(recognised)

    learner = ContinualLearner(net, data, cfg, device=device, seed=seed + 1, head=head, class_index=class_index)
    # The collective head's dropout draws from the global RNG: seed it, or the stage's result would
    # depend on whatever ran earlier in this process (and differ between serial and Ray runs).
    torch.manual_seed(derived_seed(seed, "open-world", "init"))
    learner.tasks, learner.R = list(tasks), [list(r) for r in artifact["R"]]
    before = continual_metrics(learner.R)
    new_tasks = []
    cap, test_cap, per = cfg.images_per_class, cfg.test_per_class, cfg.classes_per_task
    for k in range(len(recognised) // per):
        classes = tuple(recognised[per * k:per * k + per])
        tr = [per_class[c][:cap] for c in classes]
        te = [data.indices(c, TEST_POOL)[:test_cap] for c in classes]
        task = ContinualTask(len(tasks) + k, classes, torch.cat(tr),
                             torch.cat([torch.full((len(x),), i) for i, x in enumerate(tr)]).long(),
                             torch.cat(te), torch.cat([torch.full((len(x),), i) for i, x in enumerate(te)]).long())
        learner.learn(task)
        new_tasks.append(task)
    after = continual_metrics(learner.R)
    n_base = len(tasks)
    old_after = [r[:n_base] for r in learner.R]
    return {"metrics": metrics, "threshold": lam, "recognised": [data.class_names[c] for c in recognised],
            "new_tasks": [tk.to_json(data) for tk in new_tasks], "R": learner.R,
            "continual": {"before": before, "after": after,
                          "base_avg_acc_after": float(np.nanmean(old_after[-1])) if old_after else float("nan")},
            "final": learner.state()}
