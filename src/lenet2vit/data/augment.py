"""Batched data augmentation: one gather for a whole batch, no per-image Python."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lenet2vit.data.arrays import DataError

CROP_FILLS = ("zero", "reflect")  # what a random crop's padding holds (Augment.crop_fill)


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation applied to whole batches.

    crop_padding: random crop of the image padded by this many pixels, like torchvision
    RandomCrop(s, padding=p) (0 turns it off). crop_fill: what the padding holds: ``zero``
    (torchvision's default) or ``reflect``, the image mirrored at its border (torchvision's
    ``padding_mode="reflect"``, as Page's and Jordan's fast CIFAR-10 runs use). flip: random
    horizontal flip with probability 0.5. alternate_flip: the flips follow a schedule instead:
    a random half of the images in the first epoch, then each image the opposite of the epoch
    before, so every two epochs show each image both ways (Jordan 2024, "94% on CIFAR-10 in 3.29
    seconds", Sec. 3.6); the loader supplies the flips.
    """

    crop_padding: int = 0
    flip: bool = False
    alternate_flip: bool = False
    crop_fill: str = "zero"

    def __post_init__(self) -> None:
        if not isinstance(self.crop_padding, int) or self.crop_padding < 0:
            raise DataError(f"crop_padding must be an integer >= 0, got {self.crop_padding!r}; pass e.g. 4")
        if self.crop_fill not in CROP_FILLS:
            raise DataError(f"crop_fill must be one of {', '.join(CROP_FILLS)}, got {self.crop_fill!r}")
        if self.alternate_flip and not self.flip:
            raise DataError("alternate_flip schedules the flips; it needs flip=True")

    @property
    def enabled(self) -> bool:
        return self.crop_padding > 0 or self.flip


def augment_batch(x: torch.Tensor, aug: Augment, generator: torch.Generator,
                  flips: torch.Tensor | None = None) -> torch.Tensor:
    """Randomly crop (padded with zeros or the mirrored border) and flip every image of a (B, C, H, W) batch.

    Works on uint8 or float tensors on any device and returns a new tensor of the same dtype
    and shape. All random numbers come from `generator` (drawn on its device, in a fixed
    order: row offsets, column offsets, flips), so a batch is reproducible from the
    generator's state. `flips` (B booleans) fixes which images are mirrored instead of drawing
    it (the alternating schedule). Crop and flip together are a single gather with per-sample
    indices.
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
        mirror = draw(2).bool() if flips is None else flips.to(dev, torch.bool).view(b, 1)
        cols = torch.where(mirror, (w - 1) - cols, cols)  # a flipped crop reads its columns backwards
    rows = torch.arange(h, device=dev) + dy  # (B, H), in the padded image
    cols = cols + dx  # (B, W)
    if aug.crop_fill == "reflect" and p:  # read the mirror of the border instead of padding a copy
        if p >= min(h, w):
            raise DataError(f"reflect padding of {p} px needs images larger than that, got {h}x{w}; "
                            "lower crop_padding or use crop_fill zero")
        rows, cols, src, width = _reflect(rows - p, h), _reflect(cols - p, w), x, w
    else:
        src, width = (F.pad(x, (p, p, p, p)) if p else x), w + 2 * p
    index = rows[:, :, None] * width + cols[:, None, :]  # (B, H, W) into the (padded) image
    out = src.reshape(b, c, -1).gather(2, index.view(b, 1, h * w).expand(b, c, h * w))
    return out.view(b, c, h, w)


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Indices in [-n + 1, 2n - 2] mirrored into [0, n - 1] without repeating the edge (-1 -> 1, n -> n - 2)."""
    i = i.abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


# ----------------------------------------------------------------------------- the papers' recipes
# Applied after normalisation, on float batches on the training device: AlexNet's rescale and
# random crop and PCA lighting, VGG's scale jittering, and the test-time views of both papers.


@dataclass(frozen=True)
class PaperAugment:
    """Float-stage augmentation of the AlexNet and VGG recipes.

    rescale: upscale every batch by this ratio (AlexNet: 256/224) and take a random crop of the
    original size per image. scale_jitter: per-batch random ratio in (lo, hi) instead (VGG:
    256/224 .. 512/224). pca_lighting: std of AlexNet's PCA colour noise; ``eigvals`` and
    ``eigvecs`` (columns) are the training set's RGB covariance eigen-decomposition on the [0, 1]
    scale, as :func:`pca_colour_stats` computes.
    """

    rescale: float | None = None
    scale_jitter: tuple[float, float] | None = None
    pca_lighting: float = 0.0
    eigvals: tuple[float, ...] | None = None
    eigvecs: tuple[tuple[float, ...], ...] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.rescale or self.scale_jitter or self.pca_lighting)


