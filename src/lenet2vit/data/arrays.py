"""The one in-memory form every data source produces, and the splits and statistics on it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from lenet2vit.data.preprocess import normalisation, to_input
from lenet2vit.errors import UserError


class DataError(UserError, ValueError):
    """A problem with the data or the data arguments a user gave; the message says what to do."""


@dataclass
class ImageArrays:
    """A decoded image data set held as one tensor.

    `images` is uint8 (N, C, H, W) with square images (H == W), `labels` int64 (N,) indexing
    `classes`, and `skipped` names the files a source skipped because they could not be read.
    `origin` says where the images come from (e.g. ``"val/"``, ``"held out of train/"``), so
    a run can say which folder plays which split.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    skipped: list[str] = field(default_factory=list)
    origin: str = ""

    def __post_init__(self) -> None:
        x, y = self.images, self.labels
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[2] != x.shape[3]:
            raise DataError(
                f"images must be a uint8 (N, C, S, S) tensor, got {x.dtype} {tuple(x.shape)}; "
                "decode with lenet2vit.data.load_split"
            )
        if y.dtype != torch.int64 or y.ndim != 1 or len(y) != len(x):
            raise DataError(
                f"labels must be an int64 tensor of length {len(x)}, got {y.dtype} {tuple(y.shape)}; "
                "pass one class index per image"
            )
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
            raise DataError(
                f"labels must lie in [0, {len(self.classes)}) for {len(self.classes)} classes; "
                "pass a class name for every label value"
            )
        self.images = x.contiguous()
        self.classes = list(self.classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        names = ", ".join(self.classes[:5]) + (", ..." if len(self.classes) > 5 else "")
        return (
            f"ImageArrays(n={len(self)}, channels={self.channels}, image_size={self.image_size}, "
            f"classes={len(self.classes)} [{names}], skipped={len(self.skipped)})"
        )

    @property
    def image_size(self) -> int:
        return self.images.shape[2]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    def subset(self, index: torch.Tensor | slice) -> ImageArrays:
        """Return the images and labels selected by `index` (indices, a boolean mask or a slice).

        The result owns contiguous copies of the selected rows; classes, skipped names and the
        origin are carried over unchanged.
        """
        if isinstance(index, slice):
            images, labels = self.images[index], self.labels[index]
        else:
            index = torch.as_tensor(index, device=self.images.device)
            index = index.nonzero().flatten() if index.dtype == torch.bool else index.to(torch.int64)
            images, labels = self.images.index_select(0, index), self.labels.index_select(0, index)
        return ImageArrays(images.contiguous(), labels.contiguous(), list(self.classes), list(self.skipped), self.origin)


def stratified_holdout(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (kept, held out), holding out `fraction` of every class.

    Each class contributes round(fraction * n_class) images, but at least one (and never all)
    when fraction > 0 and the class has two or more images. Both index tensors are sorted; the
    split depends only on the labels, the fraction and the seed.
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"a held-out fraction must be in [0, 1), got {fraction}; pass e.g. 0.1")
    labels = labels.cpu()
    g = torch.Generator().manual_seed(int(seed))
    keep, hold = [], []
    for c in torch.unique(labels).tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n = int(fraction * len(idx) + 0.5)
        if fraction > 0 and len(idx) >= 2:
            n = min(max(n, 1), len(idx) - 1)
        hold.append(idx[:n])
        keep.append(idx[n:])
    empty = torch.zeros(0, dtype=torch.int64)
    return (
        torch.cat(keep or [empty]).sort().values,
        torch.cat(hold or [empty]).sort().values,
    )


def balanced_subset(labels: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Sorted indices of at most `k` samples, spread over the classes as evenly as possible.

    Samples are taken round-robin over the classes in a seeded random order, so every class
    gets k // n_classes (or one more) until a class runs out and the others fill in.
    """
    labels = labels.cpu()
    n = len(labels)
    if k >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g)
    lab = labels[perm]
    order = torch.argsort(lab, stable=True)  # grouped by class, random order inside a class
    counts = torch.bincount(lab)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.int64)
    rank[order] = torch.arange(n) - starts[lab[order]]  # position of each sample inside its class
    chosen = perm[torch.argsort(rank * n + torch.arange(n))[:k]]
    return chosen.sort().values


def train_val_split(
    arrays: ImageArrays, val_fraction: float, seed: int
) -> tuple[ImageArrays, ImageArrays]:
    """Hold a stratified `val_fraction` of `arrays` out as a validation set.

    Every class gives the same share of its images (at least one when val_fraction > 0 and the
    class has two or more), the two parts are disjoint, and the split is fixed by `seed`.
    val_fraction=0 gives an empty validation set.
    """
    keep, hold = stratified_holdout(arrays.labels, val_fraction, seed)
    val = arrays.subset(hold)
    val.origin = f"{val_fraction:.0%} held out of {arrays.origin or 'train'}"
    return arrays.subset(keep), val


def channel_stats(arrays: "ImageArrays | Iterable[ImageArrays]") -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of the images, on the [0, 1] scale.

    Computed exactly with integer sums in chunks of about 16M values (no float copy of the
    whole set), as the population std over all pixels; use them as `mean`/`std` for
    DeviceLoader. ``arrays`` may also be an iterable of ImageArrays (a streamed sample, one
    batch at a time), whose sums are taken together.
    """
    parts = [arrays] if isinstance(arrays, ImageArrays) else arrays
    s = ss = None
    count = 0
    for part in parts:
        if len(part) == 0:
            continue
        c, h, w = part.images.shape[1:]
        if s is None:
            s, ss = torch.zeros(c, dtype=torch.int64), torch.zeros(c, dtype=torch.int64)
        for chunk in part.images.split(max(1, 2**24 // (c * h * w))):
            chunk = chunk.cpu().to(torch.int32)
            s += chunk.sum(dim=(0, 2, 3), dtype=torch.int64)
            ss += (chunk * chunk).sum(dim=(0, 2, 3), dtype=torch.int64)
        count += part.images[:, 0].numel()
    if s is None:
        raise DataError("cannot compute channel statistics of an empty data set; load some images first")
    mean = s.double() / count / 255.0
    var = (ss.double() / count / 255.0**2 - mean * mean).clamp_min(0.0)
    return mean.tolist(), var.sqrt().tolist()


def patch_whitening(images: torch.Tensor, mean: Sequence[float], std: Sequence[float], kernel: tuple[int, int],
                    size: int | None = None, max_patches: int = 2**22, eps: float = 5e-4
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending) and scaled eigenvectors, as ``(C*kh*kw, C, kh, kw)`` filters, of the patch covariance.

    The patches are every ``kernel``-sized window of a strided subset of ``images`` (uint8,
    ``(N, C, H, W)``) holding about ``max_patches`` windows, normalised with ``mean``/``std``
    and resized to ``size`` as the network sees them. Filter ``v / sqrt(lambda + eps)`` maps a
    patch to one coordinate of its whitened form: the data-dependent first layer of Page's and
    Jordan's fast CIFAR-10 runs (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds", Sec. 3.2).
    """
    scale, shift = normalisation(mean, std)
    c, (kh, kw) = images.shape[1], kernel
    h, w = (size, size) if size else images.shape[2:]
    per_image = max(0, h - kh + 1) * max(0, w - kw + 1)
    if per_image == 0:
        raise DataError(f"images of {h} px are smaller than the {kh}x{kw} filters to whiten")
    n = min(images.shape[0], max(1, max_patches // per_image))
    subset = images[:: max(1, images.shape[0] // n)][:n]
    d = c * kh * kw
    cov, count = torch.zeros(d, d, dtype=torch.float64), 0
    for chunk in subset.split(max(1, 2**23 // (per_image * d))):  # about 64 MB of patches at a time
        x = to_input(chunk.cpu(), scale, shift, size).double()
        patches = x.unfold(2, kh, 1).unfold(3, kw, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, d)
        cov += patches.T @ patches  # uncentred, as the convolution sees its input
        count += patches.shape[0]
    eigvals, eigvecs = torch.linalg.eigh(cov / count)
    eigvals, eigvecs = eigvals.flip(0).clamp_min(0), eigvecs.T.flip(0)
    return eigvals.float(), (eigvecs / (eigvals[:, None] + eps).sqrt()).reshape(d, c, kh, kw).float()
