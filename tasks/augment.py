"""Batched tensor transforms: applied to a whole gathered batch at once, never per image.

The paper's effective augmentation is a random horizontal flip (official code); evaluation is
deterministic (no flip), fixing the official code's random test transform.
"""
from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


_AFFINE: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def _affine(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with (x/255 - mean)/std == x*scale + shift, made once per device."""
    if device not in _AFFINE:
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
        _AFFINE[device] = ((1.0 / (255.0 * std)).float().to(device), (-mean / std).float().to(device))
    return _AFFINE[device]


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B,3,H,W] -> float32 normalised with ImageNet mean/std (as the official code does for both datasets).

    One cast and one fused multiply-add with cached constants: on small batches the per-op overhead,
    not the arithmetic, is the cost. Never in place, so a float input is not modified."""
    scale, shift = _affine(images.device)
    return torch.addcmul(shift, images.float(), scale)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image horizontally with probability 1/2 (one draw per image, seeded).

    Works on any dtype; flipping the uint8 batch before normalising gives the same result cheaper."""
    flips = torch.rand(x.shape[0], generator=generator, device="cpu") < 0.5
    return torch.where(flips.to(x.device).view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pad by `padding` (reflect) and crop back to the original size at a random offset per image."""
    if padding <= 0:
        return x
    offs = torch.randint(0, 2 * padding + 1, (x.shape[0], 2), generator=generator)
    return _crop_at(x, padding, offs)


def _crop_at(x: torch.Tensor, padding: int, offs: torch.Tensor) -> torch.Tensor:
    """Reflect-pad `x` [B,C,H,W] and crop each image back at its (row, col) offset in `offs` [B,2]."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4, mode="reflect")
    rows = (offs[:, 0, None] + torch.arange(h)).to(x.device)  # [B,H]
    cols = (offs[:, 1, None] + torch.arange(w)).to(x.device)  # [B,W]
    bidx = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def train_transform(images_u8: torch.Tensor, generator: torch.Generator | None = None,
                    crop_padding: int = 0) -> torch.Tensor:
    """The shared training augmentation of every method: normalise, random flip, optional crop."""
    x = to_float(random_flip(images_u8, generator))  # flip commutes with per-channel normalisation
    return random_crop(x, crop_padding, generator)


def train_transform_stacked(images_u8: torch.Tensor, generators: list[torch.Generator],
                            crop_padding: int = 0) -> torch.Tensor:
    """`train_transform` of E episodes' batches at once (stacked episode training, methods/stacked.py).

    `images_u8` is [B,E,3,H,W]; slice e of the result equals `train_transform(images_u8[:, e],
    generators[e], crop_padding)` and consumes `generators[e]` identically (flips, then crop offsets),
    but runs as a few whole-stack operations instead of E small ones (on a GPU each is a launch)."""
    b, e = images_u8.shape[:2]
    flips = torch.stack([torch.rand(b, generator=g, device="cpu") < 0.5 for g in generators], 1)  # [B,E]
    x = to_float(torch.where(flips.to(images_u8.device).view(b, e, 1, 1, 1), images_u8.flip(-1), images_u8))
    if crop_padding <= 0:
        return x
    offs = torch.stack([torch.randint(0, 2 * crop_padding + 1, (b, 2), generator=g) for g in generators], 1)
    return _crop_at(x.flatten(0, 1), crop_padding, offs.flatten(0, 1)).view_as(x)


def eval_transform(images_u8: torch.Tensor) -> torch.Tensor:
    """Deterministic evaluation transform: normalisation only."""
    return to_float(images_u8)