def pca_colour_stats(images: torch.Tensor, max_images: int = 10000) -> tuple[list[float], list[list[float]]]:
    """Eigenvalues and eigenvectors (as columns) of the RGB pixel covariance, on the [0, 1] scale.

    AlexNet, Sec. 4.1: "PCA on the set of RGB pixel values throughout the training set".
    A strided subset of ``max_images`` images keeps it fast on large sets.
    """
    if images.shape[1] != 3:
        raise DataError(f"PCA lighting needs RGB images, got {images.shape[1]} channel(s); pass --pca-lighting 0")
    step = max(1, images.shape[0] // max_images)
    px = images[::step].permute(0, 2, 3, 1).reshape(-1, 3).double() / 255.0
    cov = torch.cov(px.T)
    eigvals, eigvecs = torch.linalg.eigh(cov)
    return eigvals.clamp_min(0).tolist(), eigvecs.tolist()


def random_resized_crop(x: torch.Tensor, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Upscale a (B, C, S, S) float batch by ``ratio`` and crop a random S x S window per image."""
    b, c, h, w = x.shape
    big = max(h, round(h * ratio))
    if big == h:
        return x
    x = F.interpolate(x, size=(big, big), mode="bilinear", antialias=False, align_corners=False)
    gdev = generator.device
    dy = torch.randint(0, big - h + 1, (b, 1), generator=generator, device=gdev)
    dx = torch.randint(0, big - w + 1, (b, 1), generator=generator, device=gdev)
    rows = torch.arange(h, device=gdev).expand(b, h) + dy
    cols = torch.arange(w, device=gdev).expand(b, w) + dx
    index = (rows[:, :, None] * big + cols[:, None, :]).to(x.device)
    out = x.reshape(b, c, -1).gather(2, index.view(b, 1, h * w).expand(b, c, h * w))
    return out.view(b, c, h, w)


def pca_lighting(x: torch.Tensor, aug: PaperAugment, std: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Add AlexNet's colour noise: ``eigvecs @ (alpha * eigvals)`` per image, alpha ~ N(0, sigma).

    ``x`` is normalised with per-channel ``std``, so the [0, 1]-scale shift is divided by it.
    """
    b = x.shape[0]
    vals = torch.tensor(aug.eigvals, dtype=torch.float32)
    vecs = torch.tensor(aug.eigvecs, dtype=torch.float32)
    alpha = torch.randn(b, 3, generator=generator, device=generator.device).float().cpu() * aug.pca_lighting
    delta = (alpha * vals) @ vecs.T  # (B, 3): sum_i alpha_i * lambda_i * p_i
    shift = delta.to(x.device, x.dtype) / std.view(1, -1).to(x.device, x.dtype)
    return x + shift.view(b, 3, 1, 1)


def paper_augment_batch(x: torch.Tensor, aug: PaperAugment, std: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Apply the enabled float-stage augmentations of ``aug`` to a normalised batch."""
    if aug.scale_jitter:
        lo, hi = aug.scale_jitter
        ratio = lo + (hi - lo) * float(torch.rand((), generator=generator, device=generator.device))
        x = random_resized_crop(x, ratio, generator)
    elif aug.rescale:
        x = random_resized_crop(x, aug.rescale, generator)
    if aug.pca_lighting:
        if aug.eigvals is None or aug.eigvecs is None:
            raise DataError("PCA lighting needs the training set's colour statistics (pca_colour_stats)")
        x = pca_lighting(x, aug, std, generator)
    return x


def eval_views(x: torch.Tensor, mode: str, ratio: float = 256 / 224) -> list[torch.Tensor]:
    """The test-time views whose predictions are averaged.

    ``none``: the image; ``flip``: it and its mirror; ``translate``: those two and both shifted
    one pixel up-left and one down-right, with reflected borders (six views, as airbench's
    test-time augmentation); ``10crop`` (AlexNet, Sec. 4.1): the image upscaled by ``ratio``,
    its four corner and centre crops of the original size, and their mirrors - ten views of
    the input's size.
    """
    if mode == "none":
        return [x]
    if mode == "flip":
        return [x, x.flip(-1)]
    if mode == "translate":
        h, w = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        shifted = [padded[..., :h, :w], padded[..., 2:, 2:]]  # content moves down-right, up-left
        return [x, x.flip(-1)] + shifted + [s.flip(-1) for s in shifted]
    if mode != "10crop":
        raise DataError(f"unknown test-time views {mode!r}; choose none, flip, translate or 10crop")
    h, w = x.shape[-2:]
    big = max(h + 1, round(h * ratio))
    up = F.interpolate(x, size=(big, big), mode="bilinear", antialias=False, align_corners=False)
    m = (big - h) // 2
    offsets = [(0, 0), (0, big - w), (big - h, 0), (big - h, big - w), (m, m)]
    crops = [up[..., i : i + h, j : j + w] for i, j in offsets]
    return crops + [c.flip(-1) for c in crops]
