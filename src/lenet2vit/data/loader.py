"""The in-memory loader: the whole data set sits on the training device as one uint8 tensor."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence

import torch

from lenet2vit.data.arrays import DataError, ImageArrays
from lenet2vit.data.augment import Augment, PaperAugment, augment_batch, paper_augment_batch
from lenet2vit.data.preprocess import normalisation, to_input


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit generator seed that depends only on (seed, epoch)."""
    digest = hashlib.blake2b(f"{int(seed)}/{int(epoch)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _per_channel(values: Sequence[float] | float, channels: int, what: str) -> list[float]:
    vals = [float(values)] if isinstance(values, (int, float)) else [float(v) for v in values]
    if len(vals) != channels and len(set(vals)) == 1:  # e.g. the default (0.5, 0.5, 0.5) for grey images
        vals = vals[:1] * channels
    if len(vals) != channels:
        raise DataError(
            f"{what} has {len(vals)} values but the images have {channels} channel(s); "
            f"pass one value per channel (e.g. from channel_stats)"
        )
    return vals


class BatchLoader:
    """What both loaders share: the epoch each pass draws, the batch count and the normalisation.

    A subclass sets ``num_samples``, ``batch_size`` and ``drop_last`` and yields one pass's
    batches from ``_batches(epoch)``.
    """

    num_samples: int
    batch_size: int
    drop_last: bool
    epoch: int = 0

    def _normalise_with(self, mean, std, channels: int, device: torch.device) -> None:
        m = torch.tensor(_per_channel(mean, channels, "mean"))
        s = torch.tensor(_per_channel(std, channels, "std"))
        if bool((s <= 0).any()):
            raise DataError(f"std must be positive, got {s.tolist()}; pass the per-channel standard deviation")
        self._scale, self._shift = (t.to(device) for t in normalisation(m.tolist(), s.tolist()))
        self._std = s.to(device)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass use the permutation and augmentation of `epoch`."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        return self._batches(epoch)

    def _batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError


class DeviceLoader(BatchLoader):
    """Iterates (x, y) batches from an ImageArrays kept on `device`.

    The uint8 images are moved to `device` once; a batch is `images[perm[i:i + batch_size]]`,
    augmented as a whole with `augment` (on uint8, so crop padding is black), normalised with
    `mean`/`std` (on the [0, 1] scale), optionally resized to `image_size` (antialiased
    bilinear), then cast to `dtype` and made channels_last. The permutation and all
    augmentation randomness come from one CPU generator seeded by (seed, epoch) only, so a
    resumed run that calls set_epoch(epoch) sees exactly the same batches on any device. Each
    pass uses the current epoch and then moves on to the next one.
    """

    def __init__(
        self,
        arrays: ImageArrays,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        device: str | torch.device = "cpu",
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        augment: Augment | None = None,
        drop_last: bool = False,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
        image_size: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        paper_augment: PaperAugment | None = None,
    ) -> None:
        if int(batch_size) < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}; pass e.g. 512")
        if image_size is not None and int(image_size) < 1:
            raise DataError(f"image_size must be >= 1, got {image_size}; pass e.g. 224 or None")
        if not dtype.is_floating_point:
            raise DataError(f"dtype must be a floating point type, got {dtype}; pass e.g. torch.float32")
        self.device = torch.device(device)
        self.images = arrays.images.to(self.device)
        self.labels = arrays.labels.to(self.device)
        self.classes = list(arrays.classes)
        self.num_samples = len(arrays)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.augment = augment if augment is not None and augment.enabled else None
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.dtype = dtype
        self.image_size = None if image_size in (None, arrays.image_size) else int(image_size)
        self._normalise_with(mean, std, arrays.channels, self.device)
        # Distributed training: `batch_size` is the global batch; every rank draws the same
        # permutation and augmentation (the paper recipes' too) for the whole batch and keeps its
        # contiguous share of it, so N ranks see exactly the batches one process would. Shuffled (training) passes drop the last
        # partial batch then, so every rank has the same number of steps.
        if not 0 <= int(rank) < int(world_size):
            raise DataError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        if world_size > 1 and shuffle and self.batch_size % world_size:
            raise DataError(f"batch size {self.batch_size} is not divisible by {world_size} processes; pass a multiple")
        self.rank, self.world_size = int(rank), int(world_size)
        if world_size > 1 and shuffle:
            self.drop_last = True
        self.paper_augment = paper_augment if paper_augment is not None and paper_augment.enabled else None
        self._flip_base = None
        if self.augment is not None and self.augment.alternate_flip:  # each image's first-epoch flip, fixed by seed
            g = torch.Generator().manual_seed(epoch_seed(self.seed, -1))
            self._flip_base = torch.randint(0, 2, (self.num_samples,), generator=g).bool().to(self.device)
        self.epoch = 0

    def _batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        perm = torch.randperm(self.num_samples, generator=g).to(self.device) if self.shuffle else None
        b = self.batch_size
        for i in range(len(self)):
            if perm is None:
                x, y = self.images[i * b : (i + 1) * b], self.labels[i * b : (i + 1) * b]
            else:
                idx = perm[i * b : (i + 1) * b]
                x, y = self.images.index_select(0, idx), self.labels.index_select(0, idx)
            if self.augment is not None:
                flips = None
                if self._flip_base is not None:
                    at = idx if perm is not None else torch.arange(i * b, i * b + x.shape[0], device=self.device)
                    flips = self._flip_base[at] ^ bool(epoch % 2)
                x = augment_batch(x, self.augment, g, flips)
            x = self._prepare(x, g)
            if self.world_size > 1:  # after every random draw: rank r gets its share of one process's batch
                x, y = self._shard(x), self._shard(y)
            yield x, y

    def _shard(self, t: torch.Tensor) -> torch.Tensor:
        n = math.ceil(t.shape[0] / self.world_size)
        return t[self.rank * n : (self.rank + 1) * n]

    def _prepare(self, x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        x = to_input(x, self._scale, self._shift, self.image_size)  # the one preprocessing (data/preprocess.py)
        if self.paper_augment is not None and g is not None:
            x = paper_augment_batch(x, self.paper_augment, self._std, g)
        if self.dtype != torch.float32:
            x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def __repr__(self) -> str:
        return (
            f"DeviceLoader(num_samples={self.num_samples}, batch_size={self.batch_size}, "
            f"batches={len(self)}, shuffle={self.shuffle}, augment={self.augment}, device={self.device})"
        )
