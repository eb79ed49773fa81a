"""Batched tensor transforms: applied to a whole gathered batch at once, never per image.

The paper's effective augmentation is a random horizontal flip (spec §1.2); evaluation is
deterministic (no flip), fixing the official code's random test transform.
"""
from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B,3,H,W] -> float32 normalised with ImageNet mean/std (as the official code does for both datasets)."""
    x = images.float() / 255.0  # never in place: a float input must not be modified
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image horizontally with probability 1/2 (one draw per image, seeded)."""
    flips = torch.rand(x.shape[0], generator=generator, device="cpu") < 0.5
    if flips.any():
        x = x.clone()
        idx = flips.nonzero().flatten().to(x.device)
        x[idx] = x[idx].flip(-1)
    return x


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pad by `padding` (reflect) and crop back to the original size at a random offset per image."""
    if padding <= 0:
        return x
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4, mode="reflect")
    offs = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator)
    rows = (offs[:, 0, None] + torch.arange(h)).to(x.device)  # [B,H]
    cols = (offs[:, 1, None] + torch.arange(w)).to(x.device)  # [B,W]
    bidx = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def train_transform(images_u8: torch.Tensor, generator: torch.Generator | None = None,
                    crop_padding: int = 0) -> torch.Tensor:
    """The shared training augmentation of every method: normalise, random flip, optional crop."""
    x = random_flip(to_float(images_u8), generator)
    return random_crop(x, crop_padding, generator)


def eval_transform(images_u8: torch.Tensor) -> torch.Tensor:
    """Deterministic evaluation transform: normalisation only."""
    return to_float(images_u8)
