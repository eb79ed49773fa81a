"""Batched tensor augmentation: the flip is a flip, crops keep shapes, evaluation is deterministic."""
from __future__ import annotations

import pytest
import torch

from tasks.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    eval_transform,
    random_crop,
    random_flip,
    to_float,
    train_transform,
)


def batch(n=64, size=8, seed=0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def reference_normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x.double() / 255 - mean.double()) / std.double()


def test_eval_transform_is_normalisation_only_and_deterministic():
    x = batch()
    keep = x.clone()
    a, b = eval_transform(x), eval_transform(x)
    assert a.dtype == torch.float32 and a.shape == x.shape
    assert torch.equal(a, b)
    assert torch.allclose(a.double(), reference_normalise(x), atol=1e-5)
    assert torch.equal(x, keep)  # input untouched


def test_to_float_does_not_modify_a_float_input():
    x = batch().float()
    keep = x.clone()
    to_float(x)
    assert torch.equal(x, keep)


def test_flip_is_a_horizontal_flip_per_image():
    x = eval_transform(batch(n=200))
    out = random_flip(x, torch.Generator().manual_seed(1))
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert (same | flipped).all(), "every image is either unchanged or mirrored left-right"
    assert 60 < int((flipped & ~same).sum()) < 140, "about half the images are flipped"
    assert torch.equal(out, random_flip(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(out, random_flip(x, torch.Generator().manual_seed(2)))


def test_train_transform_flips_normalised_images():
    x = batch(n=100)
    keep = x.clone()
    out = train_transform(x, torch.Generator().manual_seed(0))
    ref = eval_transform(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    match = ((out - ref).abs().flatten(1).amax(1) < 1e-6) | ((out - ref.flip(-1)).abs().flatten(1).amax(1) < 1e-6)
    assert match.all()
    assert torch.equal(x, keep)
    assert torch.equal(out, train_transform(x, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("size,padding", [(8, 2), (32, 4), (12, 0)])
def test_crop_keeps_shape_and_takes_a_window_of_the_padded_image(size, padding):
    x = torch.arange(5 * 3 * size * size, dtype=torch.float32).view(5, 3, size, size)
    out = random_crop(x, padding, torch.Generator().manual_seed(3))
    assert out.shape == x.shape
    if padding == 0:
        assert torch.equal(out, x)
        return
    padded = torch.nn.functional.pad(x, (padding,) * 4, mode="reflect")
    offsets = set()
    for i in range(5):
        hits = [(r, c) for r in range(2 * padding + 1) for c in range(2 * padding + 1)
                if torch.equal(out[i], padded[i, :, r:r + size, c:c + size])]
        assert len(hits) == 1, f"image {i} is not a window of its padded self"
        offsets.add(hits[0])
    assert len(offsets) > 1, "offsets are drawn per image"
    shapes = train_transform(batch(n=4, size=size), torch.Generator().manual_seed(0), crop_padding=padding).shape
    assert tuple(shapes) == (4, 3, size, size)
