"""The one preprocessing: how an image file becomes the network's input, on every path.

Training and evaluation store each data set as uint8 squares (:func:`fit_square`: the shorter
side resized, the centre cropped) and turn a batch of them into the input with
:func:`to_input` (scale to [0, 1], normalise, resize to the run's input size). ``predict``,
``explain`` and ``serve`` take the same two steps through :class:`Preprocess`, built from the
run's ``config.json``, so one image file reaches the network as the same tensor whichever
command reads it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "IMAGE_EXTENSIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "is_image_name",
    "normalisation",
    "fit_square",
    "match_channels",
    "to_input",
    "Preprocess",
]

# Files a folder source or a folder walk picks up (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm")

# The ImageNet channel statistics of torchvision's published weights, on the [0, 1] scale.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# CIFAR-10's training-set statistics (runs use their own data's, measured by channel_stats).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 weights, as PIL's convert("L")


def is_image_name(name: str) -> bool:
    """Whether a file name has one of the image extensions a folder source reads."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def fit_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the shorter side is `size` (antialiased bilinear), then center-crop to size x size.

    Works on a uint8 (C, H, W) or (N, C, H, W) tensor and returns uint8; an image that is
    already size x size is returned as it is. Sizes and offsets round as torchvision's
    Resize(size) + CenterCrop(size), the usual evaluation transform.
    """
    h, w = x.shape[-2:]
    if h == w == size:
        return x
    if h <= w:  # the long side truncates, as torchvision's Resize computes it
        nh, nw = size, max(size, int(size * w / h))
    else:
        nh, nw = max(size, int(size * h / w)), size
    if (nh, nw) != (h, w):
        batch = x if x.ndim == 4 else x.unsqueeze(0)
        down = nh < h or nw < w  # downscaling needs the antialias filter
        if down and x.device.type == "cpu":  # uint8 bilinear resampling is native on CPU
            out = F.interpolate(batch, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        else:  # upscaling, and GPUs (no uint8 kernels): in float, rounded back (within 1 of the CPU's)
            out = F.interpolate(batch.float(), size=(nh, nw), mode="bilinear", antialias=down, align_corners=False)
            out = out.round_().clamp_(0, 255).to(torch.uint8)
        x = out if x.ndim == 4 else out[0]
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return x[..., top : top + size, left : left + size].contiguous()


def match_channels(x: torch.Tensor, in_chans: int) -> torch.Tensor:
    """uint8 images ``(..., C, H, W)`` with ``in_chans`` channels: grey repeated, colour to luma.

    Luma rounds as PIL's ``convert("L")``. Raises ValueError for any other pair of counts.
    """
    c = x.shape[-3]
    if c == in_chans:
        return x
    if c == 1:
        return x.expand(*x.shape[:-3], in_chans, *x.shape[-2:])
    if c == 3 and in_chans == 1:
        w = torch.tensor(_LUMA, dtype=torch.float32).view(3, 1, 1)
        return (x.float() * w).sum(-3, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    raise ValueError(f"images have {c} channels but the model takes {in_chans}")


def to_input(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """uint8 ``(N, C, s, s)`` -> float32 ``(x / 255 - mean) / std``, resized to ``size`` if given.

    ``scale`` is ``1 / (255 std)`` and ``shift`` ``mean / std``, each ``(1, C, 1, 1)`` (see
    :func:`normalisation`). The resize is antialiased bilinear, after normalising.
    """
    x = x.to(torch.float32).mul_(scale).sub_(shift)  # a fresh tensor: in place is safe
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


def normalisation(mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` for :func:`to_input`: ``(x / 255 - mean) / std == x * scale - shift``."""
    m = torch.tensor([float(v) for v in mean])
    s = torch.tensor([float(v) for v in std])
    c = len(m)
    return (1.0 / (255.0 * s)).view(1, c, 1, 1), (m / s).view(1, c, 1, 1)


@dataclass(frozen=True)
class Preprocess:
    """The preprocessing a run implies: uint8 image(s) of any size -> the network's input.

    ``stored_size`` is the square side the run's data set was stored at (its images fitted by
    :func:`fit_square`), ``input_size`` the side the network sees (the loader resizes stored
    squares to it on the fly), ``mean``/``std`` the normalisation on the [0, 1] scale and
    ``in_chans`` the channel count. Built from a run's config with :meth:`from_config`.
    """

    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_chans: int = 3
    stored_size: int | None = None  # None: the input size

    @classmethod
    def from_config(cls, config: dict) -> "Preprocess":
        """The preprocessing stored with a run (``config.json``); KeyError names a missing field."""
        stored = (config.get("dataset") or {}).get("image_size")
        return cls(int(config["input_size"]), tuple(config["mean"]), tuple(config["std"]), int(config["in_chans"]),
                   int(stored) if stored else None)

    def crop(self, image) -> torch.Tensor:
        """An image -> the uint8 square the run's data set would store for it, channels matched.

        ``image`` is a uint8 tensor ``(C, H, W)`` or ``(N, C, H, W)`` (as
        :func:`~lenet2vit.data.decode.decode_image_bytes` gives) or a PIL image; the result has
        the same number of dimensions. It is the network's view before normalising.
        """
        return fit_square(match_channels(_as_uint8(image), self.in_chans), self.stored_size or self.input_size)

    def __call__(self, image) -> torch.Tensor:
        """An image (as :meth:`crop` takes) -> the float32 input ``(in_chans, S, S)``, or
        ``(N, in_chans, S, S)`` for a batch."""
        x = self.crop(image)
        scale, shift = normalisation(self.mean, self.std)
        out = to_input(x if x.ndim == 4 else x.unsqueeze(0), scale, shift, self.input_size)
        return out if x.ndim == 4 else out[0]


def _as_uint8(image) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.ndim not in (3, 4):
            raise ValueError(f"expected uint8 (C, H, W) or (N, C, H, W) images, got {image.dtype} {tuple(image.shape)}")
        return image
    import numpy as np  # a PIL image

    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()
