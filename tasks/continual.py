"""The stream of continual tasks the collective model learns, one after another.

Faithful to the official code: each task has 5 classes drawn without replacement
within the task and independently across tasks (classes recur), task-local labels 0..4, training
images from the classes' train pools. Seeded, and the task -> class list is saved with the artifact.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tasks.errors import DataError
from tasks.imageset import TEST_POOL, TRAIN_POOL, ImageSet


@dataclass(frozen=True)
class ContinualTask:
    """One task: its classes, the train indices with task-local labels, and held-out test indices."""

    task_id: int
    classes: tuple[int, ...]
    train_idx: torch.Tensor
    train_labels: torch.Tensor
    test_idx: torch.Tensor
    test_labels: torch.Tensor

    def to_json(self, data: ImageSet) -> dict:
        return {"task": self.task_id, "classes": [data.class_names[c] for c in self.classes],
                "n_train": len(self.train_idx), "n_test": len(self.test_idx)}


def make_task(data: ImageSet, task_id: int, classes: tuple[int, ...], images_per_class: int | None,
              test_per_class: int | None, seed: int) -> ContinualTask:
    """Build one task from explicit classes (also used for the open-world stage's new tasks)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, task_id, 31337]))
    tr, trl, te, tel = [], [], [], []
    for local, c in enumerate(classes):
        idx = data.indices(c, TRAIN_POOL)
        idx = idx[torch.from_numpy(rng.permutation(len(idx)))][:images_per_class]
        tidx = data.indices(c, TEST_POOL)[:test_per_class]
        tr.append(idx)
        trl.append(torch.full((len(idx),), local, dtype=torch.long))
        te.append(tidx)
        tel.append(torch.full((len(tidx),), local, dtype=torch.long))
    return ContinualTask(task_id, tuple(classes), torch.cat(tr), torch.cat(trl), torch.cat(te), torch.cat(tel))


def continual_tasks(data: ImageSet, class_ids: list[int], n_tasks: int, classes_per_task: int = 5,
                    images_per_class: int | None = None, test_per_class: int | None = None,
                    seed: int = 0) -> list[ContinualTask]:
    """`n_tasks` tasks of `classes_per_task` classes drawn from `class_ids` (see module docstring)."""
    if n_tasks <= 0 or classes_per_task <= 0:
        raise DataError(f"continual tasks and classes per task must be positive, got {n_tasks} and {classes_per_task}")
    for label, value in (("images per class", images_per_class), ("test images per class", test_per_class)):
        if value is not None and value <= 0:
            raise DataError(f"continual {label} must be positive (or all), got {value}")
    if classes_per_task > len(class_ids):
        raise DataError(f"{classes_per_task} classes per task but only {len(class_ids)} classes in the pool")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2718]))
    tasks = []
    for t in range(n_tasks):
        classes = tuple(int(c) for c in rng.choice(np.asarray(class_ids), size=classes_per_task, replace=False))
        tasks.append(make_task(data, t, classes, images_per_class, test_per_class, seed))
    return tasks
