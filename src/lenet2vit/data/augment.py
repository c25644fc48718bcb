"""Batched data augmentation: one gather for a whole batch, no per-image Python."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lenet2vit.data.arrays import DataError


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation applied to whole batches.

    crop_padding: random crop with zero padding, like torchvision RandomCrop(s, padding=p)
    (0 turns it off). flip: random horizontal flip with probability 0.5.
    """

    crop_padding: int = 0
    flip: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.crop_padding, int) or self.crop_padding < 0:
            raise DataError(f"crop_padding must be an integer >= 0, got {self.crop_padding!r}; pass e.g. 4")

    @property
    def enabled(self) -> bool:
        return self.crop_padding > 0 or self.flip


def augment_batch(x: torch.Tensor, aug: Augment, generator: torch.Generator) -> torch.Tensor:
    """Randomly crop (with zero padding) and flip every image of a (B, C, H, W) batch.

    Works on uint8 or float tensors on any device and returns a new tensor of the same dtype
    and shape. All random numbers come from `generator` (drawn on its device, in a fixed
    order: row offsets, column offsets, flips), so a batch is reproducible from the
    generator's state. Crop and flip together are a single gather with per-sample indices.
    """
    if x.ndim != 4:
        raise DataError(f"augment_batch expects a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    if not aug.enabled or b == 0:
        return x
    p = aug.crop_padding
    dev, gdev = x.device, generator.device

    def draw(high: int) -> torch.Tensor:  # (B, 1) on the batch's device; only B numbers move
        return torch.randint(0, high, (b, 1), generator=generator, device=gdev).to(dev)

    dy = draw(2 * p + 1) if p else torch.zeros((b, 1), dtype=torch.int64, device=dev)
    dx = draw(2 * p + 1) if p else torch.zeros((b, 1), dtype=torch.int64, device=dev)
    cols = torch.arange(w, device=dev).expand(b, w)
    if aug.flip:
        cols = torch.where(draw(2).bool(), (w - 1) - cols, cols)  # a flipped crop reads its columns backwards
    rows = torch.arange(h, device=dev) + dy  # (B, H)
    cols = cols + dx  # (B, W)
    src = F.pad(x, (p, p, p, p)) if p else x
    index = rows[:, :, None] * (w + 2 * p) + cols[:, None, :]  # (B, H, W) into the padded image
    out = src.reshape(b, c, -1).gather(2, index.view(b, 1, h * w).expand(b, c, h * w))
    return out.view(b, c, h, w)
