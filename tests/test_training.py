"""The one training loop and its helpers: seeded generators, class means of any shape, eval-mode
prediction that restores the mode, and `fit`'s epochs, callbacks, schedulers and optimiser resets."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods.training import FitLog, class_means, fit, predict, rng, shuffled_batches


def test_rng_is_a_pure_function_of_seed_and_salt():
    a = torch.randperm(50, generator=rng(3, "episode", 1))
    assert torch.equal(a, torch.randperm(50, generator=rng(3, "episode", 1)))
    assert not torch.equal(a, torch.randperm(50, generator=rng(3, "episode", 2)))
    assert not torch.equal(a, torch.randperm(50, generator=rng(4, "episode", 1)))


def test_class_means_any_shape_and_label_order():
    x = torch.arange(24, dtype=torch.float32).view(6, 4)
    y = torch.tensor([2, 0, 1, 0, 2, 1])
    means = class_means(x, y, 3)
    for c in range(3):
        assert torch.allclose(means[c], x[y == c].mean(0))
    maps = torch.randn(6, 2, 3, 3)
    assert torch.allclose(class_means(maps, y, 3)[1], maps[y == 1].mean(0))


def test_predict_uses_eval_mode_and_restores_the_mode():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2), nn.Dropout(0.9))
    net.train()
    x = torch.randint(0, 255, (5, 3, 4, 4), dtype=torch.uint8)
    out1, out2 = predict(net, x, torch.device("cpu"), batch_size=2), predict(net, x, torch.device("cpu"))
    assert torch.allclose(out1, out2, atol=1e-6) and out1.shape == (5, 2)  # no dropout: eval mode
    assert net.training


def test_fit_trains_logs_and_calls_back_every_epoch():
    torch.manual_seed(0)
    x, w = torch.randn(64, 5), torch.randn(5, 3)
    y = (x @ w).argmax(1)
    model = nn.Linear(5, 3)
    made = []

    def optimiser() -> torch.optim.Optimizer:
        made.append(1)
        return torch.optim.SGD(model.parameters(), lr=0.5)

    def accuracy() -> float:
        return float((model(x).argmax(1) == y).float().mean())

    log = fit(lambda idx: F.cross_entropy(model(x[idx]), y[idx]), shuffled_batches(64, 16, rng(0, "t")), optimiser,
              epochs=5, after_epoch=accuracy, keep_losses=True, module=model)
    assert isinstance(log, FitLog) and len(log.epochs) == 5 and len(log.losses) == 5 * 4 and len(made) == 1
    assert log.epochs[-1] > 0.8 and log.losses[-1] < log.losses[0]
    fit(lambda idx: F.cross_entropy(model(x[idx]), y[idx]), shuffled_batches(64, 16, rng(0, "t")), optimiser,
        epochs=3, fresh_optimizer_each_epoch=True)
    assert len(made) == 1 + 3


def test_fit_steps_the_scheduler_after_every_step():
    p = nn.Parameter(torch.zeros(1))
    opts = []

    def optimiser() -> torch.optim.Optimizer:
        opts.append(torch.optim.SGD([p], lr=1.0))
        return opts[-1]

    fit(lambda _: (p - 1).pow(2).sum(), lambda _: range(4), optimiser, epochs=2,
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5))
    assert opts[0].param_groups[0]["lr"] == 0.5 ** 8
